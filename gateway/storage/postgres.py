"""PostgreSQL driver: psycopg 3 (async) with a small connection pool, for several replicas.

Statements use the shared ``?`` placeholder style and are translated to psycopg's ``%s`` once
(the SQL in :mod:`gateway.storage` never contains ``?`` or ``%`` inside literals). Named locks
are transaction-scoped advisory locks, released automatically on commit or rollback.

Every transaction has a deadline, ``statement_timeout``, from asking the pool for a connection
to the commit. PostgreSQL enforces it per statement on a server that is merely slow; the
client enforces it for one that does not answer at all (hung, stopped, partitioned), where
no server-side timeout can fire and TCP keeps the connection looking healthy.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from gateway.storage.database import Param, Row
from gateway.storage.errors import RecordExists, StorageError, StorageUnavailable
from gateway.storage.settings import PostgresSettings

__all__ = ["PostgresDatabase"]


@functools.lru_cache(maxsize=256)
def _translate(sql: str) -> str:
    return sql.replace("?", "%s")


_SECOND_CANCEL_AFTER = 0.05
"""Seconds between the deadline's first cancellation and the one that closes the connection."""


@asynccontextmanager
async def _deadline(seconds: float) -> AsyncIterator[None]:
    """Like :func:`asyncio.timeout` (raises :class:`TimeoutError`), for psycopg code.

    psycopg answers a cancelled query by sending the server a cancel request and waiting for
    the query to end, up to 5 + 5 seconds; against a server that answers nothing, that is ten
    more seconds of the hang. A second cancellation makes it close the connection at once
    instead, so the deadline cancels twice, a moment apart. The pool discards the closed
    connection and opens a new one in the background.
    """
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("_deadline needs a running task")
    loop = asyncio.get_running_loop()
    cancels = 0
    handle: asyncio.TimerHandle | None = None

    def expire() -> None:
        nonlocal cancels, handle
        cancels += 1
        task.cancel()
        handle = loop.call_later(_SECOND_CANCEL_AFTER, expire) if cancels == 1 else None

    handle = loop.call_later(seconds, expire)
    try:
        yield
    except asyncio.CancelledError:
        if cancels == 0:
            raise
        for _ in range(cancels):
            task.uncancel()
        if task.cancelling():
            raise  # cancelled from outside as well: that cancellation wins
        raise TimeoutError(f"no answer within {seconds:g}s") from None
    finally:
        if handle is not None:
            handle.cancel()


def _with_statement_timeout(conninfo: str, seconds: float) -> str:
    """``conninfo`` whose sessions start with ``statement_timeout`` set (any other
    ``options`` kept): no extra round trip per connection or transaction."""
    params = conninfo_to_dict(conninfo)
    setting = f"-c statement_timeout={max(1, round(seconds * 1000))}"
    params["options"] = f"{params.get('options') or ''} {setting}".strip()
    return make_conninfo("", **params)


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
        self,
        pool: AsyncConnectionPool[psycopg.AsyncConnection],
        target: _Target,
        statement_timeout: float,
    ) -> None:
        self._pool = pool
        self._target = target
        self._statement_timeout = statement_timeout

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
        conninfo = _with_statement_timeout(conninfo, settings.statement_timeout)
        # One direct attempt first: it reports why the server cannot be reached, where the
        # pool would only retry quietly until its timeout. Bounded as a whole: a server that
        # accepts the connection and then says nothing must not stall the start-up.
        try:
            async with _deadline(timeout + settings.statement_timeout):
                probe = await psycopg.AsyncConnection.connect(
                    conninfo, connect_timeout=connect_timeout
                )
                await probe.close()
        except (psycopg.Error, TimeoutError) as error:
            raise target.unavailable(error) from None
        pool: AsyncConnectionPool[psycopg.AsyncConnection] = AsyncConnectionPool(
            conninfo,
            kwargs={"connect_timeout": connect_timeout},
            min_size=1,
            max_size=settings.pool_size,
            timeout=settings.statement_timeout,
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
        return cls(pool, target, settings.statement_timeout)

    @asynccontextmanager
    async def transaction(
        self, *, write: bool, deadline: float | None = None
    ) -> AsyncIterator[_PostgresTransaction]:
        budget = deadline if deadline is not None else self._statement_timeout
        try:
            # The deadline covers the pool's wait and connection check too: on a hung server
            # the check (an empty query) hangs like any statement.
            async with (
                _deadline(budget),
                self._pool.connection(timeout=budget) as connection,
                connection.transaction(),
            ):
                if deadline is not None:
                    # This transaction may run longer than the session's statement_timeout.
                    milliseconds = max(1, round(deadline * 1000))
                    await connection.execute(f"SET LOCAL statement_timeout = {milliseconds}")
                yield _PostgresTransaction(connection)
        except TimeoutError as error:
            raise self._target.unavailable(error) from None
        except psycopg.errors.QueryCanceled:
            raise self._target.unavailable(
                TimeoutError(f"a statement ran longer than {budget:g}s")
            ) from None
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
