"""``gateway users``: hash passwords and manage the users file.

Edits keep the rest of the file as written, comments included, whenever a small text change
can express them; otherwise the file is rewritten from its data and comments inside it are
lost (the command says so). Writes are atomic, and a new file is created with mode 600.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from gateway.config.yaml import ConfigError
from gateway.errors import GatewayError
from gateway.identity.passwords import hash_password
from gateway.identity.users_file import email_problem, group_problem, username_problem
from gateway.identity.users_file_editor import UsersFileEditor

__all__ = ["add_arguments", "run"]


class CommandError(GatewayError):
    """A problem the person running the command can fix; printed without a traceback."""


_FILE_HELP = (
    "Edits keep comments when a small text change can express them; otherwise the file is "
    "rewritten and comments inside it are lost (you are told when). Writes are atomic "
    "(temporary file + rename); a new file gets mode 600. The running gateway reloads the "
    "file by itself."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = _FILE_HELP
    actions = parser.add_subparsers(dest="users_action", metavar="ACTION", required=True)

    source = argparse.ArgumentParser(add_help=False)
    where = source.add_mutually_exclusive_group()
    where.add_argument("--file", type=Path, metavar="PATH", help="the users file")
    where.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="gateway.yml; its authentication.file.path is the users file",
    )
    password = argparse.ArgumentParser(add_help=False)
    password.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input "
        "(the default when standard input is not a terminal)",
    )

    actions.add_parser(
        "hash-password",
        parents=[password],
        help="print the argon2id hash of a password",
        description="Print the argon2id hash of a password (asked without echo, or read "
        "from standard input when it is piped), for the password: field of a user.",
    )
    add = actions.add_parser(
        "add", parents=[source, password], help="add a user", epilog=_FILE_HELP
    )
    add.add_argument("username")
    add.add_argument("--name", help="display name (default: the username)")
    add.add_argument("--email", default="", help="email address")
    add.add_argument(
        "--group",
        dest="groups",
        action="append",
        default=[],
        metavar="GROUP",
        help="a group of the user (repeat for several)",
    )
    add.add_argument("--disabled", action="store_true", help="create the account disabled")
    set_password = actions.add_parser(
        "set-password",
        parents=[source, password],
        help="change a user's password",
        epilog=_FILE_HELP,
    )
    set_password.add_argument("username")
    for name, text in (
        ("disable", "disable a user (their password stops working at once)"),
        ("enable", "enable a disabled user"),
        ("remove", "delete a user from the file"),
    ):
        sub = actions.add_parser(name, parents=[source], help=text, epilog=_FILE_HELP)
        sub.add_argument("username")
    actions.add_parser("list", parents=[source], help="list the users")
    actions.add_parser("check", parents=[source], help="validate the users file")


def run(args: argparse.Namespace) -> int:
    try:
        return _ACTIONS[args.users_action](args)
    except CommandError as error:
        print(f"gateway users: {error}", file=sys.stderr)
        return 1
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    except OSError as error:
        name = error.filename or "file"
        print(f"gateway users: {name}: {error.strerror or error}", file=sys.stderr)
        return 1


# -- actions ---------------------------------------------------------------------------------


def _hash_password(args: argparse.Namespace) -> int:
    print(hash_password(_read_password(args, confirm=True)))
    return 0


def _add(args: argparse.Namespace) -> int:
    username = _checked_username(args.username)
    name = args.name if args.name is not None else username
    problems = [email_problem(args.email), *(group_problem(group) for group in args.groups)]
    if not name.strip() or "\n" in name:
        problems.append("--name must be a non-empty single line")
    for problem in problems:
        if problem:
            raise CommandError(problem)
    editor = _open(args, create=True)
    if username in editor.users:
        raise CommandError(
            f"user '{username}' already exists in {editor.path} "
            f"(change the password with: gateway users set-password {username})"
        )
    entry: dict[str, Any] = {"displayname": name}
    if args.email:
        entry["email"] = args.email
    entry["groups"] = list(dict.fromkeys(args.groups))
    entry["password"] = hash_password(_read_password(args, confirm=True))
    if args.disabled:
        entry["disabled"] = True
    editor.add(username, entry)
    _save(editor, f"added user '{username}'")
    return 0


def _set_password(args: argparse.Namespace) -> int:
    editor = _open(args)
    username = _existing(editor, args.username)
    editor.set(username, "password", hash_password(_read_password(args, confirm=True)))
    _save(editor, f"changed the password of '{username}'")
    return 0


def _set_disabled(args: argparse.Namespace, disabled: bool) -> int:
    editor = _open(args)
    username = _existing(editor, args.username)
    state = "disabled" if disabled else "enabled"
    if editor.records[username].user.disabled == disabled:
        print(f"user '{username}' is already {state}")
        return 0
    editor.set(username, "disabled", disabled)
    _save(editor, f"{state} user '{username}'")
    return 0


def _remove(args: argparse.Namespace) -> int:
    editor = _open(args)
    username = _existing(editor, args.username)
    editor.remove(username)
    _save(editor, f"removed user '{username}'")
    return 0


def _list(args: argparse.Namespace) -> int:
    editor = _open(args)
    rows = [("USER", "NAME", "EMAIL", "GROUPS", "STATUS")]
    for record in editor.records.values():
        user = record.user
        status = "disabled" if user.disabled else "enabled"
        rows.append((user.username, user.display_name, user.email, ",".join(user.groups), status))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[4]]))
    return 0


def _check(args: argparse.Namespace) -> int:
    editor = _open(args)
    enabled = sum(not record.user.disabled for record in editor.records.values())
    print(f"{editor.path}: ok, {len(editor.records)} users ({enabled} enabled)")
    return 0


_ACTIONS = {
    "hash-password": _hash_password,
    "add": _add,
    "set-password": _set_password,
    "disable": lambda args: _set_disabled(args, True),
    "enable": lambda args: _set_disabled(args, False),
    "remove": _remove,
    "list": _list,
    "check": _check,
}


# -- helpers ---------------------------------------------------------------------------------


def _users_file(args: argparse.Namespace) -> Path:
    if args.file is not None:
        return Path(args.file)
    if args.config is None:
        raise CommandError("name the users file with --file PATH or --config gateway.yml")
    from gateway.config.settings import load_settings

    settings = load_settings(args.config)
    if settings.authentication.file is None:
        raise CommandError(
            f"{args.config} has no authentication.file section "
            f"(backend: {settings.authentication.backend}); pass --file PATH"
        )
    return settings.authentication.file.path


def _open(args: argparse.Namespace, *, create: bool = False) -> UsersFileEditor:
    path = _users_file(args)
    try:
        return UsersFileEditor.open(path, create=create)
    except FileNotFoundError:
        raise CommandError(
            f"{path}: file not found (create it with: gateway users add USER --file {path})"
        ) from None


def _save(editor: UsersFileEditor, what: str) -> None:
    editor.save()
    print(f"{what} in {editor.path}")
    if not editor.comments_kept:
        print(
            f"note: {editor.path} was rewritten from its data; comments inside it were lost",
            file=sys.stderr,
        )


def _checked_username(username: str) -> str:
    problem = username_problem(username)
    if problem:
        raise CommandError(problem)
    return username


def _existing(editor: UsersFileEditor, username: str) -> str:
    if username not in editor.users:
        raise CommandError(f"no user '{username}' in {editor.path}")
    return username


def _read_password(args: argparse.Namespace, *, confirm: bool) -> str:
    if args.password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if confirm and password and getpass.getpass("Repeat the password: ") != password:
            raise CommandError("the two passwords differ; nothing was changed")
    if not password:
        raise CommandError("the password is empty; nothing was changed")
    return password
