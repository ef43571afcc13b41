"""Sessions and bans in one SQLite file (WAL): the embedded default.

Several worker processes on one machine may open the same file; WAL lets readers run
while one writes, and regulation updates run in ``BEGIN IMMEDIATE`` transactions so
concurrent failures are all counted. Every SQLite call runs on one dedicated thread per
store, never on the event loop.

Every change to an existing session also appends its key to ``session_changes``, in the same
transaction; each process polls that table (``id > last seen``) twice a second to drop what
it remembers of those sessions. Rows are kept ten minutes; a process that has not polled for
half of that forgets everything it remembers instead of trusting the table.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from gateway.observability.throttle import log_throttled
from gateway.session.model import Session, SessionStoreUnavailable, decode_session, encode_session
from gateway.session.stores.base import ChangeFeed, TouchResult
from gateway.storage.sqlite import use_wal, when_not_busy

__all__ = ["SqliteRegulationBackend", "SqliteSessionStore"]

_T = TypeVar("_T")

log = logging.getLogger("gateway.session")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    key TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    expires REAL NOT NULL,
    record BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_username ON sessions (username);
CREATE INDEX IF NOT EXISTS sessions_expires ON sessions (expires);
CREATE TABLE IF NOT EXISTS session_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS session_changes_at ON session_changes (at);
CREATE TABLE IF NOT EXISTS regulation_failures (subject TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS regulation_failures_subject ON regulation_failures (subject, at);
CREATE TABLE IF NOT EXISTS regulation_bans (
    subject TEXT PRIMARY KEY,
    until REAL NOT NULL
) WITHOUT ROWID;
"""

# Expired rows are only skipped on read; this often they are deleted for good.
_PURGE_INTERVAL = 60.0
# How often each process asks session_changes what changed, and how long rows stay there.
_POLL_INTERVAL = 0.5
_CHANGES_KEPT = 600.0
_RECORD_CHANGE = "INSERT INTO session_changes (key, at) VALUES (?, ?)"
_TOUCH_QUERY = 500  # keys per SELECT ... IN (...) when checking a batch of touches


