"""Machine credentials: API keys, client certificates, bearer JWTs, network allowlists,
rate limits and credential exchange, behind one entry point, :class:`MachineAuthenticator`.

Modules: ``authenticator`` (the entry point), ``api_keys`` (format, model) with
``api_key_verifier`` and ``api_key_declarations``, ``client_cert``, ``jwt`` /
``jwks``, ``networks``, ``hosts``, ``rate_limit``, ``upstream``, ``commands`` (``gateway
keys``). Names below are imported lazily so that importing a submodule (as the settings do)
stays cheap and free of import cycles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.lazy import lazy_exports

if TYPE_CHECKING:
    from gateway.credentials.api_key_declarations import load_static_api_keys
    from gateway.credentials.api_keys import ApiKey
    from gateway.credentials.authenticator import (
        MachineAuthenticator,
        MachineFailure,
        MachineIdentity,
        MachineResult,
    )

__all__ = [
    "ApiKey",
    "MachineAuthenticator",
    "MachineFailure",
    "MachineIdentity",
    "MachineResult",
    "load_static_api_keys",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "ApiKey": "gateway.credentials.api_keys",
        "load_static_api_keys": "gateway.credentials.api_key_declarations",
        "MachineAuthenticator": "gateway.credentials.authenticator",
        "MachineFailure": "gateway.credentials.authenticator",
        "MachineIdentity": "gateway.credentials.authenticator",
        "MachineResult": "gateway.credentials.authenticator",
    },
)
