"""Sessions for the decision endpoint and the portal: load, log in, step up, log out.

``load`` runs on every forward-auth request and never writes to the store. It answers from
an in-process cache of every active session (bounded by ``session.cache_size`` entries and
``session.cache_max_bytes``) and reads the store only for a session it does not hold. Activity
is recorded at most once per touch interval (``min(inactivity / 10, 10 s)``) per session:
the request that finds it due queues a *touch*, and a background task writes the pending
touches in batches every second (:meth:`SessionManager.flush`). A touch is a compare-and-set
on the stored value the session was read from, so it never resurrects an ended session nor
undoes a change made elsewhere; a touch that meets a changed session is merged into it.

How long a cached session may be reused depends on whether this process hears of changes:

* after :meth:`SessionManager.start`, while the store's change feed is up (Redis pub/sub,
  the SQLite change table, the memory store itself), every change any process makes
  (logout, log out everywhere, new ids, updates) drops the cached copies in every process,
  so a session is reused until it expires or looks idle;
* otherwise (not started, or the feed is down: the cache is emptied when it goes) a session
  is reused for at most ``session.cache_ttl``, and changes made elsewhere show within it.

Changes made by this process drop its own cache entries at once, either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from gateway.config.settings import Settings
from gateway.memo import BoundedMemo
from gateway.security.crypto import keyed_hash, random_token
from gateway.session.cookies import CookieDomainIndex, SessionCookie
from gateway.session.model import AuthLevel, Session, SessionExpired, SessionStoreUnavailable
from gateway.session.settings import CookieDomain, SessionSettings
from gateway.session.stores import SessionStore

__all__ = ["SessionManager"]

log = logging.getLogger("gateway.session")

_ID_BYTES = 32
_ID_LENGTH = len(random_token(_ID_BYTES))  # 43 characters of URL-safe base64
_MAX_TOUCH_INTERVAL = 10.0
_FLUSH_INTERVAL = 1.0
_FLUSH_BATCH = 1_000  # touches per store call (one pipeline, one transaction)
_FLUSH_ROUNDS = 3  # a touch that meets a changed session is merged and retried this often
_ENTRY_BYTES = 400  # charged per cached session on top of its text: the objects themselves
_WATCH_RETRY = 1.0


@dataclasses.dataclass(frozen=True, slots=True)
class _DomainPolicy:
    domain: str
    expiration: float
    inactivity: float  # 0 disables the inactivity limit
    remember_me: float  # 0 disables remember-me
    touch_interval: float
    cookie: SessionCookie


@dataclasses.dataclass(slots=True)
class _Entry:
    """A cached session; ``revision`` is that of the stored value it matches, ``active`` the
    last activity known here (recorded in the store, or queued to be). The session object
    itself stays the same across touches: whatever was derived from it stays valid."""

    session: Session
    revision: bytes
    fresh_until: float
    active: float


@dataclasses.dataclass(frozen=True, slots=True)
class _Touch:
    cookie: str
    session: Session  # with the last_activity to record, and the revision it was read from


class _Feed:
    """What the store's change feed tells the manager (kept off its public interface)."""

    __slots__ = ("_manager",)

    def __init__(self, manager: SessionManager) -> None:
        self._manager = manager

    def synced(self) -> None:
        self._manager._feed_synced()

    def changed(self, keys: Iterable[str]) -> None:
        self._manager._feed_changed(keys)

    def lost(self) -> None:
        self._manager._feed_lost()


def _size(session: Session, revision: bytes) -> int:
    """The bytes a cached session is charged: its text, and the objects around it."""
    text = len(session.display_name) + len(session.email) + len(session.username or "")
    text += sum(len(group) for group in session.groups)
    text += sum(len(k) + len(v) for k, v in session.data.items())
    return _ENTRY_BYTES + len(session.id) + len(session.key) + len(revision) + text