def _transaction(db: sqlite3.Connection, work: Callable[[], _T]) -> _T:
    """``work()`` in one ``BEGIN IMMEDIATE`` transaction (the write lock taken first)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result = work()
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return result


class SqliteSessionStore:
    """A session store in a SQLite file shared by the processes of one machine."""

    def __init__(
        self, path: Path, *, busy_timeout: float = 5.0, clock: Callable[[], float] = time.time
    ) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-sqlite")
        self._connection: sqlite3.Connection | None = None
        self._next_purge = 0.0
        self._regulation = SqliteRegulationBackend(self)

    @property
    def regulation(self) -> SqliteRegulationBackend:
        return self._regulation

    @property
    def path(self) -> Path:
        return self._path

    # -- plumbing ------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout,
                isolation_level=None,  # autocommit; explicit BEGIN where it matters
                check_same_thread=False,  # only ever used from the store's one thread
            )
            try:
                self._prepare(connection)
            except sqlite3.Error:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _prepare(self, connection: sqlite3.Connection) -> None:
        use_wal(connection, self._busy_timeout)
        connection.execute("PRAGMA synchronous=NORMAL")
        when_not_busy(lambda: connection.executescript(_SCHEMA), self._busy_timeout)

    async def run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work(connection)`` on the store's thread; SQLite and file-system errors
        become :class:`SessionStoreUnavailable`."""

        def call() -> _T:
            return work(self._connect())

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except (sqlite3.Error, OSError) as error:  # OSError: cannot create the directory
            log_throttled(
                log,
                ("sqlite", type(error)),
                "session store: sqlite %s: %s: %s",
                self._path,
                type(error).__name__,
                error,
            )
            raise SessionStoreUnavailable() from None
        except RuntimeError:  # the executor was shut down by close()
            raise SessionStoreUnavailable() from None

    # -- sessions ------------------------------------------------------------------------

    async def get(self, key: str) -> Session | None:
        now = self._clock()

        def read(db: sqlite3.Connection) -> bytes | None:
            row = db.execute(
                "SELECT record FROM sessions WHERE key = ? AND expires > ?", (key, now)
            ).fetchone()
            return None if row is None else bytes(row[0])

        raw = await self.run(read)
        if raw is None:
            return None
        try:
            return decode_session(key, raw, revision=raw)
        except ValueError:
            await self.delete(key)
            return None

    async def save(self, session: Session, ttl: float, *, existing_only: bool = False) -> bool:
        if session.username is None or ttl <= 0:
            return False
        now = self._clock()
        record = encode_session(session)
        purge = now >= self._next_purge
        if purge:
            self._next_purge = now + _PURGE_INTERVAL

        def write(db: sqlite3.Connection) -> bool:
            if existing_only:

                def update() -> bool:
                    stored = db.execute(
                        "UPDATE sessions SET username = ?, expires = ?, record = ? "
                        "WHERE key = ? AND expires > ?",
                        (session.username, now + ttl, record, session.key, now),
                    ).rowcount
                    if stored:
                        db.execute(_RECORD_CHANGE, (session.key, now))
                    return stored > 0

                stored = _transaction(db, update)
            else:
                stored = (
                    db.execute(
                        "INSERT OR REPLACE INTO sessions (key, username, expires, record) "
                        "VALUES (?, ?, ?, ?)",
                        (session.key, session.username, now + ttl, record),
                    ).rowcount
                    > 0
                )
            if purge:
                db.execute("DELETE FROM sessions WHERE expires <= ?", (now,))
                db.execute("DELETE FROM session_changes WHERE at <= ?", (now - _CHANGES_KEPT,))
            return stored

        return await self.run(write)

    async def touch(self, touches: Sequence[tuple[Session, float]]) -> list[TouchResult]:
        now = self._clock()
        records = [encode_session(session) for session, _ in touches]
        rows = [
            (now + ttl, record, session.key, session.revision, now)
            for (session, ttl), record in zip(touches, records, strict=True)
            if ttl > 0
        ]
        keys = [session.key for session, _ in touches]

        def write(db: sqlite3.Connection) -> dict[str, bytes]:
            def each() -> dict[str, bytes]:
                # Compare-and-set on the record read, all in one statement; then what each
                # key holds now says which were written.
                db.executemany(
                    "UPDATE sessions SET expires = ?, record = ? "
                    "WHERE key = ? AND record = ? AND expires > ?",
                    rows,
                )
                stored: dict[str, bytes] = {}
                for start in range(0, len(keys), _TOUCH_QUERY):
                    chunk = keys[start : start + _TOUCH_QUERY]
                    marks = ",".join("?" * len(chunk))
                    query = f"SELECT key, record FROM sessions WHERE key IN ({marks})"  # noqa: S608 (only placeholders)
                    for key, record in db.execute(query + " AND expires > ?", (*chunk, now)):
                        stored[str(key)] = bytes(record)
                return stored

            return _transaction(db, each)

        stored = await self.run(write)
        answers: list[TouchResult] = []
        for (session, ttl), record in zip(touches, records, strict=True):
            current = stored.get(session.key)
            if current is None or ttl <= 0:
                answers.append(None)
            elif current == record:
                answers.append(record)
            else:
                try:
                    answers.append(decode_session(session.key, current, revision=current))
                except ValueError:
                    answers.append(None)
        return answers

    async def delete(self, key: str) -> bool:
        now = self._clock()

        def delete(db: sqlite3.Connection) -> bool:
            def both() -> bool:
                # Two statements so the answer (was it live?) comes from one atomic delete.
                live = db.execute(
                    "DELETE FROM sessions WHERE key = ? AND expires > ?", (key, now)
                ).rowcount
                db.execute("DELETE FROM sessions WHERE key = ?", (key,))
                db.execute(_RECORD_CHANGE, (key, now))
                return live > 0

            return _transaction(db, both)

        return await self.run(delete)

    async def delete_user(self, username: str) -> int:
        now = self._clock()

        def delete(db: sqlite3.Connection) -> int:
            def every() -> int:
                (live,) = db.execute(
                    "SELECT count(*) FROM sessions WHERE username = ? AND expires > ?",
                    (username, now),
                ).fetchone()
                db.execute(
                    "INSERT INTO session_changes (key, at) "
                    "SELECT key, ? FROM sessions WHERE username = ?",
                    (now, username),
                )
                db.execute("DELETE FROM sessions WHERE username = ?", (username,))
                return int(live)

            return _transaction(db, every)

        return await self.run(delete)

    async def list_user(self, username: str) -> list[Session]:
        now = self._clock()

        def read(db: sqlite3.Connection) -> list[tuple[str, bytes]]:
            return [
                (str(key), bytes(record))
                for key, record in db.execute(
                    "SELECT key, record FROM sessions WHERE username = ? AND expires > ?",
                    (username, now),
                )
            ]

        sessions: list[Session] = []
        for key, raw in await self.run(read):
            try:
                sessions.append(decode_session(key, raw))
            except ValueError:
                continue
        return sorted(sessions, key=lambda s: s.created_at)

    async def watch(self, feed: ChangeFeed) -> None:
        last_seen: int | None = None  # None: not synced
        polled = 0.0  # time.monotonic() of the last successful poll

        def latest(db: sqlite3.Connection) -> int:
            (found,) = db.execute("SELECT coalesce(max(id), 0) FROM session_changes").fetchone()
            return int(found)

        def since(seen: int) -> Callable[[sqlite3.Connection], list[tuple[int, str]]]:
            def read(db: sqlite3.Connection) -> list[tuple[int, str]]:
                return [
                    (int(row_id), str(key))
                    for row_id, key in db.execute(
                        "SELECT id, key FROM session_changes WHERE id > ? ORDER BY id", (seen,)
                    )
                ]

            return read

        while True:
            try:
                if last_seen is None:
                    last_seen = await self.run(latest)
                    polled = time.monotonic()
                    feed.synced()
                else:
                    rows = await self.run(since(last_seen))
                    if time.monotonic() - polled > _CHANGES_KEPT / 2:
                        # Asleep for long (a suspended process?): rows may have been pruned.
                        feed.lost()
                        last_seen = None
                        continue
                    polled = time.monotonic()
                    if rows:
                        last_seen = rows[-1][0]
                        feed.changed(key for _, key in rows)
            except SessionStoreUnavailable:  # already logged by run()
                if last_seen is not None:
                    feed.lost()
                last_seen = None
            await asyncio.sleep(_POLL_INTERVAL)

    async def ping(self) -> None:
        await self.run(lambda db: db.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        def shut() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, shut)
        except RuntimeError:
            return  # already closed
        self._executor.shutdown(wait=True)


