"""The one interface every session store implements, and its brute-force counter half."""

from __future__ import annotations

from typing import Protocol

from gateway.security.regulation import RegulationBackend
from gateway.session.model import Session

__all__ = ["RegulationBackend", "SessionStore"]


class SessionStore(Protocol):
    """Sessions by store key (the keyed hash of the cookie id), with a per-user index.

    Every method raises :class:`~gateway.session.model.SessionStoreUnavailable` when the
    backend cannot be reached.
    """

    @property
    def regulation(self) -> RegulationBackend:
        """Brute-force counters kept in the same backend."""
        ...

    async def get(self, key: str) -> Session | None:
        """The stored session (with an empty ``id``), or None if unknown or expired."""
        ...

    async def save(self, session: Session, ttl: float, *, existing_only: bool = False) -> bool:
        """Store ``session`` under ``session.key`` for ``ttl`` seconds; with
        ``existing_only`` only if that key still holds a live session. Returns whether it
        was stored (anonymous sessions never are)."""
        ...

    async def delete(self, key: str) -> bool:
        """Delete one session; returns whether it was there."""
        ...

    async def delete_user(self, username: str) -> int:
        """Delete every session of ``username``; returns how many there were."""
        ...

    async def list_user(self, username: str) -> list[Session]:
        """Live sessions of ``username``, oldest first."""
        ...

    async def ping(self) -> None:
        """Return if the backend answers; raise ``SessionStoreUnavailable`` otherwise."""
        ...

    async def close(self) -> None: ...
