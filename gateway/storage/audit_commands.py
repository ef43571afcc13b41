"""``gateway audit``: check the audit hash chain, or show its newest entries."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from gateway.config.settings import Settings
from gateway.storage.commands import load_config
from gateway.storage.errors import StorageError
from gateway.storage.records import AuditEntry, AuditVerification
from gateway.storage.store import open_storage

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    verify = actions.add_parser(
        "verify",
        help="check every link of the audit hash chain",
        description=(
            "Recompute the hash of every audit entry and check that each one links to the "
            "one before. Exit status: 0 intact, 1 broken (the first bad entry is named) or "
            "the database is unavailable, 2 invalid configuration."
        ),
    )
    verify.add_argument("--config", "-c", required=True, metavar="FILE")
    verify.set_defaults(_action=_verify)
    show = actions.add_parser(
        "list", help="show the newest audit entries", description="Show the newest entries."
    )
    show.add_argument("--config", "-c", required=True, metavar="FILE")
    show.add_argument("--limit", "-n", type=int, default=20, metavar="N", help="default: 20")
    show.add_argument("--json", action="store_true", help="one JSON object per line")
    show.set_defaults(_action=_list)


def run(args: argparse.Namespace) -> int:
    action: int = args._action(args)
    return action


def _verify(args: argparse.Namespace) -> int:
    settings = load_config(args.config, "gateway audit verify")
    if settings is None:
        return 2
    try:
        result = asyncio.run(_verify_storage(settings))
    except StorageError as error:
        print(f"gateway audit verify: {error}", file=sys.stderr)
        return 1
    if result.ok:
        print(f"audit chain intact: {result.entries} entries")
        return 0
    print(
        f"audit chain BROKEN at entry {result.first_bad_id}: {result.reason} "
        f"({result.entries - 1} entries before it are intact)"
    )
    return 1


def _list(args: argparse.Namespace) -> int:
    settings = load_config(args.config, "gateway audit list")
    if settings is None:
        return 2
    try:
        entries = asyncio.run(_list_storage(settings, args.limit))
    except StorageError as error:
        print(f"gateway audit list: {error}", file=sys.stderr)
        return 1
    for entry in entries:
        print(_json_line(entry) if args.json else _text_line(entry))
    return 0


async def _verify_storage(settings: Settings) -> AuditVerification:
    async with await open_storage(settings) as storage:
        return await storage.audit.verify_audit()


async def _list_storage(settings: Settings, limit: int) -> list[AuditEntry]:
    async with await open_storage(settings) as storage:
        return await storage.audit.list_audit(limit)


def _text_line(entry: AuditEntry) -> str:
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry.time))
    detail = " ".join(f"{key}={value}" for key, value in sorted(entry.detail.items()))
    return f"{entry.id:>6}  {when}  {entry.event:<24} {entry.actor:<16} {detail}".rstrip()


def _json_line(entry: AuditEntry) -> str:
    return json.dumps(
        {
            "id": entry.id,
            "time": entry.time,
            "event": entry.event,
            "actor": entry.actor,
            "detail": dict(entry.detail),
            "prev_hash": entry.prev_hash,
            "hash": entry.hash,
        },
        sort_keys=True,
    )
