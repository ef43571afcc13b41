"""Who is asking: a session cookie or ``Authorization: Basic`` on the authorisation endpoints.

Basic credentials are checked against the user backend (one factor only) and regulated like
the portal. A successful check is remembered for a few seconds under a keyed hash of the
header, so a script sending the same credentials in a loop does not pay argon2 every time,
and a wrong password is never cached. What is remembered never outranks what changed since:

* the ban check comes first, on every request, cached or not;
* a backend with a generation (the users file: every reload) invalidates every remembered
  success when it moves on, so a disabled account or a new password counts from the next
  request;
* a backend without one (LDAP) is trusted for no longer than a session trusts it
  (``refresh_interval``), and never longer than the few seconds of the cache.

A session's identity (with its ``Remote-*`` headers encoded) is built once per session
version and remembered by cookie, as many as the session cache holds. The user behind it is
checked again (at most once a second) only when that can change anything: the users file
was reloaded, or the directory refresh (``refresh_interval``) is due; until then a request
costs no call to the backend at all.
"""

from __future__ import annotations

import binascii
import logging
import time
from base64 import b64decode
from dataclasses import dataclass

from gateway.decision.request import AccessRequest
from gateway.errors import Rejected
from gateway.identity.model import Generational, User
from gateway.identity.refresh import UserRefresher
from gateway.identity.sign_in import PasswordCheck, Refusal
from gateway.levels import AuthLevel
from gateway.memo import BoundedMemo
from gateway.policy import Subject
from gateway.runtime import Runtime
from gateway.security.crypto import keyed_hash
from gateway.session.model import Session, SessionExpired
from gateway.session.settings import CookieDomain

__all__ = [
    "ANONYMOUS",
    "EMPTY_REMOTE_HEADERS",
    "Authenticated",
    "Authenticator",
    "BasicRejected",
    "cookie_value",
    "is_basic",
]

log = logging.getLogger("gateway.decision")

_BASIC_CACHE_SECONDS = 10.0
_BASIC_CACHE_LIMIT = 1024
_BASIC_CACHE_BYTES = 1 << 20
# How often one process re-checks a session's user against the backend (at most): a users
# file edit or an LDAP refresh shows within this, on top of the backend's own interval.
_REFRESH_CHECK_SECONDS = 1.0
_IDENTITY_BYTES = 300  # charged per remembered identity on top of its header bytes


class BasicRejected(Rejected):
    """``Authorization: Basic`` was sent and is wrong, malformed or banned."""


@dataclass(frozen=True, slots=True)
class _RememberedBasic:
    """A Basic success: valid until ``expires`` and while the backend is at ``generation``."""

    identity: Authenticated
    expires: float
    generation: int | None


@dataclass(slots=True)
class _KnownIdentity:
    """The identity built from one session version, and when to check its user again."""

    session: Session
    identity: Authenticated
    recheck_at: float  # time.monotonic(): not before (at most once a second)
    refresh_due: float  # time.time(): when the directory refresh is due (interval > 0)
    generation: int | None  # the users backend's generation when it was checked


def _charged(cookie: str, identity: Authenticated) -> int:
    """The bytes a remembered identity is charged (see :class:`BoundedMemo`)."""
    headers = sum(len(name) + len(text) for name, text in identity.remote)
    return _IDENTITY_BYTES + len(cookie) + headers


def _same_identity(a: Session, b: Session) -> bool:
    """Whether two versions of a session (a touch apart) make the same identity."""
    return (
        a.key == b.key
        and a.username == b.username
        and a.level == b.level
        and a.groups == b.groups
        and a.email == b.email
        and a.display_name == b.display_name
        and a.groups_refreshed_at == b.groups_refreshed_at
    )


def is_basic(headers: dict[str, str]) -> bool:
    """Whether the request carries ``Authorization: Basic`` (cheap, nothing decoded)."""
    authorization = headers.get("authorization")
    return authorization is not None and authorization[:6].lower() == "basic "


RemoteHeaders = tuple[tuple[bytes, bytes], ...]


