"""The embedded user database: one YAML file in Authelia's shape, reloaded when it changes.

.. code-block:: yaml

    users:
      john:
        displayname: John Doe
        email: john@example.com
        groups: [admins, dev]
        password: "$argon2id$v=19$m=65536,t=3,p=4$..."
        disabled: false

Unknown keys are errors (a mistyped ``disabled`` must not leave an account enabled), except
the optional profile fields Authelia knows, which are accepted and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config.suggest import did_you_mean
from gateway.config.yaml import ConfigError, Document, Issue, load_bytes, load_file
from gateway.identity.model import User
from gateway.identity.passwords import PasswordVerifier, hash_problem
from gateway.stable_files import Snapshot, StableFiles

__all__ = [
    "UserRecord",
    "UsersFileBackend",
    "email_problem",
    "group_problem",
    "load_users",
    "parse_users",
    "username_problem",
]

logger = logging.getLogger("gateway.identity")

USER_KEYS = ("displayname", "email", "groups", "password", "disabled")
# Profile fields of Authelia's users file that the gateway does not use.
AUTHELIA_PROFILE_KEYS = frozenset(
    {
        "given_name",
        "middle_name",
        "family_name",
        "nickname",
        "gender",
        "birthdate",
        "website",
        "profile",
        "picture",
        "zoneinfo",
        "locale",
        "phone_number",
        "phone_extension",
        "address",
        "extra",
    }
)
_MAX_NAME = 256


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One entry of the users file: the user and their password hash."""

    user: User
    password_hash: str


def _has_control(text: str) -> bool:
    return any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in text)


def username_problem(name: str) -> str | None:
    if not name:
        return "a username cannot be empty"
    if len(name) > _MAX_NAME:
        return f"username is longer than {_MAX_NAME} characters"
    if name != name.strip() or _has_control(name):
        return f"username {name!r} has leading/trailing spaces or control characters"
    return None


def group_problem(group: object) -> str | None:
    if not isinstance(group, str) or not group.strip():
        return "a group must be a non-empty text"
    if "," in group:
        # Remote-Groups is a comma-separated header: "admins,dev" would read as two groups.
        return f"group {group!r} contains a comma, which the Remote-Groups header cannot carry"
    if group != group.strip() or _has_control(group) or len(group) > _MAX_NAME:
        return f"group {group!r} has leading/trailing spaces, control characters or is too long"
    return None


def email_problem(email: object) -> str | None:
    if not isinstance(email, str):
        return "email must be text"
    if email and (email.count("@") != 1 or any(c.isspace() for c in email) or _has_control(email)):
        return f"{email!r} is not an email address"
    return None


def _parse_user(
    document: Document, name: str, entry: Any, issues: list[Issue]
) -> UserRecord | None:
    path = ("users", name)
    problem = username_problem(name)
    if problem:
        issues.append(document.issue(path, problem, at_key=True))
        return None
    if not isinstance(entry, dict):
        issues.append(
            document.issue(path, f"user '{name}' must be a mapping with displayname, password, ...")
        )
        return None
    before = len(issues)
    for key in entry:
        if key not in USER_KEYS and key not in AUTHELIA_PROFILE_KEYS:
            hint = did_you_mean(key, USER_KEYS)
            expected = ", ".join(USER_KEYS)
            issues.append(
                document.issue(
                    (*path, key),
                    f"unknown key '{key}' for user '{name}'{hint} (expected {expected})",
                    at_key=True,
                )
            )
    password = entry.get("password")
    if isinstance(password, str) and password.startswith("{CRYPT}"):
        password = password.removeprefix("{CRYPT}")  # Authelia's optional marker
    if "password" not in entry:
        issues.append(document.issue(path, f"user '{name}' has no password", at_key=True))
    elif problem := hash_problem(password):
        issues.append(document.issue((*path, "password"), problem))
    display_name = entry.get("displayname", name)
    if not isinstance(display_name, str) or _has_control(display_name):
        issues.append(
            document.issue((*path, "displayname"), "displayname must be text on one line")
        )
    email = entry.get("email", "")
    if problem := email_problem(email):
        issues.append(document.issue((*path, "email"), problem))
    groups = entry.get("groups", [])
    if groups is None:
        groups = []
    if not isinstance(groups, list):
        issues.append(
            document.issue((*path, "groups"), "groups must be a list, e.g. groups: [admins, dev]")
        )
        groups = []
    for index, group in enumerate(groups):
        if problem := group_problem(group):
            issues.append(document.issue((*path, "groups", index), problem))
    disabled = entry.get("disabled", False)
    if not isinstance(disabled, bool):
        issues.append(document.issue((*path, "disabled"), "disabled must be true or false"))
    if len(issues) > before or not isinstance(password, str):
        return None
    unique_groups = tuple(dict.fromkeys(groups))
    user = User(name, display_name, email, unique_groups, disabled)
    return UserRecord(user, password)


