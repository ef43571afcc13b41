"""One policy load, in force as a whole: the rules engine, the API hosts and keys it declares,
and the memos that depend on them, swapped in one assignment.

A reload used to be coordinated by three parties (the watcher, a hook in ``app.py`` pushing
hosts and keys into the machine authenticator, and the endpoint flushing its memos when it
noticed a new generation). Between those steps a request could see the new rules with the
old API hosts, or remember an identity that rested on a key just removed. Now a request reads
:attr:`Snapshots.current` once and uses only that object, whose memos die with it.

This module sits above :mod:`gateway.policy` and :mod:`gateway.credentials`: the policy knows
nothing of machine credentials, and the credentials know nothing of reloads.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from gateway.memo import BoundedMemo
from gateway.policy.engine import PolicyEngine
from gateway.policy.model import Subject

if TYPE_CHECKING:
    from gateway.credentials.authenticator import MachineAuthenticator, MachineDeclarations
    from gateway.policy.reload import PolicyWatcher

__all__ = ["MachineMemoKey", "PolicySnapshot", "Snapshots"]

log = logging.getLogger("gateway.policy")

MachineMemoKey = tuple[str | None, str | None, str | None, str, object]
"""(X-API-Key, Authorization, client certificate, host, client address)."""
RememberedMachine = tuple[Subject, list[tuple[bytes, bytes]], float]
"""The subject, its 2xx headers, and until when (monotonic) it may be reused."""

_API_HOST_MEMO = (4096, 1 << 20)
_MACHINE_MEMO = (10_000, 16 << 20)


class PolicySnapshot:
    """What one policy generation decided; immutable apart from its memos."""

    __slots__ = ("api_hosts", "engine", "generation", "machine_memo", "machines")

    def __init__(
        self, engine: PolicyEngine, generation: int, machines: MachineDeclarations | None
    ) -> None:
        self.engine = engine
        self.generation = generation
        self.machines = machines
        """API hosts and declared keys (None when machine credentials are off)."""
        self.api_hosts: BoundedMemo[str, bool] = BoundedMemo(*_API_HOST_MEMO)
        """Host -> whether it is answered as an API host (hosts come from clients)."""
        self.machine_memo: BoundedMemo[MachineMemoKey, RememberedMachine] = BoundedMemo(
            *_MACHINE_MEMO
        )
        """Successful machine identities, reused for a second per credential and address."""


class Snapshots:
    """The snapshot in force, rebuilt from every engine the watcher loads."""

    def __init__(self, watcher: PolicyWatcher, machines: MachineAuthenticator | None) -> None:
        self._watcher = watcher
        self._machines = machines
        self.current = self._build(watcher.current, watcher.generation)

    def _build(self, engine: PolicyEngine, generation: int) -> PolicySnapshot:
        machines = self._machines
        declared = (
            machines.declare(engine.api_hosts, engine.static_api_keys)
            if machines is not None
            else None
        )
        return PolicySnapshot(engine, generation, declared)

    async def start(self) -> None:
        """Read the upstream secrets of the first snapshot, then follow the watcher."""
        if self._machines is not None and self.current.machines is not None:
            await self._machines.load_upstream_secrets(self.current.machines)
        self._watcher.on_reload = self.apply
        await self._watcher.start()

    async def apply(self, engine: PolicyEngine) -> None:
        """Put ``engine`` in force with its declarations (the watcher's reload hook).

        New upstream secrets are read before the swap, so a new API host never answers 503
        for a secret that was merely not loaded yet.
        """
        snapshot = self._build(engine, self._watcher.generation)
        if self._machines is not None and snapshot.machines is not None:
            await self._machines.load_upstream_secrets(snapshot.machines)
        self.current = snapshot
