"""Sessions for the decision endpoint and the portal: load, log in, step up, log out.

``load`` runs on every forward-auth request. It answers from a small in-process cache
when it can (entries live ``session.cache_ttl``, 1 s by default), hashes the cookie id and
reads the store otherwise, and writes back ``last_activity`` only when it is older than
``min(inactivity / 10, 10 s)``. Changes made by this process (logout, new ids) drop its
cache entries at once; another process may keep answering from its copy of a session for
at most ``cache_ttl`` after the change.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from gateway.config.settings import Settings
from gateway.security.crypto import keyed_hash, random_token
from gateway.session.cookies import CookieDomainIndex, SessionCookie
from gateway.session.model import AuthLevel, Session, SessionExpired
from gateway.session.settings import CookieDomain, SessionSettings
from gateway.session.stores import SessionStore

__all__ = ["SessionManager"]

_ID_BYTES = 32
_ID_LENGTH = len(random_token(_ID_BYTES))  # 43 characters of URL-safe base64
_MAX_TOUCH_INTERVAL = 10.0
_DEFAULT_CACHE_SIZE = 10_000


@dataclasses.dataclass(frozen=True, slots=True)
class _DomainPolicy:
    domain: str
    expiration: float
    inactivity: float  # 0 disables the inactivity limit
    remember_me: float  # 0 disables remember-me
    touch_interval: float
    cookie: SessionCookie


class SessionManager:
    """Server-side sessions with one cookie per configured cookie domain."""

    def __init__(
        self,
        settings: SessionSettings,
        store: SessionStore,
        hash_key: bytes,
        *,
        clock: Callable[[], float] = time.time,
        cache_size: int = _DEFAULT_CACHE_SIZE,
    ) -> None:
        self._store = store
        self._hash_key = hash_key
        self._clock = clock
        self._cache_ttl = settings.cache_ttl
        self._cache_size = cache_size
        self._cache: dict[str, tuple[Session, float]] = {}
        self._generation = 0  # bumped by every local invalidation
        self._loading: dict[str, tuple[_DomainPolicy, asyncio.Future[Session | None]]] = {}
        self._policies: dict[str, _DomainPolicy] = {}
        for cookie in settings.cookies:
            inactivity = settings.inactivity if cookie.inactivity is None else cookie.inactivity
            remember_me = settings.remember_me if cookie.remember_me is None else cookie.remember_me
            self._policies[cookie.domain] = _DomainPolicy(
                domain=cookie.domain,
                expiration=settings.expiration if cookie.expiration is None else cookie.expiration,
                inactivity=inactivity,
                remember_me=remember_me,
                touch_interval=min(inactivity / 10, _MAX_TOUCH_INTERVAL)
                if inactivity > 0
                else _MAX_TOUCH_INTERVAL,
                cookie=SessionCookie(
                    cookie, default_name=settings.cookie_name, same_site=settings.same_site
                ),
            )
        self._domain_index = CookieDomainIndex(settings.cookies)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        store: SessionStore,
        hash_key: bytes | None = None,
        **options: Any,
    ) -> SessionManager:
        """A manager over ``store`` (see :func:`open_session_store`); the hash key defaults
        to ``secrets.hash_key``."""
        if hash_key is None:
            hash_key = settings.secrets.hash_key.encode()
        return cls(settings.session, store, hash_key, **options)

    @property
    def store(self) -> SessionStore:
        return self._store

    # -- cookies -------------------------------------------------------------------------

    def cookie_domain_for(self, host: str) -> CookieDomain | None:
        """The longest configured cookie domain that ``host`` equals or lies under."""
        return self._domain_index(host)

    def cookie_name(self, cookie_domain: CookieDomain) -> str:
        """The name of the session cookie of ``cookie_domain``."""
        return self._policy(cookie_domain.domain).cookie.name

    def cookie_header(self, session: Session, cookie_domain: CookieDomain) -> str:
        """Set-Cookie value; persistent (Max-Age) only for remember-me sessions."""
        max_age = int(session.expires_at - self._clock()) if session.remember_me else None
        return self._policy(cookie_domain.domain).cookie.header(session.id, max_age)

    def clear_cookie_header(self, cookie_domain: CookieDomain) -> str:
        """Set-Cookie value that removes the session cookie."""
        return self._policy(cookie_domain.domain).cookie.clear_header()

    # -- the hot path --------------------------------------------------------------------

    async def load(self, cookie_value: str, cookie_domain: CookieDomain) -> Session | None:
        """The live session a cookie names, or None (unknown, expired, inactive, other
        domain). Raises ``SessionStoreUnavailable`` if the store cannot be read."""
        if len(cookie_value) != _ID_LENGTH:
            return None
        policy = self._policies.get(cookie_domain.domain)
        if policy is None:
            return None
        now = self._clock()
        entry = self._cache.get(cookie_value)
        if entry is not None:
            session, fresh_until = entry
            if (
                now < fresh_until
                and session.domain == policy.domain
                and now < session.expires_at
                and now - session.last_activity <= policy.touch_interval
            ):
                return session
            # Stale, due a touch, or apparently dead: the store has the last word.
            self._cache.pop(cookie_value, None)
        # Concurrent requests with the same cookie share one store read (and one touch).
        pending = self._loading.get(cookie_value)
        if pending is None or pending[0] is not policy:
            task = asyncio.ensure_future(self._load_from_store(cookie_value, policy, now))
            pending = (policy, task)
            self._loading[cookie_value] = pending
            task.add_done_callback(lambda done: self._loaded(cookie_value, done))
        # shield: a client that goes away must not cancel the read others wait for.
        return await asyncio.shield(pending[1])

    async def _load_from_store(
        self, cookie_value: str, policy: _DomainPolicy, now: float
    ) -> Session | None:
        generation = self._generation
        key = self._key(cookie_value)
        stored = await self._store.get(key)
        if stored is None or stored.domain != policy.domain:
            return None
        if not self._alive(stored, policy, now):
            await self._store.delete(key)
            return None
        if now - stored.last_activity > policy.touch_interval:
            session = dataclasses.replace(stored, id=cookie_value, last_activity=now)
            # existing_only: a logout elsewhere since our read must not be undone.
            if not await self._store.save(
                session, self._ttl(session, policy, now), existing_only=True
            ):
                return None
        else:
            session = dataclasses.replace(stored, id=cookie_value)
        # A logout or new id in this process while we awaited must not be undone.
        if generation == self._generation:
            self._remember(session, now)
        return session

    def _loaded(self, cookie_value: str, task: asyncio.Future[Session | None]) -> None:
        if self._loading.get(cookie_value, (None, None))[1] is task:
            del self._loading[cookie_value]
        if not task.cancelled():
            task.exception()  # retrieved here in case every waiter went away

    # -- changes -------------------------------------------------------------------------

    async def login(
        self,
        cookie_domain: CookieDomain,
        *,
        username: str,
        display_name: str = "",
        email: str = "",
        groups: Iterable[str] = (),
        level: AuthLevel = AuthLevel.ONE_FACTOR,
        remember_me: bool = False,
        old_session: Session | None = None,
        data: Mapping[str, str] | None = None,
    ) -> Session:
        """A new session (new id) for a user who just authenticated; ``old_session`` is
        destroyed. ``data`` defaults to the old session's data."""
        if level < AuthLevel.ONE_FACTOR:
            raise ValueError("a login needs at least one factor")
        policy = self._policy(cookie_domain.domain)
        if old_session is not None:
            await self.logout(old_session)
        now = self._clock()
        remember = remember_me and policy.remember_me > 0
        session_id = random_token(_ID_BYTES)
        if data is None:
            data = old_session.data if old_session is not None else {}
        session = Session(
            id=session_id,
            key=self._key(session_id),
            domain=policy.domain,
            username=username,
            display_name=display_name,
            email=email,
            groups=tuple(groups),
            level=level,
            created_at=now,
            last_activity=now,
            expires_at=now + (policy.remember_me if remember else policy.expiration),
            remember_me=remember,
            first_factor_at=now,
            second_factor_at=now if level >= AuthLevel.TWO_FACTOR else None,
            groups_refreshed_at=now,
            data=dict(data),
        )
        await self._store.save(session, self._ttl(session, policy, now))
        self._remember(session, now)
        return session

    async def raise_level(self, session: Session, level: AuthLevel) -> Session:
        """The session at ``level`` under a new id; the old id stops working.

        Raises :class:`SessionExpired` if the session ended meanwhile (or a concurrent
        request already raised it)."""
        if session.username is None or level < session.level:
            raise ValueError("raise_level needs a logged-in session and a level no lower")
        policy = self._policy(session.domain)
        now = self._clock()
        new_id = random_token(_ID_BYTES)
        raised = dataclasses.replace(
            session,
            id=new_id,
            key=self._key(new_id),
            level=level,
            last_activity=now,
            second_factor_at=now if level >= AuthLevel.TWO_FACTOR else session.second_factor_at,
        )
        self._forget(session)
        if not await self._store.delete(session.key):
            raise SessionExpired()
        await self._store.save(raised, self._ttl(raised, policy, now))
        self._remember(raised, now)
        return raised

    async def update(
        self,
        session: Session,
        *,
        display_name: str | None = None,
        email: str | None = None,
        groups: Iterable[str] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> Session:
        """Store changed user details or portal data under the same id (no level change).

        Raises :class:`SessionExpired` if the session ended meanwhile."""
        if session.username is None:
            raise ValueError("anonymous sessions are not stored")
        policy = self._policy(session.domain)
        now = self._clock()
        changes: dict[str, Any] = {"last_activity": now}
        if display_name is not None:
            changes["display_name"] = display_name
        if email is not None:
            changes["email"] = email
        if groups is not None:
            changes["groups"] = tuple(groups)
            changes["groups_refreshed_at"] = now
        if data is not None:
            changes["data"] = dict(data)
        updated = dataclasses.replace(session, **changes)
        self._forget(session)
        if not await self._store.save(updated, self._ttl(updated, policy, now), existing_only=True):
            raise SessionExpired()
        if updated.id:
            self._remember(updated, now)
        return updated

    async def logout(self, session: Session) -> None:
        """End one session."""
        self._forget(session)
        await self._store.delete(session.key)

    async def logout_user(self, username: str) -> int:
        """End every session of ``username`` on every cookie domain; returns how many."""
        self._generation += 1
        for cookie_value in [v for v, (s, _) in self._cache.items() if s.username == username]:
            del self._cache[cookie_value]
        return await self._store.delete_user(username)

    async def list_user(self, username: str) -> list[Session]:
        """The live sessions of ``username`` (their ids are unknown: only hashes are kept)."""
        now = self._clock()
        return [
            session
            for session in await self._store.list_user(username)
            if session.domain in self._policies
            and self._alive(session, self._policies[session.domain], now)
        ]

    async def ping(self) -> None:
        """Raise ``SessionStoreUnavailable`` unless the store answers (for readiness)."""
        await self._store.ping()

    async def close(self) -> None:
        """Close the store (the manager owns it once built)."""
        self._cache.clear()
        await self._store.close()

    # -- helpers -------------------------------------------------------------------------

    def _policy(self, domain: str) -> _DomainPolicy:
        try:
            return self._policies[domain]
        except KeyError:
            raise ValueError(f"{domain} is not a configured cookie domain") from None

    def _key(self, session_id: str) -> str:
        return keyed_hash(self._hash_key, session_id, purpose="session").hex()

    @staticmethod
    def _alive(session: Session, policy: _DomainPolicy, now: float) -> bool:
        if now >= session.expires_at:
            return False
        if session.remember_me or policy.inactivity <= 0:
            return True
        return now - session.last_activity <= policy.inactivity

    @staticmethod
    def _ttl(session: Session, policy: _DomainPolicy, now: float) -> float:
        remaining = session.expires_at - now
        if session.remember_me or policy.inactivity <= 0:
            return remaining
        return min(remaining, session.last_activity + policy.inactivity - now)

    def _remember(self, session: Session, now: float) -> None:
        if self._cache_ttl <= 0:
            return
        if len(self._cache) >= self._cache_size:
            # Drop the oldest insertion: O(1), and good enough for a 1 s cache.
            del self._cache[next(iter(self._cache))]
        self._cache[session.id] = (session, now + self._cache_ttl)

    def _forget(self, session: Session) -> None:
        self._generation += 1
        if session.id:
            self._cache.pop(session.id, None)
            return
        for cookie_value in [v for v, (s, _) in self._cache.items() if s.key == session.key]:
            del self._cache[cookie_value]
