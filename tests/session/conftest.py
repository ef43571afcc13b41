"""Backend fixtures for the session tests (defined in tests/session/backends.py)."""

from tests.session.backends import anyio_backend, backend, clock, keyring

__all__ = ["anyio_backend", "backend", "clock", "keyring"]
