"""The one interface every session store implements, and its brute-force counter half."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from gateway.security.regulation import RegulationBackend
from gateway.session.model import Session

__all__ = ["ChangeFeed", "RegulationBackend", "SessionStore", "TouchResult"]

TouchResult = bytes | Session | None
"""What became of one touch: the new revision (written), the session as it is stored now
(it changed since it was read: nothing written), or None (it is gone: nothing written)."""


class ChangeFeed(Protocol):
    """Told by :meth:`SessionStore.watch` about changes made through any store on the same
    backend (this process, other workers, other replicas)."""

    def synced(self) -> None:
        """Every change from now on will be reported."""

    def changed(self, keys: Iterable[str]) -> None:
        """These sessions changed or ended: forget what is remembered about them."""

    def lost(self) -> None:
        """Changes may have gone unreported: forget everything until the next ``synced``."""


class SessionStore(Protocol):
    """Sessions by store key (the keyed hash of the cookie id), with a per-user index.

    Every method raises :class:`~gateway.session.model.SessionStoreUnavailable` when the
    backend cannot be reached.

    Every change to a session that already exists (``save`` with ``existing_only``,
    ``delete``, ``delete_user``) is announced to the watchers of every store on the same
    backend. A plain ``save`` is not: it is for new sessions, whose random keys no process
    can have remembered. Nor is a ``touch``: only ``last_activity`` moves.
    """

    @property
    def regulation(self) -> RegulationBackend:
        """Brute-force counters kept in the same backend."""
        ...

    async def get(self, key: str) -> Session | None:
        """The stored session (with an empty ``id`` and its ``revision``), or None if unknown
        or expired."""
        ...

    async def save(self, session: Session, ttl: float, *, existing_only: bool = False) -> bool:
        """Store ``session`` under ``session.key`` for ``ttl`` seconds; with
        ``existing_only`` only if that key still holds a live session. Returns whether it
        was stored (anonymous sessions never are)."""
        ...

    async def touch(self, touches: Sequence[tuple[Session, float]]) -> list[TouchResult]:
        """Record activity in a batch: store each session (its new ``last_activity``) for its
        ttl, but only where the stored value is still the one of ``session.revision``, so a
        touch never resurrects an ended session nor undoes a change. One answer per touch."""
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

    async def watch(self, feed: ChangeFeed) -> None:
        """Report changes to ``feed`` until cancelled, reconnecting after failures (each one
        reported as ``lost``). Never raises ``SessionStoreUnavailable``."""
        ...

    async def ping(self) -> None:
        """Return if the backend answers; raise ``SessionStoreUnavailable`` otherwise."""
        ...

    async def close(self) -> None: ...
