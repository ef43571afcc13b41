"""Server-side sessions: one cookie per root domain, stores for one process or many."""

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
