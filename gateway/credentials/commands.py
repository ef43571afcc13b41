"""``gateway keys``: create, list, revoke, rotate and delete API keys.

A new key is printed once, alone on standard output (so ``KEY=$(gateway keys create ...)``
works); everything meant for a person goes to standard error. Only a keyed hash of the
secret is stored, so a lost key cannot be recovered, only rotated. Running gateways notice
changes within ``credentials.api_keys.cache_ttl`` (a few seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import getpass
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from gateway.config.arguments import MISSING_CONFIG, add_config_argument
from gateway.credentials.api_key_declarations import parse_timestamp
from gateway.credentials.api_keys import (
    ApiKeyRepository,
    generate_api_key,
    hash_secret,
    is_valid_key_name,
    new_key_for,
)
from gateway.credentials.hosts import HostMatcher
from gateway.credentials.networks import NetworkError, parse_networks
from gateway.errors import GatewayError

if TYPE_CHECKING:
    from gateway.config.settings import Settings
    from gateway.storage.records import ApiKeyRecord

__all__ = ["add_arguments", "run"]


_WARNING = (
    "This is the only time the key is shown: store it in your secret manager now. "
    "The gateway keeps only a keyed hash and cannot show it again."
)


class CommandError(GatewayError):
    """A problem the person running the command can fix; printed without a traceback."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Keys look like gw_<id>_<secret>; clients send them as 'X-API-Key: KEY' or "
        "'Authorization: Bearer KEY'. Running gateways pick up changes within "
        "credentials.api_keys.cache_ttl."
    )
    actions = parser.add_subparsers(dest="keys_action", metavar="ACTION", required=True)
    config = argparse.ArgumentParser(add_help=False)
    add_config_argument(config)

    create = actions.add_parser(
        "create",
        parents=[config],
        help="create a key and print it once",
        description="Create an API key and print it once on standard output.",
    )
    create.add_argument("name", help="unique name; the policy sees the client as key:NAME")
    create.add_argument("--owner", default="", help="who is responsible for the key")
    create.add_argument(
        "--group", dest="groups", action="append", default=[], metavar="GROUP", help="repeatable"
    )
    create.add_argument(
        "--scope",
        dest="scopes",
        action="append",
        default=[],
        metavar="HOST",
        help="host or glob the key may be used on (repeatable; none: any host)",
    )
    create.add_argument(
        "--network",
        dest="networks",
        action="append",
        default=[],
        metavar="CIDR",
        help="client network the key may be used from (repeatable; none: any)",
    )
    create.add_argument(
        "--expires", metavar="WHEN", help="lifetime (90d, 12h, 1y) or date (2026-06-30)"
    )
    create.add_argument(
        "--static",
        action="store_true",
        help="do not store the key; print a declaration for a policy file's api_keys: list",
    )
    create.set_defaults(_action=_create)

    listing = actions.add_parser("list", parents=[config], help="list keys (never secrets)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(_action=_list)

    revoke = actions.add_parser("revoke", parents=[config], help="disable a key at once")
    revoke.add_argument("name")
    revoke.set_defaults(_action=_revoke)

    rotate = actions.add_parser(
        "rotate",
        parents=[config],
        help="give a key a new secret and print it once",
        description="Give a key a new secret (same id and name). The old secret keeps "
        "working for the grace period, so clients can be updated without downtime.",
    )
    rotate.add_argument("name")
    rotate.add_argument(
        "--grace", default="24h", metavar="DURATION", help="old secret stays valid (default 24h)"
    )
    rotate.set_defaults(_action=_rotate)

    delete = actions.add_parser("delete", parents=[config], help="remove a key for good")
    delete.add_argument("name")
    delete.set_defaults(_action=_delete)

    upstream = actions.add_parser(
        "upstream-secret",
        parents=[config],
        help="store an upstream credential for credential exchange (read from stdin)",
        description="Store (or replace) the named secret an API host's upstream: entry "
        "refers to. The value is read from the first line of standard input and sealed "
        "with secrets.encryption_keys. Restart the gateway (or wait for a reload) to use it.",
    )
    upstream.add_argument("secret_name", metavar="NAME")
    upstream.set_defaults(_action=_upstream_secret)


def run(args: argparse.Namespace) -> int:
    """Run one ``gateway keys`` action; 0 done, 1 failed, 2 bad configuration or usage."""
    from gateway.config.yaml import ConfigError
    from gateway.storage.errors import StorageError

    try:
        action: Callable[[argparse.Namespace], int] = args._action
        return action(args)
    except CommandError as error:
        print(f"gateway keys: {error}", file=sys.stderr)
        return 1
    except ConfigError as error:
        print(f"gateway keys: invalid configuration:\n{error}", file=sys.stderr)
        return 2
    except StorageError as error:
        print(f"gateway keys: {error}", file=sys.stderr)
        return 1


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Settings:
    from gateway.config.settings import load_settings

    if not args.config:
        raise CommandError(MISSING_CONFIG)
    return load_settings(args.config)


def _with_storage(settings: Settings, work: Callable[[Any], Awaitable[int]]) -> int:
    from gateway.storage import open_storage

    async def main() -> int:
        async with await open_storage(settings) as storage:
            return await work(storage)

    return asyncio.run(main())


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


async def _audit(storage: Any, event: str, record: ApiKeyRecord) -> None:
    await storage.audit.append_audit(
        event, f"cli:{_operator()}", {"name": record.name, "key_id": record.key_id}
    )


def _expiry(text: str | None, now: float) -> float | None:
    from gateway.config.values import parse_duration

    if text is None:
        return None
    try:
        return now + parse_duration(text)
    except ValueError:
        pass
    try:
        moment = parse_timestamp(text)
    except ValueError:
        raise CommandError(
            f"--expires '{text}' is neither a duration (90d, 12h) nor a date (2026-06-30)"
        ) from None
    if moment <= now:
        raise CommandError(f"--expires '{text}' is in the past")
    return moment


def _check_inputs(args: argparse.Namespace) -> tuple[str, ...]:
    if not is_valid_key_name(args.name):
        raise CommandError(
            f"'{args.name}' is not a valid key name (letters, digits, '.', '_', '@', '-')"
        )
    try:
        HostMatcher(args.scopes)
    except ValueError as error:
        raise CommandError(f"--scope: {error}") from None
    try:
        networks = parse_networks(args.networks, source="--network")
    except NetworkError as error:
        raise CommandError(str(error)) from None
    return tuple(str(network) for network in networks)


async def _find(keys: ApiKeyRepository, name: str) -> ApiKeyRecord:
    record = await keys.get_api_key_by_name(name)
    if record is None:
        raise CommandError(f"no API key named '{name}' (see `gateway keys list`)")
    return record


def _when(moment: float | None) -> str:
    if moment is None:
        return "-"
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%d %H:%M")


def _status(record: ApiKeyRecord, now: float) -> str:
    if record.disabled:
        return "revoked"
    if record.expires_at is not None and record.expires_at <= now:
        return "expired"
    if record.previous_valid_until is not None and record.previous_valid_until > now:
        return "rotating"
    return "active"


# --------------------------------------------------------------------------------------------
# actions
# --------------------------------------------------------------------------------------------


def _create(args: argparse.Namespace) -> int:
    from gateway.storage.errors import RecordExists
    from gateway.storage.records import ApiKeyRecord

    networks = _check_inputs(args)
    settings = _settings(args)
    now = time.time()
    expires_at = _expiry(args.expires, now)
    key_id, key = generate_api_key()
    secret_hash = hash_secret(settings.secrets.hash_key.encode(), key)
    record = ApiKeyRecord(
        key_id=key_id,
        name=args.name,
        owner=args.owner,
        secret_hash=secret_hash,
        groups=tuple(args.groups),
        scopes=tuple(args.scopes),
        networks=networks,
        expires_at=expires_at,
        created_at=now,
    )
    if args.static:
        print(key)
        print(_WARNING, file=sys.stderr)
        print("\nAdd this to the api_keys: list of a policy file:\n", file=sys.stderr)
        print(_declaration(record), file=sys.stderr)
        return 0

    async def work(storage: Any) -> int:
        try:
            await storage.api_keys.create_api_key(record)
        except RecordExists:
            raise CommandError(f"an API key named '{args.name}' already exists") from None
        await _audit(storage, "api_key.created", record)
        return 0

    _with_storage(settings, work)
    print(key)
    print(f"Created API key '{args.name}' (id {key_id}). {_WARNING}", file=sys.stderr)
    if not args.scopes:
        print("Note: without --scope, only the policy limits the key's hosts.", file=sys.stderr)
    return 0


def _declaration(record: ApiKeyRecord) -> str:
    lines = [
        f"  - name: {json.dumps(record.name)}",
        f"    id: {record.key_id}",
        f"    hash: {record.secret_hash.hex()}",
    ]
    if record.owner:
        lines.append(f"    owner: {json.dumps(record.owner)}")
    for label, values in (
        ("groups", record.groups),
        ("scopes", record.scopes),
        ("networks", record.networks),
    ):
        if values:
            lines.append(f"    {label}: {json.dumps(list(values))}")
    if record.expires_at is not None:
        expires = datetime.datetime.fromtimestamp(record.expires_at, datetime.UTC)
        lines.append(f"    expires: {expires.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    return "\n".join(lines)


def _list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    now = time.time()

    async def work(storage: Any) -> int:
        records: list[ApiKeyRecord] = await storage.api_keys.list_api_keys()
        if args.json:
            rows = [
                {
                    "name": r.name,
                    "id": r.key_id,
                    "owner": r.owner,
                    "groups": list(r.groups),
                    "scopes": list(r.scopes),
                    "networks": list(r.networks),
                    "created_at": r.created_at,
                    "expires_at": r.expires_at,
                    "last_used_at": r.last_used_at,
                    "previous_valid_until": r.previous_valid_until,
                    "status": _status(r, now),
                }
                for r in records
            ]
            print(json.dumps(rows, indent=2))
            return 0
        if not records:
            print("no API keys", file=sys.stderr)
            return 0
        header = ("NAME", "ID", "OWNER", "STATUS", "EXPIRES", "LAST USED", "GROUPS", "SCOPES")
        table = [header] + [
            (
                r.name,
                r.key_id,
                r.owner or "-",
                _status(r, now),
                _when(r.expires_at),
                _when(r.last_used_at),
                ",".join(r.groups) or "-",
                ",".join(r.scopes) or "*",
            )
            for r in records
        ]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for row in table:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        return 0

    return _with_storage(settings, work)


def _revoke(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def work(storage: Any) -> int:
        record = await _find(storage.api_keys, args.name)
        revoked = replace(
            record, disabled=True, previous_secret_hash=None, previous_valid_until=None
        )
        await storage.api_keys.update_api_key(revoked)
        await _audit(storage, "api_key.revoked", record)
        return 0

    _with_storage(settings, work)
    print(
        f"Revoked API key '{args.name}'; gateways refuse it within "
        f"{settings.credentials.api_keys.cache_ttl:g}s.",
        file=sys.stderr,
    )
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from gateway.config.values import parse_duration

    try:
        grace = parse_duration(args.grace)
    except ValueError as error:
        raise CommandError(f"--grace: {error}") from None
    settings = _settings(args)
    now = time.time()
    holder: dict[str, str] = {}

    async def work(storage: Any) -> int:
        record = await _find(storage.api_keys, args.name)
        if record.disabled:
            raise CommandError(f"API key '{args.name}' is revoked; create a new one instead")
        key = new_key_for(record.key_id)
        rotated = replace(
            record,
            secret_hash=hash_secret(settings.secrets.hash_key.encode(), key),
            previous_secret_hash=record.secret_hash if grace > 0 else None,
            previous_valid_until=now + grace if grace > 0 else None,
        )
        await storage.api_keys.update_api_key(rotated)
        await _audit(storage, "api_key.rotated", record)
        holder["key"] = key
        return 0

    _with_storage(settings, work)
    print(holder["key"])
    until = f"until {_when(now + grace)} UTC" if grace > 0 else "no longer (no grace period)"
    print(
        f"Rotated API key '{args.name}'; the old secret stays valid {until}. {_WARNING}",
        file=sys.stderr,
    )
    return 0


def _delete(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def work(storage: Any) -> int:
        record = await _find(storage.api_keys, args.name)
        await storage.api_keys.delete_api_key(record.key_id)
        await _audit(storage, "api_key.deleted", record)
        return 0

    _with_storage(settings, work)
    print(f"Deleted API key '{args.name}'.", file=sys.stderr)
    return 0


def _upstream_secret(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if sys.stdin.isatty():
        value = getpass.getpass(f"value of secret {args.secret_name}: ")
    else:
        value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise CommandError("the secret is empty")

    async def work(storage: Any) -> int:
        await storage.secrets.put_secret(args.secret_name, value)
        await storage.audit.append_audit(
            "upstream_secret.stored", f"cli:{_operator()}", {"name": args.secret_name}
        )
        return 0

    _with_storage(settings, work)
    print(f"Stored upstream secret '{args.secret_name}'.", file=sys.stderr)
    return 0