class SqliteRegulationBackend:
    """Failure windows and bans in the session store's SQLite file."""

    def __init__(self, store: SqliteSessionStore) -> None:
        self._store = store

    async def record_failure(
        self, subject: str, *, now: float, find_time: float, max_retries: int, ban_time: float
    ) -> bool:
        def record(db: sqlite3.Connection) -> bool:
            # IMMEDIATE takes the write lock first, so concurrent processes count in turn.
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "DELETE FROM regulation_failures WHERE subject = ? AND at <= ?",
                    (subject, now - find_time),
                )
                db.execute(
                    "INSERT INTO regulation_failures (subject, at) VALUES (?, ?)", (subject, now)
                )
                (count,) = db.execute(
                    "SELECT count(*) FROM regulation_failures WHERE subject = ?", (subject,)
                ).fetchone()
                banned = int(count) >= max_retries
                if banned:
                    db.execute("DELETE FROM regulation_failures WHERE subject = ?", (subject,))
                    db.execute(
                        "INSERT OR REPLACE INTO regulation_bans (subject, until) VALUES (?, ?)",
                        (subject, now + ban_time),
                    )
                    db.execute("DELETE FROM regulation_bans WHERE until <= ?", (now,))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return banned

        return await self._store.run(record)

    async def is_banned(self, subjects: Sequence[str], *, now: float) -> bool:
        marks = ",".join("?" * len(subjects))
        query = f"SELECT 1 FROM regulation_bans WHERE subject IN ({marks}) AND until > ? LIMIT 1"  # noqa: S608 (only placeholders)
        parameters = (*subjects, now)
        return await self._store.run(
            lambda db: db.execute(query, parameters).fetchone() is not None
        )

    async def clear_failures(self, subject: str) -> None:
        await self._store.run(
            lambda db: db.execute("DELETE FROM regulation_failures WHERE subject = ?", (subject,))
        )

    async def clear(self, subject: str | None, *, now: float) -> int:
        def clear(db: sqlite3.Connection) -> int:
            db.execute("BEGIN IMMEDIATE")
            try:
                if subject is None:
                    (lifted,) = db.execute(
                        "SELECT count(*) FROM regulation_bans WHERE until > ?", (now,)
                    ).fetchone()
                    db.execute("DELETE FROM regulation_bans")
                    db.execute("DELETE FROM regulation_failures")
                else:
                    (lifted,) = db.execute(
                        "SELECT count(*) FROM regulation_bans WHERE subject = ? AND until > ?",
                        (subject, now),
                    ).fetchone()
                    db.execute("DELETE FROM regulation_bans WHERE subject = ?", (subject,))
                    db.execute("DELETE FROM regulation_failures WHERE subject = ?", (subject,))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return int(lifted)

        return await self._store.run(clear)

    async def bans(self, *, now: float) -> list[tuple[str, float]]:
        def read(db: sqlite3.Connection) -> list[tuple[str, float]]:
            return [
                (str(subject), float(until))
                for subject, until in db.execute(
                    "SELECT subject, until FROM regulation_bans WHERE until > ? ORDER BY until",
                    (now,),
                )
            ]

        return await self._store.run(read)
