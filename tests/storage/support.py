"""Helpers shared by the storage tests: test keys, a backend handle."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import yaml

from gateway.config.settings import Settings
from gateway.security.crypto import generate_key

OLD_KEY = generate_key()
NEW_KEY = generate_key()


@dataclass
class Backend:
    """One database for a test: how to configure the gateway for it and how to peek inside."""

    name: str
    section: dict[str, Any]
    directory: Path

    def settings(self, keys: Sequence[str] = (OLD_KEY,)) -> Settings:
        return Settings.model_validate(
            config(self.section, keys), context={"base_dir": self.directory}
        )

    def write_config(self, keys: Sequence[str] = (OLD_KEY,), name: str = "gateway.yml") -> Path:
        path = self.directory / name
        path.write_text(yaml.safe_dump(config(self.section, keys)))
        return path

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Read rows straight from the database, bypassing the storage API."""
        if self.name == "sqlite":
            with closing(sqlite3.connect(self.section["sqlite"]["path"])) as lite:
                return lite.execute(sql, params).fetchall()
        with psycopg.connect(self.section["postgres"]["dsn"]) as postgres:
            return postgres.execute(_postgres_sql(sql), params).fetchall()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Change rows straight in the database, as an attacker with file/DB access could."""
        if self.name == "sqlite":
            with closing(sqlite3.connect(self.section["sqlite"]["path"])) as lite, lite:
                lite.execute(sql, params)
            return
        with psycopg.connect(self.section["postgres"]["dsn"], autocommit=True) as postgres:
            postgres.execute(_postgres_sql(sql), params)


def _postgres_sql(sql: str) -> str:
    """The tests' own fixed statements, with SQLite's ``?`` placeholders as psycopg's ``%s``."""
    return sql.replace("?", "%s")


def config(storage: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """A minimal valid gateway.yml with the given storage section and encryption keys."""
    return {
        "secrets": {"encryption_keys": list(keys), "hash_key": "h" * 40},
        "policy": {"files": ["policy.yml"]},
        "session": {
            "cookies": [{"domain": "example.com", "portal_url": "https://auth.example.com"}]
        },
        "storage": storage,
    }
