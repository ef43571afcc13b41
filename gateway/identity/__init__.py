"""Who a person is: users (users file, LDAP), passwords, TOTP second factor, group refresh.

The backends and the second factor live in their own modules; the names other packages
code against are re-exported here.
"""

from gateway.identity.model import DirectoryUnavailable, User, UserBackend, create_user_backend

__all__ = ["DirectoryUnavailable", "User", "UserBackend", "create_user_backend"]
