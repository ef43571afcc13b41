"""Server-side sessions: one cookie per root domain, stores for one process or many.

The names below are imported on first use, so that importing ``gateway.session.settings``
(as the configuration does) imports nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.lazy import lazy_exports

if TYPE_CHECKING:
    from gateway.session.manager import SessionManager
    from gateway.session.model import AuthLevel, Session, SessionExpired, SessionStoreUnavailable
    from gateway.session.stores import SessionStore, open_session_store

__all__ = [
    "AuthLevel",
    "Session",
    "SessionExpired",
    "SessionManager",
    "SessionStore",
    "SessionStoreUnavailable",
    "open_session_store",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "AuthLevel": "gateway.session.model",
        "Session": "gateway.session.model",
        "SessionExpired": "gateway.session.model",
        "SessionManager": "gateway.session.manager",
        "SessionStore": "gateway.session.stores",
        "SessionStoreUnavailable": "gateway.session.model",
        "open_session_store": "gateway.session.stores",
    },
)
