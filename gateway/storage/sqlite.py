"""SQLite driver: one connection on one dedicated thread, so the event loop never blocks.

The connection runs in WAL mode (readers never wait for the writer) with a busy timeout, and
write transactions start with ``BEGIN IMMEDIATE``: they take SQLite's single write lock up
front, which both serialises writers across processes and avoids the deadlock of two
readers upgrading to writers at once. Inside one process, an :class:`asyncio.Lock` hands the
connection to one transaction at a time.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal, TypeVar

from gateway.storage.database import Param, Row
from gateway.storage.errors import RecordExists, StorageUnavailable

__all__ = ["SqliteDatabase"]

_T = TypeVar("_T")

# Primary result codes that mean "the database file cannot be used right now", as opposed
# to a bug in a statement (https://www.sqlite.org/rescode.html).
_UNAVAILABLE_CODES = frozenset(
    {
        3,  # SQLITE_PERM
        5,  # SQLITE_BUSY
        6,  # SQLITE_LOCKED
        8,  # SQLITE_READONLY
        10,  # SQLITE_IOERR
        11,  # SQLITE_CORRUPT
        13,  # SQLITE_FULL
        14,  # SQLITE_CANTOPEN
        15,  # SQLITE_PROTOCOL
        26,  # SQLITE_NOTADB
    }
)
_W = TypeVar("_W")
_UNIQUE_CODES = frozenset({1555, 2067})  # SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE


def when_not_busy(work: Callable[[], _W], timeout: float) -> _W:
    """Run ``work``, retrying for up to ``timeout`` seconds while SQLite reports the database
    busy or locked in a way its busy timeout does not cover (schema set-up at start-up)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return work()
        except sqlite3.OperationalError as error:
            busy = error.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def use_wal(connection: sqlite3.Connection, timeout: float) -> None:
    """Put the database in WAL mode. Switching a new file to WAL takes a lock SQLite does not
    wait for, so processes opening a fresh file together retry instead of failing."""

    def switch() -> None:
        (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
        if str(mode).lower() != "wal":
            connection.execute("PRAGMA journal_mode = WAL")

    when_not_busy(switch, timeout)


def _connect(path: Path, timeout: float) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Create the file owner-only before SQLite does (it would follow the umask); the -wal
    # and -shm files SQLite adds later copy these permissions.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    connection = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    try:
        connection.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        use_wal(connection, timeout)
        # FULL: a committed audit entry or used-code marker survives a power loss.
        connection.execute("PRAGMA synchronous = FULL")
    except BaseException:
        connection.close()
        raise
    return connection


class SqliteDatabase:
    """A SQLite database file used through one connection on a private thread."""

    def __init__(
        self, path: Path, connection: sqlite3.Connection, executor: ThreadPoolExecutor
    ) -> None:
        self._path = path
        self._connection = connection
        self._executor = executor
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def dialect(self) -> Literal["sqlite"]:
        return "sqlite"

    @property
    def description(self) -> str:
        return f"SQLite database {self._path}"

    @classmethod
    async def open(cls, path: Path, *, busy_timeout: float = 10.0) -> SqliteDatabase:
        """Open (creating if needed, mode 600) the database file at ``path``."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-sqlite")
        loop = asyncio.get_running_loop()
        try:
            connection = await loop.run_in_executor(executor, _connect, path, busy_timeout)
        except (sqlite3.Error, OSError) as error:
            executor.shutdown(wait=False)
            raise _unavailable(path, error) from None
        return cls(path, connection, executor)

    async def _call(self, function: Callable[[], _T]) -> _T:
        if self._closed:
            raise StorageUnavailable(f"SQLite database {self._path} is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, function)
        except sqlite3.IntegrityError as error:
            if error.sqlite_errorcode in _UNIQUE_CODES:
                raise RecordExists("a record with the same unique key already exists") from None
            raise
        except sqlite3.Error as error:
            if (getattr(error, "sqlite_errorcode", 0) & 0xFF) in _UNAVAILABLE_CODES:
                raise _unavailable(self._path, error) from None
            raise

    @asynccontextmanager
    async def transaction(
        self, *, write: bool, deadline: float | None = None
    ) -> AsyncIterator[_SqliteTransaction]:
        # ``deadline`` is for PostgreSQL's; a local file has only its busy timeout.
        connection = self._connection
        async with self._lock:
            await self._call(lambda: connection.execute("BEGIN IMMEDIATE" if write else "BEGIN"))
            try:
                yield _SqliteTransaction(self, write=write)
                await self._call(connection.commit)
            except BaseException:
                # The executor runs jobs in order, so this rollback happens before any later
                # BEGIN even if this task is cancelled again while waiting for it.
                await asyncio.shield(self._call(lambda: _rollback(connection)))
                raise

    async def close(self) -> None:
        if self._closed:
            return
        async with self._lock:
            await self._call(self._connection.close)
            self._closed = True
        self._executor.shutdown(wait=False)


def _rollback(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        connection.rollback()


class _SqliteTransaction:
    def __init__(self, database: SqliteDatabase, *, write: bool) -> None:
        self._database = database
        self._connection = database._connection
        self._write = write

    async def execute(self, sql: str, params: Sequence[Param] = ()) -> int:
        connection = self._connection
        return await self._database._call(lambda: connection.execute(sql, params).rowcount)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Param]]) -> None:
        connection = self._connection
        batch = list(rows)
        await self._database._call(lambda: connection.executemany(sql, batch))

    async def fetchone(self, sql: str, params: Sequence[Param] = ()) -> Row | None:
        connection = self._connection
        row: Row | None = await self._database._call(
            lambda: connection.execute(sql, params).fetchone()
        )
        return row

    async def fetchall(self, sql: str, params: Sequence[Param] = ()) -> list[Row]:
        connection = self._connection
        rows: list[Row] = await self._database._call(
            lambda: connection.execute(sql, params).fetchall()
        )
        return rows

    async def lock(self, name: str) -> None:
        # BEGIN IMMEDIATE already holds the database-wide write lock for this transaction.
        if not self._write:
            raise RuntimeError("lock() needs a write transaction")


def _unavailable(path: Path, error: BaseException) -> StorageUnavailable:
    reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return StorageUnavailable(f"SQLite database {path} is unavailable: {reason}")
