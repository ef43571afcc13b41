"""The session record, its authentication level and its compact serialisation."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import GatewayError, Unavailable
from gateway.levels import AuthLevel

__all__ = [
    "AuthLevel",
    "Session",
    "SessionExpired",
    "SessionStoreUnavailable",
    "decode_session",
    "encode_session",
]


class SessionStoreUnavailable(Unavailable):
    """The session store cannot be reached; callers must deny, never allow."""

    def __init__(self, message: str = "the session store is unavailable") -> None:
        super().__init__(message)


class SessionExpired(GatewayError):
    """The session ended (logout, expiry) before a change to it could be stored."""

    def __init__(self, message: str = "the session has ended; log in again") -> None:
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Session:
    """A server-side session. Only ``id`` travels in the cookie; the store knows ``key``.

    ``id`` is empty for sessions read without their cookie (e.g. listed by user), since the
    store keeps only the keyed hash of the id. Change a session through
    :class:`~gateway.session.manager.SessionManager`, which regenerates ids where needed.
    """

    id: str = field(repr=False)
    key: str
    domain: str
    username: str | None
    display_name: str = ""
    email: str = ""
    groups: tuple[str, ...] = ()
    level: AuthLevel = AuthLevel.NONE
    created_at: float = 0.0
    last_activity: float = 0.0
    expires_at: float = 0.0
    remember_me: bool = False
    first_factor_at: float | None = None
    second_factor_at: float | None = None
    groups_refreshed_at: float | None = None
    data: Mapping[str, str] = field(default_factory=dict)
    revision: bytes = field(default=b"", repr=False, compare=False)
    """Which stored value this session was read from, as the store tells (opaque; empty
    for a session not read from a store). A touch is written only while it is still the
    stored one, so a background write never undoes a change made meanwhile."""

    @property
    def authenticated(self) -> bool:
        return self.username is not None and self.level > AuthLevel.NONE


_FORMAT_VERSION = 1


def encode_session(session: Session) -> bytes:
    """Compact JSON for a store; the cookie id is never part of it."""
    record: dict[str, Any] = {
        "v": _FORMAT_VERSION,
        "d": session.domain,
        "u": session.username,
        "l": int(session.level),
        "c": session.created_at,
        "a": session.last_activity,
        "x": session.expires_at,
    }
    # Optional fields are left out when empty to keep values small.
    if session.display_name:
        record["n"] = session.display_name
    if session.email:
        record["e"] = session.email
    if session.groups:
        record["g"] = list(session.groups)
    if session.remember_me:
        record["r"] = 1
    if session.first_factor_at is not None:
        record["f1"] = session.first_factor_at
    if session.second_factor_at is not None:
        record["f2"] = session.second_factor_at
    if session.groups_refreshed_at is not None:
        record["gr"] = session.groups_refreshed_at
    if session.data:
        record["data"] = dict(session.data)
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


_LEVELS = {int(level): level for level in AuthLevel}


def decode_session(key: str, raw: bytes | str, *, revision: bytes = b"") -> Session:
    """The inverse of :func:`encode_session`; raises ``ValueError`` on anything malformed.

    One ``json.loads`` and type checks that cost nothing for what :func:`encode_session`
    wrote (it runs for every session a process reads)."""
    try:
        record = json.loads(raw)
        if type(record) is not dict or record.get("v") != _FORMAT_VERSION:
            raise ValueError("unknown session format")
        domain = record["d"]
        username = record["u"]
        groups = record.get("g", ())
        data = record.get("data")
        level = _LEVELS.get(record["l"])
        if (
            type(domain) is not str
            or not (username is None or type(username) is str)
            or not (data is None or type(data) is dict)
            or type(groups) not in (list, tuple)
            or level is None
        ):
            raise ValueError("malformed session record")
        if not all(type(group) is str for group in groups):
            groups = [str(group) for group in groups]
        if data is None:
            data = {}
        elif not all(type(value) is str for value in data.values()):
            data = {str(k): str(v) for k, v in data.items()}
        return Session(
            id="",
            key=key,
            domain=domain,
            username=username,
            display_name=str(record.get("n", "")),
            email=str(record.get("e", "")),
            groups=tuple(groups),
            level=level,
            created_at=float(record["c"]),
            last_activity=float(record["a"]),
            expires_at=float(record["x"]),
            remember_me=bool(record.get("r", 0)),
            first_factor_at=_optional_float(record.get("f1")),
            second_factor_at=_optional_float(record.get("f2")),
            groups_refreshed_at=_optional_float(record.get("gr")),
            data=data,
            revision=revision,
        )
    except (KeyError, TypeError, UnicodeDecodeError) as error:
        raise ValueError(f"malformed session record: {error}") from None