def header_value(value: str) -> bytes:
    """A directory value as a header: UTF-8, with anything that could split headers removed."""
    return value.replace("\r", " ").replace("\n", " ").replace("\x00", "").encode()


def remote_headers(username: str, groups: tuple[str, ...], email: str, name: str) -> RemoteHeaders:
    """The four identity headers Caddy copies to the upstream, as raw header pairs."""
    return (
        (b"remote-user", header_value(username)),
        (b"remote-groups", header_value(",".join(groups))),
        (b"remote-email", header_value(email)),
        (b"remote-name", header_value(name)),
    )


EMPTY_REMOTE_HEADERS: RemoteHeaders = (
    (b"remote-user", b""),
    (b"remote-groups", b""),
    (b"remote-email", b""),
    (b"remote-name", b""),
)


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The identity behind a request, anonymous when ``username`` is None."""

    username: str | None
    groups: tuple[str, ...]
    email: str
    display_name: str
    level: AuthLevel
    subject: Subject
    remote: RemoteHeaders = EMPTY_REMOTE_HEADERS
    """The identity headers of a 2xx answer, built once per identity."""

    @classmethod
    def of(
        cls, username: str, groups: tuple[str, ...], email: str, name: str, level: AuthLevel
    ) -> Authenticated:
        return cls(
            username,
            groups,
            email,
            name,
            level,
            Subject.of(username, groups),
            remote_headers(username, groups, email, name),
        )


ANONYMOUS = Authenticated(None, (), "", "", AuthLevel.NONE, Subject())


def cookie_value(header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header, without a full cookie parse."""
    if not header:
        return None
    prefix = name + "="
    for part in header.split(";"):
        part = part.strip()
        if part.startswith(prefix):
            return part[len(prefix) :] or None
    return None