class SessionManager:
    """Server-side sessions with one cookie per configured cookie domain."""

    def __init__(
        self,
        settings: SessionSettings,
        store: SessionStore,
        hash_key: bytes,
        *,
        clock: Callable[[], float] = time.time,
        cache_size: int | None = None,
        cache_max_bytes: int | None = None,
        flush_interval: float = _FLUSH_INTERVAL,
    ) -> None:
        self._store = store
        self._hash_key = hash_key
        self._clock = clock
        self._cache_ttl = settings.cache_ttl
        size = settings.cache_size if cache_size is None else cache_size
        max_bytes = settings.cache_max_bytes if cache_max_bytes is None else cache_max_bytes
        self._cache: BoundedMemo[str, _Entry] = BoundedMemo(size, max_bytes)
        self._by_key: dict[str, str] = {}  # store key -> cookie value (may hold stale pairs)
        self._generation = 0  # bumped by every invalidation, local or announced
        self._exact = False  # the change feed is up: cached sessions live until they expire
        self._epoch = 0  # bumped whenever _exact is set or cleared
        self._loading: dict[str, tuple[_DomainPolicy, asyncio.Future[Session | None]]] = {}
        self._pending: dict[str, _Touch] = {}  # store key -> the touch to write
        self._writing: dict[str, _Touch] = {}  # store key -> the touch being written
        self._pending_limit = size
        self._flush_interval = flush_interval
        self._flush_lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
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

    @property
    def following(self) -> bool:
        """Whether changes made elsewhere reach this process now (the feed is up)."""
        return self._exact

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
        domain). Raises ``SessionStoreUnavailable`` if the store cannot be read.

        Never writes to the store: activity that is due to be recorded is queued."""
        if len(cookie_value) != _ID_LENGTH:
            return None
        policy = self._policies.get(cookie_domain.domain)
        if policy is None:
            return None
        now = self._clock()
        entry = self._cache.get(cookie_value)
        if entry is not None:
            session = entry.session
            if session.domain != policy.domain:
                return None  # what the store would say too
            if now < entry.fresh_until and now < session.expires_at:
                idle = now - entry.active
                if idle <= policy.touch_interval:
                    return session
                if session.remember_me or policy.inactivity <= 0 or idle <= policy.inactivity:
                    return self._touch(cookie_value, session, entry.revision, entry, now)
            # Stale, or apparently idle too long (another process may have recorded
            # activity since): the store has the last word.
            self._cache.pop(cookie_value)
        # Concurrent requests with the same cookie share one store read.
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
        mark = self._mark()
        key = self._key(cookie_value)
        stored = await self._store.get(key)
        if stored is None or stored.domain != policy.domain:
            return None
        # Activity recorded here and not written yet (queued, or being written) counts.
        recorded = self._pending.get(key) or self._writing.get(key)
        if recorded is not None and recorded.session.last_activity > stored.last_activity:
            stored = dataclasses.replace(stored, last_activity=recorded.session.last_activity)
        if not self._alive(stored, policy, now):
            await self._store.delete(key)  # ends it: not a touch
            return None
        session = dataclasses.replace(stored, id=cookie_value)
        # A change announced (or made here) while we awaited must not be undone.
        entry = self._remember(session, now, mark) if mark[0] == self._generation else None
        if now - stored.last_activity > policy.touch_interval:
            return self._touch(cookie_value, session, stored.revision, entry, now)
        return session

    def _loaded(self, cookie_value: str, task: asyncio.Future[Session | None]) -> None:
        if self._loading.get(cookie_value, (None, None))[1] is task:
            del self._loading[cookie_value]
        if not task.cancelled():
            task.exception()  # retrieved here in case every waiter went away

    def _touch(
        self,
        cookie_value: str,
        session: Session,
        revision: bytes,
        entry: _Entry | None,
        now: float,
    ) -> Session:
        """Record activity at ``now`` in memory, and queue it for the store."""
        if len(self._pending) >= self._pending_limit and session.key not in self._pending:
            return session  # the queue is full: a later request records it
        touched = _touched(session, now, revision)
        if entry is not None:
            entry.active = now
        self._pending[session.key] = _Touch(cookie_value, touched)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())
        return touched

    # -- background writes ---------------------------------------------------------------

    async def _flush_soon(self) -> None:
        try:
            while self._pending:
                await asyncio.sleep(self._flush_interval)
                # shield: close() waits for a flush under way instead of cutting it short.
                await asyncio.shield(self.flush())
        finally:
            self._flusher = None

    async def flush(self) -> None:
        """Write the pending touches now (the background task does it every second)."""
        async with self._flush_lock:
            self._writing, self._pending = self._pending, {}
            touches = list(self._writing.values())
            try:
                for start in range(0, len(touches), _FLUSH_BATCH):
                    batch = touches[start : start + _FLUSH_BATCH]
                    for _ in range(_FLUSH_ROUNDS):
                        batch = await self._write_touches(batch)
                        if not batch:
                            break
            finally:
                self._writing = {}

    async def _write_touches(self, touches: list[_Touch]) -> list[_Touch]:
        """Write one batch; returns the touches to try again (merged into a changed value)."""
        now = self._clock()
        writes: list[tuple[_Touch, float]] = []
        for touch in touches:
            policy = self._policies.get(touch.session.domain)
            ttl = 0.0 if policy is None else self._ttl(touch.session, policy, now)
            if ttl > 0:
                writes.append((touch, ttl))
            else:
                self._drop(touch.cookie, touch.session.key)  # idle or expired meanwhile
        if not writes:
            return []
        try:
            results = await self._store.touch([(touch.session, ttl) for touch, ttl in writes])
        except Exception as error:
            if not isinstance(error, SessionStoreUnavailable):  # that is logged by the store
                log.exception("session store: touches failed")
            # Fail safe: whoever asks next reads the store (and is denied while it is down).
            for touch, _ in writes:
                self._drop(touch.cookie, touch.session.key)
            return []
        again: list[_Touch] = []
        for (touch, _), result in zip(writes, results, strict=True):
            entry = self._cache.get(touch.cookie)
            if entry is not None and entry.session.key != touch.session.key:
                entry = None
            if result is None:  # ended meanwhile
                self._drop(touch.cookie, touch.session.key)
            elif isinstance(result, bytes):
                if entry is not None and entry.revision == touch.session.revision:
                    entry.revision = result
            else:  # changed since it was read: merge the activity into what is stored now
                if entry is not None:
                    if _same_but_activity(entry.session, result):
                        entry.revision = result.revision  # only another process's touch
                    else:
                        self._drop(touch.cookie, touch.session.key)
                if result.last_activity < touch.session.last_activity:
                    merged = _touched(result, touch.session.last_activity, result.revision)
                    again.append(_Touch(touch.cookie, merged))
        return again

    # -- changes -------------------------------------------------------------------------

    async def start(self) -> None:
        """Follow the store's changes (every process's), so cached sessions can live until
        they expire. Without it they live ``cache_ttl``."""
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        feed = _Feed(self)
        while True:
            try:
                await self._store.watch(feed)
            except Exception:
                log.exception("session store: following changes failed")
            finally:
                self._feed_lost()
            await asyncio.sleep(_WATCH_RETRY)

    def _feed_synced(self) -> None:
        self._exact = True
        self._epoch += 1

    def _feed_changed(self, keys: Iterable[str]) -> None:
        self._generation += 1
        for key in keys:
            cookie_value = self._by_key.pop(key, None)
            if cookie_value is not None:
                self._drop(cookie_value, key)

    def _feed_lost(self) -> None:
        if self._exact:
            self._exact = False
            self._epoch += 1
        self._generation += 1
        self._cache.clear()
        self._by_key.clear()

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
        mark = self._mark()
        await self._store.save(session, self._ttl(session, policy, now))
        self._remember(session, now, mark)
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
            revision=b"",
        )
        self._forget(session)
        if not await self._store.delete(session.key):
            raise SessionExpired()
        mark = self._mark()
        await self._store.save(raised, self._ttl(raised, policy, now))
        self._remember(raised, now, mark)
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
        changes: dict[str, Any] = {"last_activity": now, "revision": b""}
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
        mark = self._mark()
        if not await self._store.save(updated, self._ttl(updated, policy, now), existing_only=True):
            raise SessionExpired()
        if updated.id:
            self._remember(updated, now, mark)
        return updated

    async def logout(self, session: Session) -> None:
        """End one session (in every process: the store announces it)."""
        self._forget(session)
        await self._store.delete(session.key)

    async def logout_user(self, username: str) -> int:
        """End every session of ``username`` on every cookie domain; returns how many."""
        self._generation += 1
        for key, cookie_value in list(self._by_key.items()):
            entry = self._cache.get(cookie_value)
            if entry is not None and entry.session.username == username:
                self._drop(cookie_value, key)
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

    async def stop(self) -> None:
        """Stop following changes and write the pending touches (the store stays open)."""
        for task in (self._watcher, self._flusher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._watcher = None
        try:
            await self.flush()
        except Exception:
            log.exception("session store: pending touches could not be written")
        self._feed_lost()

    async def close(self) -> None:
        """:meth:`stop`, then close the store (the manager owns it once built)."""
        await self.stop()
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

    def _mark(self) -> tuple[int, int]:
        """Taken before awaiting the store: was anything invalidated, or did the feed go up
        or down, by the time the answer is remembered?"""
        return self._generation, self._epoch

    def _remember(self, session: Session, now: float, mark: tuple[int, int]) -> _Entry | None:
        if self._cache_ttl <= 0:
            return None
        # Until it expires only if every change since the mark would have been heard of.
        exact = self._exact and mark == (self._generation, self._epoch)
        fresh_until = session.expires_at if exact else now + self._cache_ttl
        entry = _Entry(session, session.revision, fresh_until, session.last_activity)
        self._cache.put(session.id, entry, _size(session, session.revision))
        self._by_key[session.key] = session.id
        if len(self._by_key) > 2 * len(self._cache) + 1024:
            # Pairs of evicted entries pile up: keep those still cached (amortised O(1)).
            self._by_key = {
                key: value
                for key, value in self._by_key.items()
                if (held := self._cache.get(value)) is not None and held.session.key == key
            }
        return entry

    def _drop(self, cookie_value: str, key: str) -> None:
        entry = self._cache.get(cookie_value)
        if entry is not None and entry.session.key == key:
            self._cache.pop(cookie_value)

    def _forget(self, session: Session) -> None:
        self._generation += 1
        cookie_value = session.id or self._by_key.get(session.key)
        if cookie_value:
            self._drop(cookie_value, session.key)


def _touched(session: Session, now: float, revision: bytes) -> Session:
    """``session`` active at ``now``, read from ``revision`` (what dataclasses.replace does,
    at a third of the cost: this runs once per touch interval per session)."""
    return Session(
        session.id,
        session.key,
        session.domain,
        session.username,
        session.display_name,
        session.email,
        session.groups,
        session.level,
        session.created_at,
        now,
        session.expires_at,
        session.remember_me,
        session.first_factor_at,
        session.second_factor_at,
        session.groups_refreshed_at,
        session.data,
        revision,
    )


def _same_but_activity(cached: Session, stored: Session) -> bool:
    """Whether two copies of a session differ only in when activity was last recorded."""
    return dataclasses.replace(cached, id="", last_activity=0.0) == dataclasses.replace(
        stored, id="", last_activity=0.0
    )
