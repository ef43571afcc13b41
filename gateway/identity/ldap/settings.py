"""``authentication.ldap:`` in ``gateway.yml``: the directory, its filters and attributes.

The schema only. The ``implementation`` preset is applied, and the filters are checked, by
:meth:`gateway.identity.ldap.config.LdapConfig.from_settings`, which start-up and ``gateway
check`` run (it needs ldap3's filter parser).
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from gateway.config.values import ConfigPath, Duration, Section

__all__ = ["LdapAttributes", "LdapSettings"]


class LdapAttributes(Section):
    username: str = "uid"
    display_name: str = "displayName"
    mail: str = "mail"
    group_name: str = "cn"
    member_of: str = "memberOf"
    distinguished_name: str = "distinguishedName"


class LdapSettings(Section):
    implementation: Literal["custom", "openldap", "activedirectory"] = "custom"
    urls: tuple[str, ...] = Field(min_length=1)
    start_tls: bool = False
    ca_certificate: ConfigPath | None = None
    tls_skip_verify: bool = False
    base_dn: str
    additional_users_dn: str = ""
    users_filter: str = "(&({username_attribute}={input})(objectClass=person))"
    additional_groups_dn: str = ""
    groups_filter: str = "(&(member={dn})(objectClass=groupOfNames))"
    group_search_mode: Literal["filter", "memberof"] = "filter"
    user: str = ""
    password: str = ""
    attributes: LdapAttributes = LdapAttributes()
    connect_timeout: Duration = 5.0
    read_timeout: Duration = 5.0
    pool_size: int = Field(8, ge=1, le=128)
    retries: int = Field(2, ge=0, le=10)
    circuit_breaker_failures: int = Field(5, ge=1)
    circuit_breaker_reset: Duration = 30.0
    refresh_interval: Duration = 300.0

    @field_validator("urls")
    @classmethod
    def _url_schemes(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            if urlsplit(url).scheme not in ("ldap", "ldaps") or not urlsplit(url).hostname:
                raise ValueError(f"'{url}' must be an ldap:// or ldaps:// URL")
        return urls
