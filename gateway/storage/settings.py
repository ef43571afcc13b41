"""``storage:`` in ``gateway.yml``: where records live (SQLite, or PostgreSQL for replicas).

The schema only; :func:`gateway.storage.store.open_storage` reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from gateway.config.values import Duration, Section, SqliteSettings

__all__ = ["PostgresSettings", "StorageSettings"]


class PostgresSettings(Section):
    dsn: str
    password: str | None = None
    pool_size: int = Field(4, ge=1, le=64)
    connect_timeout: Duration = Field(5.0, gt=0)
    """How long opening a connection may take."""
    statement_timeout: Duration = Field(2.0, gt=0)
    """The longest one storage operation may take (pooled connection, statements, commit);
    PostgreSQL also cancels a statement running longer."""


class StorageSettings(Section):
    type: Literal["sqlite", "postgres"] = "sqlite"
    sqlite: SqliteSettings = SqliteSettings(path=Path("data/gateway.sqlite3"))
    postgres: PostgresSettings | None = None

    @model_validator(mode="after")
    def _postgres_configured(self) -> StorageSettings:
        if self.type == "postgres" and self.postgres is None:
            raise ValueError("type 'postgres' needs a 'postgres:' section with 'dsn'")
        return self
