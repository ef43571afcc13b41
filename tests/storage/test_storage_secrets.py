"""Upstream credentials: sealed by name, bound to their name."""

from __future__ import annotations

import pytest

from gateway.security.crypto import DecryptionError
from gateway.storage import Storage
from tests.storage.support import Backend

pytestmark = pytest.mark.anyio


async def test_put_get_list_delete(storage: Storage) -> None:
    await storage.secrets.put_secret("grafana/token", "glsa_0123456789abcdef")
    await storage.secrets.put_secret("backup/password", "correct horse battery staple")
    assert await storage.secrets.get_secret("grafana/token") == "glsa_0123456789abcdef"
    assert await storage.secrets.list_secret_names() == ["backup/password", "grafana/token"]
    await storage.secrets.put_secret("grafana/token", "glsa_new")
    assert await storage.secrets.get_secret("grafana/token") == "glsa_new"
    assert await storage.secrets.delete_secret("grafana/token") is True
    assert await storage.secrets.delete_secret("grafana/token") is False
    assert await storage.secrets.get_secret("grafana/token") is None
    assert await storage.secrets.list_secret_names() == ["backup/password"]


async def test_database_holds_only_ciphertext(storage: Storage, backend: Backend) -> None:
    await storage.secrets.put_secret("backup/password", "correct horse battery staple")
    [(sealed, key_id)] = backend.query("SELECT value, key_id FROM secrets")
    assert b"correct horse" not in bytes(sealed)
    assert key_id == storage.keyring.current_key_id


async def test_a_secret_copied_under_another_name_does_not_open(
    storage: Storage, backend: Backend
) -> None:
    await storage.secrets.put_secret("admin", "root-password")
    await storage.secrets.put_secret("guest", "guest-password")
    backend.execute(
        "UPDATE secrets SET value = (SELECT value FROM secrets WHERE name = 'admin') "
        "WHERE name = 'guest'"
    )
    with pytest.raises(DecryptionError):
        await storage.secrets.get_secret("guest")
