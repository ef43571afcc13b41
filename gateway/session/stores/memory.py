"""Sessions and bans in this process's memory: for tests and a single-process gateway."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Callable, Iterable, Sequence

from gateway.session.model import Session
from gateway.session.stores.base import ChangeFeed, TouchResult

__all__ = ["MemoryRegulationBackend", "MemorySessionStore"]


class MemoryRegulationBackend:
    """Sliding windows of failure times per subject, and ban deadlines."""

    def __init__(self) -> None:
        self._failures: dict[str, list[float]] = {}
        self._bans: dict[str, float] = {}

    async def record_failure(
        self, subject: str, *, now: float, find_time: float, max_retries: int, ban_time: float
    ) -> bool:
        # No await inside: the read-modify-write is atomic on the event loop.
        window_start = now - find_time
        failures = [at for at in self._failures.get(subject, ()) if at > window_start]
        failures.append(now)
        if len(failures) >= max_retries:
            self._failures.pop(subject, None)
            self._bans[subject] = now + ban_time
            return True
        self._failures[subject] = failures
        return False

    async def is_banned(self, subjects: Sequence[str], *, now: float) -> bool:
        return any(self._bans.get(subject, 0.0) > now for subject in subjects)

    async def clear_failures(self, subject: str) -> None:
        self._failures.pop(subject, None)

    async def clear(self, subject: str | None, *, now: float) -> int:
        if subject is None:
            lifted = sum(1 for until in self._bans.values() if until > now)
            self._bans.clear()
            self._failures.clear()
            return lifted
        self._failures.pop(subject, None)
        until = self._bans.pop(subject, None)
        return 1 if until is not None and until > now else 0

    async def bans(self, *, now: float) -> list[tuple[str, float]]:
        for subject in [s for s, until in self._bans.items() if until <= now]:
            del self._bans[subject]
        return sorted(self._bans.items(), key=lambda item: item[1])


class MemorySessionStore:
    """A dict of sessions with deadlines; ``clock`` is injectable for tests.

    Changes are announced to the watchers of this store object at once (every manager that
    shares it is in this process)."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._sessions: dict[str, tuple[Session, float]] = {}
        self._by_user: dict[str, set[str]] = {}
        self._regulation = MemoryRegulationBackend()
        self._revisions = itertools.count(1)
        self._feeds: list[ChangeFeed] = []

    @property
    def regulation(self) -> MemoryRegulationBackend:
        return self._regulation

    async def get(self, key: str) -> Session | None:
        entry = self._sessions.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            self._remove(key)
            return None
        return entry[0]

    async def save(self, session: Session, ttl: float, *, existing_only: bool = False) -> bool:
        if session.username is None or ttl <= 0:
            return False
        if existing_only and await self.get(session.key) is None:
            return False
        self._store(session, ttl)
        if existing_only:
            self._announce((session.key,))
        return True

    async def touch(self, touches: Sequence[tuple[Session, float]]) -> list[TouchResult]:
        results: list[TouchResult] = []
        for session, ttl in touches:
            current = await self.get(session.key)
            if current is None or ttl <= 0:
                results.append(None)
            elif current.revision != session.revision:
                results.append(current)
            else:
                results.append(self._store(session, ttl))
        return results

    def _store(self, session: Session, ttl: float) -> bytes:
        assert session.username is not None
        previous = self._sessions.get(session.key)
        if previous is not None and previous[0].username != session.username:
            self._remove(session.key)
        revision = str(next(self._revisions)).encode()
        stored = dataclasses.replace(session, id="", revision=revision)
        self._sessions[session.key] = (stored, self._clock() + ttl)
        self._by_user.setdefault(session.username, set()).add(session.key)
        return revision

    async def delete(self, key: str) -> bool:
        live = await self.get(key) is not None
        self._remove(key)
        self._announce((key,))
        return live

    async def delete_user(self, username: str) -> int:
        live = await self.list_user(username)
        for session in live:
            self._remove(session.key)
        self._by_user.pop(username, None)
        self._announce([session.key for session in live])
        return len(live)

    async def watch(self, feed: ChangeFeed) -> None:
        self._feeds.append(feed)
        try:
            feed.synced()
            await asyncio.Event().wait()  # until cancelled
        finally:
            self._feeds.remove(feed)

    def _announce(self, keys: Iterable[str]) -> None:
        keys = tuple(keys)
        if keys:
            for feed in self._feeds:
                feed.changed(keys)

    async def list_user(self, username: str) -> list[Session]:
        sessions = [await self.get(key) for key in list(self._by_user.get(username, ()))]
        return sorted((s for s in sessions if s is not None), key=lambda s: s.created_at)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._sessions.clear()
        self._by_user.clear()

    def _remove(self, key: str) -> None:
        entry = self._sessions.pop(key, None)
        if entry is not None and entry[0].username is not None:
            keys = self._by_user.get(entry[0].username)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_user[entry[0].username]
