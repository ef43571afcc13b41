"""The small interface both database drivers implement.

Record logic (the repositories that :mod:`gateway.storage.store` gathers) is written once
against this interface, so the SQLite and PostgreSQL backends behave identically by
construction. SQL is written with ``?`` placeholders and portable syntax (``INSERT ... ON
CONFLICT DO NOTHING``, ``LIMIT``); only the schema (:mod:`gateway.storage.migrations`)
differs per backend.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

__all__ = ["Database", "Dialect", "Param", "Row", "Transaction"]

Dialect = Literal["sqlite", "postgres"]
Param = str | int | float | bytes | bool | None
Row = tuple[Any, ...]


class Transaction(Protocol):
    """Statements run inside one database transaction (committed on clean exit)."""

    async def execute(self, sql: str, params: Sequence[Param] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[Param]]) -> None:
        """Run one statement for many parameter rows in a single round trip where possible."""
        ...

    async def fetchone(self, sql: str, params: Sequence[Param] = ()) -> Row | None: ...

    async def fetchall(self, sql: str, params: Sequence[Param] = ()) -> list[Row]: ...

    async def lock(self, name: str) -> None:
        """Serialise with every other process holding ``name`` until this transaction ends."""
        ...


class Database(Protocol):
    """A connection (pool) to one database."""

    @property
    def dialect(self) -> Dialect: ...

    @property
    def description(self) -> str:
        """Which database this is, safe to show and log (no user name or password)."""
        ...

    def transaction(
        self, *, write: bool, deadline: float | None = None
    ) -> AbstractAsyncContextManager[Transaction]:
        """A transaction; ``write=True`` declares up front that it will write.

        ``deadline`` (seconds) replaces the configured one for this one transaction (schema
        migrations, which may wait for another process's); SQLite has none to replace.
        """
        ...

    async def close(self) -> None: ...
