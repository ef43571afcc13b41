"""The failures a caller of :mod:`gateway.storage` can act on."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.errors import GatewayError, Rejected, Unavailable

__all__ = ["RecordExists", "RotationIncomplete", "StorageError", "StorageUnavailable"]


class StorageError(GatewayError):
    """Base class of every storage failure."""


class StorageUnavailable(StorageError, Unavailable):
    """The database cannot be reached or used right now; retrying later may succeed.

    The message names the database (file path, or PostgreSQL host/port/name) and the reason;
    it never contains a password, a full DSN or a query.
    """


class RecordExists(StorageError, Rejected):
    """A record with the same unique identifier (API key id or name) already exists."""


class RotationIncomplete(StorageError):
    """Key rotation re-encrypted what it could but some values could not be decrypted."""

    def __init__(self, changed: int, failed: Sequence[str]) -> None:
        self.changed = changed
        self.failed = tuple(failed)
        shown = ", ".join(self.failed[:10]) + (" ..." if len(self.failed) > 10 else "")
        super().__init__(
            f"re-encrypted {changed} value(s), but {len(self.failed)} could not be decrypted "
            f"with the configured keys and still use an old key: {shown}"
        )
