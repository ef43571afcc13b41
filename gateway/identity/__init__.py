"""Who a person is: users (users file, LDAP), passwords, TOTP second factor, group refresh.

The backends and the second factor live in their own modules; the names other packages
code against are re-exported here, imported on first use (so that importing
``gateway.identity.settings``, as the configuration does, imports nothing else).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.lazy import lazy_exports

if TYPE_CHECKING:
    from gateway.identity.model import DirectoryUnavailable, User, UserBackend, create_user_backend

__all__ = ["DirectoryUnavailable", "User", "UserBackend", "create_user_backend"]

__getattr__ = lazy_exports(__name__, {name: "gateway.identity.model" for name in __all__})
