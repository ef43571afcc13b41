"""Persistent records (TOTP seeds, recovery codes, API keys, secrets, audit chain).

SQLite is the embedded default; PostgreSQL serves several replicas. Open with
:func:`open_storage` and close with :meth:`Storage.close`. The names below are imported on
first use, so that importing ``gateway.storage.settings`` (as the configuration does)
imports nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.lazy import lazy_exports

if TYPE_CHECKING:
    from gateway.storage.errors import (
        RecordExists,
        RotationIncomplete,
        StorageError,
        StorageUnavailable,
    )
    from gateway.storage.records import ApiKeyRecord, AuditEntry, AuditVerification, TotpRecord
    from gateway.storage.store import Storage, open_storage

__all__ = [
    "ApiKeyRecord",
    "AuditEntry",
    "AuditVerification",
    "RecordExists",
    "RotationIncomplete",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "TotpRecord",
    "open_storage",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "ApiKeyRecord": "gateway.storage.records",
        "AuditEntry": "gateway.storage.records",
        "AuditVerification": "gateway.storage.records",
        "RecordExists": "gateway.storage.errors",
        "RotationIncomplete": "gateway.storage.errors",
        "Storage": "gateway.storage.store",
        "StorageError": "gateway.storage.errors",
        "StorageUnavailable": "gateway.storage.errors",
        "TotpRecord": "gateway.storage.records",
        "open_storage": "gateway.storage.store",
    },
)
