"""PostgreSQL driver: psycopg 3 (async) with a small connection pool, for several replicas.

Statements use the shared ``?`` placeholder style and are translated to psycopg's ``%s`` once
(the SQL in :mod:`gateway.storage` never contains ``?`` or ``%`` inside literals). Named locks
are transaction-scoped advisory locks, released automatically on commit or rollback.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from gateway.settings import PostgresSettings
from gateway.storage.database import Param, Row
from gateway.storage.errors import RecordExists, StorageError, StorageUnavailable

__all__ = ["PostgresDatabase"]


@functools.lru_cache(maxsize=256)
def _translate(sql: str) -> str:
    return sql.replace("?", "%s")


def _lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name``."""
    digest = hashlib.sha256(b"gateway/storage-lock\x00" + name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class _Target:
    """Where the database is, for messages: host, port and name, never user or password."""

    def __init__(self, conninfo: str) -> None:
        params = conninfo_to_dict(conninfo)
        host = str(params.get("host") or params.get("hostaddr") or "localhost")
        self.description = f"{host}:{params.get('port') or 5432}/{params.get('dbname') or ''}"
        self._password = str(params.get("password") or "")

    def unavailable(self, error: BaseException) -> StorageUnavailable:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        if self._password:
            reason = reason.replace(self._password, "***")
        return StorageUnavailable(
            f"PostgreSQL database {self.description} is unavailable: {reason}"
        )


class PostgresDatabase:
    """A pool of connections to one PostgreSQL database."""

    def __init__(
        self, pool: AsyncConnectionPool[psycopg.AsyncConnection], target: _Target, timeout: float
    ) -> None:
        self._pool = pool
        self._target = target
        self._timeout = timeout

    @property
    def dialect(self) -> Literal["postgres"]:
        return "postgres"

    @property
    def description(self) -> str:
        return f"PostgreSQL database {self._target.description}"

    @classmethod
    async def open(cls, settings: PostgresSettings) -> PostgresDatabase:
        """Connect, failing fast with :class:`StorageUnavailable` if the server is down."""
        try:
            conninfo = make_conninfo(settings.dsn, **_password(settings))
            target = _Target(conninfo)
        except psycopg.ProgrammingError:
            raise StorageError(
                "storage.postgres.dsn is not a valid PostgreSQL connection string "
                "(write e.g. postgresql://gateway@db.example.com:5432/gateway)"
            ) from None
        timeout = settings.connect_timeout
        connect_timeout = max(1, round(timeout))
        # One direct attempt first: it reports why the server cannot be reached, where the
        # pool would only retry quietly until its timeout.
        try:
            probe = await psycopg.AsyncConnection.connect(conninfo, connect_timeout=connect_timeout)
            await probe.close()
        except psycopg.Error as error:
            raise target.unavailable(error) from None
        pool: AsyncConnectionPool[psycopg.AsyncConnection] = AsyncConnectionPool(
            conninfo,
            kwargs={"connect_timeout": connect_timeout},
            min_size=1,
            max_size=settings.pool_size,
            timeout=timeout,
            # Give up a reconnection attempt (and its growing back-off) after one timeout:
            # the next request then starts a fresh attempt, so the gateway recovers within
            # seconds of the database coming back rather than after minutes of back-off.
            reconnect_timeout=timeout,
            check=AsyncConnectionPool.check_connection,
            name="gateway-storage",
            open=False,
        )
        try:
            await pool.open(wait=True, timeout=timeout)
        except (PoolTimeout, psycopg.Error) as error:
            await pool.close()
            raise target.unavailable(error) from None
        return cls(pool, target, timeout)

    @asynccontextmanager
    async def transaction(self, *, write: bool) -> AsyncIterator[_PostgresTransaction]:
        try:
            async with (
                self._pool.connection(timeout=self._timeout) as connection,
                connection.transaction(),
            ):
                yield _PostgresTransaction(connection)
        except PoolTimeout as error:
            raise self._target.unavailable(error) from None
        except psycopg.errors.UniqueViolation:
            raise RecordExists("a record with the same unique key already exists") from None
        except psycopg.OperationalError as error:
            raise self._target.unavailable(error) from None

    async def close(self) -> None:
        await self._pool.close()


def _password(settings: PostgresSettings) -> dict[str, str]:
    return {"password": settings.password} if settings.password is not None else {}


class _PostgresTransaction:
    def __init__(self, connection: psycopg.AsyncConnection) -> None:
        self._connection = connection

    async def execute(self, sql: str, params: Sequence[Param] = ()) -> int:
        cursor = await self._connection.execute(_translate(sql), params)
        return cursor.rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Param]]) -> None:
        async with self._connection.cursor() as cursor:
            await cursor.executemany(_translate(sql), rows)

    async def fetchone(self, sql: str, params: Sequence[Param] = ()) -> Row | None:
        cursor = await self._connection.execute(_translate(sql), params)
        return await cursor.fetchone()

    async def fetchall(self, sql: str, params: Sequence[Param] = ()) -> list[Row]:
        cursor = await self._connection.execute(_translate(sql), params)
        return await cursor.fetchall()

    async def lock(self, name: str) -> None:
        await self._connection.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(name),))
