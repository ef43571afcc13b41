"""``gateway bans``: list or lift brute-force bans (kept in the session store's backend)."""

from __future__ import annotations

import argparse
import sys
import time

from gateway.config.arguments import add_config_argument
from gateway.config.settings import Settings
from gateway.security.regulation import Regulator
from gateway.session.commands import format_time, with_store
from gateway.session.stores import SessionStore

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list", help="show active bans", description="Show active brute-force bans."
    )
    add_config_argument(listing)
    clear = actions.add_parser(
        "clear",
        help="lift the bans of a user and/or an IP address",
        description="Lift bans and forget recent failures of a user and/or an IP address.",
    )
    clear.add_argument("--user", help="the username to unban")
    clear.add_argument("--ip", help="the IP address to unban (IPv6: its /64)")
    clear.add_argument("--all", action="store_true", help="lift every ban")
    add_config_argument(clear)


def _remaining(seconds: float) -> str:
    whole = max(0, int(seconds + 0.999))
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def run(args: argparse.Namespace) -> int:
    if args.action == "clear" and not (args.user or args.ip or args.all):
        print("error: name what to clear: --user USER, --ip ADDRESS, or --all", file=sys.stderr)
        return 2
    if args.action == "clear" and args.all and (args.user or args.ip):
        print("error: --all cannot be combined with --user or --ip", file=sys.stderr)
        return 2

    async def list_bans(settings: Settings, store: SessionStore) -> int:
        bans = await Regulator.from_settings(settings, store).list_bans()
        if not bans:
            print("no active bans")
            return 0
        width = max(len(ban.value) for ban in bans)
        print(f"{'KIND':<4}  {'WHO':<{width}}  {'UNTIL':<20}  REMAINING")
        now = time.time()
        for ban in bans:
            print(
                f"{ban.kind:<4}  {ban.value:<{width}}  {format_time(ban.until):<20}  "
                f"{_remaining(ban.until - now)}"
            )
        return 0

    async def clear(settings: Settings, store: SessionStore) -> int:
        lifted = await Regulator.from_settings(settings, store).clear(
            username=args.user, ip=args.ip
        )
        print(f"lifted {lifted} ban{'s' if lifted != 1 else ''}")
        return 0

    return with_store(args, list_bans if args.action == "list" else clear)
