"""Session stores: memory (tests, one process), SQLite (default), Redis (replicas)."""

from __future__ import annotations

from gateway.config.settings import Settings
from gateway.security.crypto import Keyring
from gateway.session.stores.base import RegulationBackend, SessionStore

__all__ = ["RegulationBackend", "SessionStore", "open_session_store"]


async def open_session_store(settings: Settings, keyring: Keyring) -> SessionStore:
    """The store ``settings.session.store`` names.

    A SQLite file is opened (and its schema created) now, so a bad path fails at start-up
    with ``SessionStoreUnavailable``. Redis is not contacted: a Redis that is down at
    start-up makes requests fail closed until it is back, and ``/api/ready`` reports it.
    """
    session = settings.session
    if session.store == "memory":
        from gateway.session.stores.memory import MemorySessionStore

        return MemorySessionStore()
    if session.store == "redis":
        from gateway.session.stores.redis import RedisSessionStore

        return RedisSessionStore.from_settings(
            session.redis, keyring, settings.secrets.hash_key.encode()
        )
    from gateway.session.stores.sqlite import SqliteSessionStore

    store = SqliteSessionStore(session.sqlite.path)
    try:
        await store.ping()
    except BaseException:
        await store.close()
        raise
    return store
