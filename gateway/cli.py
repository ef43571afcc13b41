"""The ``gateway`` command: a thin dispatcher over functions the service itself uses.

Each command group lives beside the code it drives and exposes
``add_arguments(parser)`` and ``run(args) -> int``; this module only wires them up.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast

__all__ = ["main"]


class _CommandModule(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


# (command, module, one-line help). Modules import lazily so `gateway --help` stays instant.
_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("serve", "gateway.serve", "run the gateway (forward-auth endpoints and login portal)"),
    ("check", "gateway.check", "validate the configuration and policies; exit 1 on any error"),
    ("policy", "gateway.policy.testing", "ask the policy what it decides for a request"),
    ("users", "gateway.identity.commands", "manage the users file (hash-password, add, ...)"),
    ("totp", "gateway.identity.totp_commands", "administer second factors (reset)"),
    ("sessions", "gateway.session.commands", "list or end a user's sessions"),
    ("bans", "gateway.session.ban_commands", "list or clear brute-force bans"),
    ("secret", "gateway.storage.commands", "generate or rotate encryption keys"),
    ("keys", "gateway.credentials.commands", "manage API keys (create, list, revoke, rotate)"),
    ("audit", "gateway.storage.audit_commands", "verify or list the audit hash chain"),
)


def _build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description=(
            "A forward-auth gateway for Caddy: single sign-on for browsers, "
            "credentials for machines, one policy."
        ),
        epilog="Run 'gateway COMMAND --help' for the options of a command.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name, help_text in _COMMANDS:
        description = help_text[:1].upper() + help_text[1:] + "."
        sub = commands.add_parser(name, help=help_text, description=description)
        if only is not None and name != only:
            continue  # not the command being run: skip importing its module
        module = cast(_CommandModule, importlib.import_module(module_name))
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gateway`` console script."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    # Import only the module of the command being run; `gateway --help` needs none of them.
    chosen = next((name for name, _, _ in _COMMANDS if arguments[:1] == [name]), None)
    parser = _build_parser(chosen)
    args = parser.parse_args(arguments)
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
