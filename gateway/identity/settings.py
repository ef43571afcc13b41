"""``authentication:`` and ``totp:`` in ``gateway.yml``: where users live, the second factor.

The schema only (the LDAP section is in :mod:`gateway.identity.ldap.settings`). Whether the
users file loads and the LDAP filters parse is checked by
:func:`gateway.identity.validation.validate_identity`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gateway.config.values import ConfigPath, Section
from gateway.identity.ldap.settings import LdapSettings

__all__ = ["AuthenticationSettings", "TotpSettings", "UsersFileSettings"]


class UsersFileSettings(Section):
    path: ConfigPath
    watch: bool = True


class AuthenticationSettings(Section):
    backend: Literal["file", "ldap"] = "file"
    file: UsersFileSettings | None = None
    ldap: LdapSettings | None = None

    @model_validator(mode="after")
    def _backend_configured(self) -> AuthenticationSettings:
        if self.backend == "file" and self.file is None:
            raise ValueError("backend 'file' needs a 'file:' section with 'path'")
        if self.backend == "ldap" and self.ldap is None:
            raise ValueError("backend 'ldap' needs an 'ldap:' section")
        return self


class TotpSettings(Section):
    issuer: str = "gateway"
    period: int = Field(30, ge=15, le=120)
    digits: Literal[6, 8] = 6
    skew: int = Field(1, ge=0, le=3)
