"""``gateway totp``: administer users' second factors (status, reset)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from gateway.config.yaml import ConfigError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="totp_action", metavar="ACTION", required=True)
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "--config", type=Path, required=True, metavar="FILE", help="the gateway's configuration"
    )
    reset = actions.add_parser(
        "reset",
        parents=[config],
        help="remove a user's TOTP seed and recovery codes",
        description="Remove a user's TOTP seed and recovery codes, e.g. after a lost phone. "
        "The user enrolls a new authenticator at their next login. Recorded in the audit log.",
    )
    reset.add_argument("username")
    status = actions.add_parser(
        "status", parents=[config], help="show whether a user has TOTP and how many recovery codes"
    )
    status.add_argument("username")


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace) -> int:
    from gateway.config.settings import load_settings
    from gateway.identity.second_factor import SecondFactor
    from gateway.security.crypto import DecryptionError
    from gateway.storage import StorageError, open_storage

    settings = load_settings(args.config)
    try:
        storage = await open_storage(settings)
    except StorageError as error:
        print(f"gateway totp: {error}", file=sys.stderr)
        return 1
    try:
        second_factor = SecondFactor.from_settings(
            settings, storage.second_factor, settings.secrets.hash_key.encode()
        )
        if args.totp_action == "reset":
            had_totp = await second_factor.reset(args.username)
            await storage.audit.append_audit(
                "totp.reset", "cli", {"username": args.username, "had_totp": str(had_totp)}
            )
            if had_totp:
                print(f"removed the TOTP enrollment and recovery codes of '{args.username}'")
            else:
                print(f"'{args.username}' had no TOTP enrollment (recovery codes cleared)")
            return 0
        try:
            enrolled = await second_factor.has_totp(args.username)
        except DecryptionError as error:
            print(f"'{args.username}': TOTP seed unreadable ({error})")
            return 1
        codes = await second_factor.recovery_codes_left(args.username)
        state = "enrolled" if enrolled else "not enrolled"
        print(f"{args.username}: TOTP {state}, {codes} recovery code(s) left")
        return 0
    except StorageError as error:
        print(f"gateway totp: {error}", file=sys.stderr)
        return 1
    finally:
        await storage.close()
