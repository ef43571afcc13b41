"""Persistent records (TOTP seeds, recovery codes, API keys, secrets, audit chain).

SQLite is the embedded default; PostgreSQL serves several replicas. Open with
:func:`open_storage` and close with :meth:`Storage.close`.
"""

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