class Authenticator:
    """Resolves the identity of an authorisation request."""

    def __init__(self, runtime: Runtime) -> None:
        self._sessions = runtime.sessions
        self._passwords = PasswordCheck(
            runtime.users, runtime.regulator, log=log, attempt="basic auth"
        )
        self._hash_key = runtime.hash_key
        settings = runtime.settings.session
        self._cookie_names = {
            cookie.domain: cookie.name or settings.cookie_name for cookie in settings.cookies
        }
        self._basic_cache: BoundedMemo[bytes, _RememberedBasic] = BoundedMemo(
            _BASIC_CACHE_LIMIT, _BASIC_CACHE_BYTES
        )
        self._refresher = UserRefresher.from_settings(runtime.settings, runtime.users)
        users = runtime.users
        self._generational = users if isinstance(users, Generational) else None
        # Without a generation nothing says a password changed or an account was disabled:
        # remember a success no longer than a session may keep a stale user.
        self._basic_seconds = (
            _BASIC_CACHE_SECONDS
            if self._generational is not None
            else min(_BASIC_CACHE_SECONDS, self._refresher.interval)
        )
        # cookie value -> the identity of the session version the manager handed out
        self._identities: BoundedMemo[str, _KnownIdentity] = BoundedMemo(
            settings.cache_size, settings.cache_max_bytes
        )

    async def identify(
        self,
        headers: dict[str, str],
        access: AccessRequest,
        cookie_domain: CookieDomain,
        *,
        basic: bool = True,
    ) -> Authenticated:
        """Who is asking: ``Authorization: Basic`` if sent (and ``basic``), else the session.

        ``basic=False`` leaves Basic credentials to the application (a bypass rule); the
        session cookie still counts. Raises :class:`BasicRejected`.
        """
        if basic and is_basic(headers):
            return await self._basic(headers["authorization"], access)
        value = cookie_value(headers.get("cookie"), self._cookie_names[cookie_domain.domain])
        if value is None:
            return ANONYMOUS
        session = await self._sessions.load(value, cookie_domain)
        if session is None or session.username is None:
            return ANONYMOUS
        known = self._identities.get(value)
        if known is not None:
            if known.session is session:
                if time.monotonic() < known.recheck_at or not self._recheck_due(known):
                    return known.identity
            elif _same_identity(known.session, session) and not self._recheck_due(known):
                # Another copy of the same version (the one a touch hands out, or a new read
                # that changed nothing the identity shows): the same identity.
                known.session = session
                return known.identity
        return await self._identify_session(value, session, known)

    def _recheck_due(self, known: _KnownIdentity) -> bool:
        """Whether asking the backend about the user again can change anything now."""
        if self._refresher.interval > 0:
            return time.time() >= known.refresh_due
        if self._generational is not None:
            return self._generational.generation != known.generation
        return True  # a backend that cannot tell: once a second

    async def _identify_session(
        self, value: str, session: Session, known: _KnownIdentity | None
    ) -> Authenticated:
        # Read before the check: a reload while it runs leaves the entry already stale.
        generation = self._generational.generation if self._generational is not None else None
        refreshed = await self._refresh(session)
        if refreshed is None or refreshed.username is None:
            self._identities.pop(value)
            return ANONYMOUS
        if known is not None and _same_identity(known.session, refreshed):
            identity = known.identity
        else:
            identity = Authenticated.of(
                refreshed.username,
                tuple(refreshed.groups),
                refreshed.email,
                refreshed.display_name,
                refreshed.level,
            )
        checked_at = refreshed.groups_refreshed_at or refreshed.created_at
        remembered = _KnownIdentity(
            # Keyed to the session object the manager handed out: a new read (logout
            # elsewhere, level change, update) yields a new object and so a fresh check.
            refreshed,
            identity,
            time.monotonic() + _REFRESH_CHECK_SECONDS,
            checked_at + self._refresher.interval,
            generation,
        )
        self._identities.put(value, remembered, _charged(value, identity))
        return identity

    async def _refresh(self, session: Session) -> Session | None:
        """Apply directory changes (groups, disabled accounts) to a session when due."""
        assert session.username is not None
        stored = User(session.username, session.display_name, session.email, tuple(session.groups))
        checked_at = session.groups_refreshed_at or session.created_at
        result = await self._refresher.refresh(stored, checked_at)
        if result.user is None:
            log.info("ending sessions of %s: the account is gone or disabled", session.username)
            # Every session of the account, in every process (the store announces it).
            await self._sessions.logout_user(session.username)
            return None
        current = result.user
        if result.checked_at == checked_at:
            return session  # not due, or the directory is unavailable: keep what we have
        unchanged = (current.groups, current.email, current.display_name) == (
            stored.groups,
            stored.email,
            stored.display_name,
        )
        if unchanged and self._refresher.interval == 0:
            return session  # an in-memory backend: nothing to remember
        try:
            return await self._sessions.update(
                session,
                display_name=current.display_name,
                email=current.email,
                groups=current.groups,
            )
        except SessionExpired:
            return None

    async def _basic(self, header: str, access: AccessRequest) -> Authenticated:
        try:
            decoded = b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise BasicRejected from None
        username, separator, password = decoded.partition(":")
        if not separator or not username or not password:
            raise BasicRejected
        ip = str(access.client_ip)
        started = time.monotonic()
        # Before the cache: a ban takes effect on the very next request, remembered or not.
        if await self._passwords.check_ban(username, ip, started=started) is not None:
            raise BasicRejected  # the same answer as a wrong password, after about as long
        cache_key = keyed_hash(self._hash_key, header, purpose="basic-auth-cache")
        # Read before the check: a reload while it runs leaves the entry already stale.
        generation = self._generational.generation if self._generational is not None else None
        now = time.monotonic()
        cached = self._basic_cache.get(cache_key)
        if cached is not None:
            if cached.expires > now and cached.generation == generation:
                return cached.identity
            self._basic_cache.pop(cache_key)
        user = await self._passwords.check_password(username, password, ip, started=started)
        if isinstance(user, Refusal):
            raise BasicRejected
        identity = Authenticated.of(
            user.username, tuple(user.groups), user.email, user.display_name, AuthLevel.ONE_FACTOR
        )
        if self._basic_seconds > 0:
            remembered = _RememberedBasic(identity, now + self._basic_seconds, generation)
            self._basic_cache.put(cache_key, remembered, len(header))
        return identity