def parse_users(document: Document) -> dict[str, UserRecord]:
    """Validate a users file; raises :class:`ConfigError` naming file:line of every problem."""
    data = document.data
    if data is None:
        data = {"users": {}}
    if not isinstance(data, dict):
        raise ConfigError([document.issue((), "the users file must be a mapping with 'users:'")])
    issues: list[Issue] = [
        document.issue(
            (key,), f"unknown key '{key}' (the users file has only 'users:')", at_key=True
        )
        for key in data
        if key != "users"
    ]
    users = data.get("users")
    if users is None:
        users = {}
    if not isinstance(users, dict):
        raise ConfigError([*issues, document.issue(("users",), "'users' must be a mapping")])
    records: dict[str, UserRecord] = {}
    for name, entry in users.items():
        record = _parse_user(document, name, entry, issues)
        if record is not None:
            records[name] = record
    if issues:
        raise ConfigError(issues)
    return records


def load_users(path: str | Path) -> dict[str, UserRecord]:
    """Read and validate a users file (blocking); raises :class:`ConfigError`."""
    # No ${ENV} interpolation: argon2 hashes are full of '$'.
    return parse_users(load_file(path, environ=None))


class UsersFileBackend:
    """:class:`~gateway.identity.model.UserBackend` over a users file.

    ``start()`` fails with :class:`ConfigError` when the file is unusable. Afterwards the file
    is polled every ``poll_interval`` seconds; a new version is applied once it has settled
    (read unchanged on ``settle_polls`` consecutive polls, see :mod:`gateway.stable_files`),
    so a file caught half-written (a user who has lost their ``disabled: true`` line) is
    never in force. A version that does not validate is logged (file:line) and the last good
    users stay in force.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        watch: bool = True,
        poll_interval: float = 2.0,
        verifier: PasswordVerifier | None = None,
        settle_polls: int = 2,
    ) -> None:
        self.path = Path(path)
        self._watch_enabled = watch
        self._poll_interval = poll_interval
        self._verifier = verifier or PasswordVerifier()
        self._records: Mapping[str, UserRecord] = {}
        self._files = StableFiles([self.path], settle_polls=settle_polls)
        self._task: asyncio.Task[None] | None = None
        self.generation = 0
        """Moves on with every load that took effect (see ``model.Generational``)."""

    @property
    def usernames(self) -> tuple[str, ...]:
        """The usernames currently loaded (enabled or not)."""
        return tuple(self._records)

    async def start(self) -> None:
        snapshot = await asyncio.to_thread(self._files.read_now)
        self._records = await asyncio.to_thread(self._parse, snapshot)
        self.generation += 1
        logger.info("users file %s: %d users", self.path, len(self._records))
        if self._watch_enabled and self._task is None:
            self._task = asyncio.create_task(self._poll(), name=f"watch {self.path}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._verifier.close()

    async def authenticate(self, username: str, password: str) -> User | None:
        if not password:
            return None
        record = self._records.get(username)
        if record is None:
            await self._verifier.verify(None, password)
            return None
        if not await self._verifier.verify(record.password_hash, password):
            return None
        # Checked after the hash, so a disabled account answers like a wrong password.
        if record.user.disabled:
            return None
        return record.user

    async def get_user(self, username: str) -> User | None:
        record = self._records.get(username)
        if record is None or record.user.disabled:
            return None
        return record.user

    async def reload(self) -> bool:
        """One poll: apply a changed version once it has settled; False (and a logged error)
        when the new version is bad (it is not tried again until it changes)."""
        snapshot = await asyncio.to_thread(self._files.poll)
        if snapshot is None:
            return True  # unchanged, or still settling
        try:
            records = await asyncio.to_thread(self._parse, snapshot)
        except ConfigError as error:
            logger.error("users file not reloaded, keeping the previous users:\n%s", error)
            return False
        self._records = records
        # Passwords, disabled flags or whole users may differ now: what was remembered about
        # them (a checked Basic password) must be checked again.
        self.generation += 1
        logger.info("users file %s reloaded: %d users", self.path, len(records))
        return True

    def _parse(self, snapshot: Snapshot) -> dict[str, UserRecord]:
        """The users in exactly the bytes of ``snapshot`` (blocking: argon2 cost probe)."""
        version = snapshot.files[0]
        if version.error is not None:
            raise version.error
        assert version.data is not None
        # No ${ENV} interpolation: argon2 hashes are full of '$'.
        records = parse_users(load_bytes(version.data, str(self.path), environ=None))
        self._verifier.match_cost_of(record.password_hash for record in records.values())
        return records

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                await self.reload()
            except Exception:  # the watcher must outlive any surprise
                logger.exception("users file %s: reload failed", self.path)
