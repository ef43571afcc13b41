"""Users in an LDAP directory (OpenLDAP, Active Directory, ...), through ldap3.

* A service account searches for the user with ``users_filter``; the password is checked by
  binding as the DN found (an empty password is refused first: it would be an
  unauthenticated bind, which many servers accept). Groups come from ``groups_filter`` or
  from the user's ``memberOf`` values.
* Every value put into a filter is escaped (RFC 4515), see :mod:`.filters`.
* Several URLs fail over in order; a server that refused a connection is tried last for a
  while. LDAPS or StartTLS verify the server against ``ca_certificate`` (or the system CAs).
* Blocking ldap3 calls run in a thread pool of ``pool_size`` threads, next to a pool of at most
  ``pool_size`` service-account connections.
* Transient failures (connection refused or reset, timeouts, busy/unavailable) are retried
  ``retries`` times with exponential backoff. ``circuit_breaker_failures`` failed calls in a
  row open a circuit breaker: logins then fail at once with :class:`DirectoryUnavailable`
  until a probe after ``circuit_breaker_reset`` seconds succeeds.

Modules: ``settings`` (the ``authentication.ldap`` schema), ``config`` (presets applied,
filters checked, TLS), ``filters`` (RFC 4515 filters, RFC 4514 DNs, presets), ``pool``
(service-account connections), ``directory`` (one attempt of each operation), ``backend``
(retries, circuit breaker, the thread pool). The names below are imported lazily, so that
the settings module can be imported without ldap3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.lazy import lazy_exports

if TYPE_CHECKING:
    from gateway.identity.ldap.backend import LdapBackend
    from gateway.identity.ldap.config import LdapConfig, read_ca_certificate
    from gateway.identity.ldap.settings import LdapAttributes, LdapSettings

__all__ = ["LdapAttributes", "LdapBackend", "LdapConfig", "LdapSettings", "read_ca_certificate"]

__getattr__ = lazy_exports(
    __name__,
    {
        "LdapAttributes": "gateway.identity.ldap.settings",
        "LdapBackend": "gateway.identity.ldap.backend",
        "LdapConfig": "gateway.identity.ldap.config",
        "LdapSettings": "gateway.identity.ldap.settings",
        "read_ca_certificate": "gateway.identity.ldap.config",
    },
)
