"""``gateway sessions``: list a user's sessions, or log a user out everywhere."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

from gateway.config.arguments import MISSING_CONFIG, add_config_argument
from gateway.config.settings import Settings, load_settings
from gateway.config.yaml import ConfigError
from gateway.security.crypto import Keyring
from gateway.session.manager import SessionManager
from gateway.session.model import Session, SessionStoreUnavailable
from gateway.session.stores import SessionStore, open_session_store

__all__ = ["add_arguments", "format_time", "run", "with_store"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list", help="show the live sessions of a user", description="Show a user's sessions."
    )
    listing.add_argument("user", help="the username")
    add_config_argument(listing)
    logout = actions.add_parser(
        "logout",
        help="end every session of a user on every cookie domain (log out everywhere)",
        description="End every session of a user on every cookie domain.",
    )
    logout.add_argument("user", help="the username")
    add_config_argument(logout)


def format_time(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch))


def with_store(
    args: argparse.Namespace, work: Callable[[Settings, SessionStore], Awaitable[int]]
) -> int:
    """Load ``--config``, open the session store, run ``work``; errors as exit codes.

    2: the configuration is unusable (or names the in-process memory store);
    1: the store cannot be reached.
    """
    if not args.config:
        print(f"error: {MISSING_CONFIG}", file=sys.stderr)
        return 2
    try:
        settings = load_settings(args.config)
    except ConfigError as error:
        for issue in error.issues:
            print(f"error: {issue}", file=sys.stderr)
        return 2
    if settings.session.store == "memory":
        print(
            "error: session.store is 'memory': its sessions and bans live inside the running "
            "gateway process, out of reach of this command",
            file=sys.stderr,
        )
        return 2

    async def main() -> int:
        keyring = Keyring.from_texts(settings.secrets.encryption_keys)
        store = await open_session_store(settings, keyring)
        try:
            return await work(settings, store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except SessionStoreUnavailable as error:
        where = (
            _without_credentials(settings.session.redis.url)
            if settings.session.store == "redis"
            else str(settings.session.sqlite.path)
        )
        print(f"error: {error} ({settings.session.store} at {where})", file=sys.stderr)
        return 1


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _describe(session: Session) -> str:
    return "  ".join(
        (
            f"{session.domain:<24}",
            f"{session.level.name.lower():<10}",
            format_time(session.created_at),
            format_time(session.last_activity),
            format_time(session.expires_at),
            f"{'yes' if session.remember_me else 'no':<8}",
            session.key[:12],
        )
    )


def run(args: argparse.Namespace) -> int:
    user: str = args.user

    async def list_sessions(settings: Settings, store: SessionStore) -> int:
        sessions = await SessionManager.from_settings(settings, store).list_user(user)
        if not sessions:
            print(f"{user} has no live sessions")
            return 0
        header = ("DOMAIN", "LEVEL", "CREATED", "LAST ACTIVITY", "EXPIRES", "REMEMBER", "ID")
        print(
            "  ".join((f"{header[0]:<24}", f"{header[1]:<10}", *(f"{h:<20}" for h in header[2:5])))
            + f"  {header[5]:<8}  {header[6]}"
        )
        for session in sessions:
            print(_describe(session))
        return 0

    async def logout(settings: Settings, store: SessionStore) -> int:
        ended = await SessionManager.from_settings(settings, store).logout_user(user)
        print(f"ended {ended} session{'s' if ended != 1 else ''} of {user}")
        if ended and settings.session.cache_ttl > 0:
            print(
                f"(gateway processes may honour a session they read just before for up to "
                f"{settings.session.cache_ttl:g}s more)"
            )
        return 0

    return with_store(args, list_sessions if args.action == "list" else logout)
