"""The live components of one gateway process, built once from :class:`Settings`.

The Starlette app, the portal and the decision endpoints receive a :class:`Runtime`; nothing
is global, so tests can build several gateways in one process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config.settings import Settings
    from gateway.credentials.authenticator import MachineAuthenticator
    from gateway.identity.model import UserBackend
    from gateway.identity.second_factor import SecondFactor
    from gateway.observability.metrics import Metrics
    from gateway.policy.reload import PolicyWatcher
    from gateway.security.crypto import Keyring
    from gateway.security.regulation import Regulator
    from gateway.session.manager import SessionManager
    from gateway.snapshot import Snapshots
    from gateway.storage.store import Storage

__all__ = ["Runtime"]


@dataclass(slots=True)
class Runtime:
    """Everything a request handler may use; built by :func:`gateway.app.build_runtime`."""

    settings: Settings
    keyring: Keyring
    hash_key: bytes
    policy: PolicyWatcher
    """Loads and watches the policy files (generation, last error)."""
    snapshots: Snapshots
    """The policy in force, with its API hosts and keys: read ``current`` once per request."""
    sessions: SessionManager
    users: UserBackend
    regulator: Regulator
    storage: Storage
    second_factor: SecondFactor
    metrics: Metrics
    machines: MachineAuthenticator | None = None
    """The machine-credential authenticator for API hosts."""
