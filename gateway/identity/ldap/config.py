"""The LDAP settings as the backend uses them: the ``implementation`` preset applied to
options left unset, the filters checked, the TLS context for the CA certificate.

:meth:`LdapConfig.from_settings` and :func:`read_ca_certificate` are what start-up and
``gateway check`` run (:func:`gateway.identity.validation.validate_identity`), each problem
at the line of ``gateway.yml`` to fix.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ldap3

from gateway.config.yaml import ConfigError, Issue, Position, read_file
from gateway.identity.ldap.filters import PRESETS, filter_problem, placeholders, render
from gateway.identity.ldap.settings import LdapSettings

__all__ = ["LdapConfig", "client_tls", "read_ca_certificate"]

logger = logging.getLogger("gateway.identity.ldap")


@dataclass(frozen=True, slots=True)
class LdapConfig:
    """:class:`LdapSettings` with the ``implementation`` preset applied and checked."""

    urls: tuple[str, ...]
    start_tls: bool
    ca_certificate: Path | None
    tls_skip_verify: bool
    users_base: str
    groups_base: str
    users_filter: str
    """Template with only ``{input}`` left (attribute placeholders are filled in)."""
    groups_filter: str
    group_search_mode: str
    bind_dn: str
    bind_password: str
    username_attribute: str
    display_name_attribute: str
    mail_attribute: str
    group_name_attribute: str
    member_of_attribute: str
    connect_timeout: float
    read_timeout: float
    pool_size: int
    retries: int
    circuit_breaker_failures: int
    circuit_breaker_reset: float
    refresh_interval: float

    @classmethod
    def from_settings(
        cls, settings: LdapSettings, *, where: Callable[[str], Position | None] | None = None
    ) -> LdapConfig:
        """Apply the preset to options left unset; raises :class:`ConfigError` on bad filters.

        ``where(option)`` gives the position of an ``authentication.ldap`` option in
        ``gateway.yml``, for issues that point at the line to fix.
        """
        preset = PRESETS[settings.implementation]
        explicit = settings.model_fields_set
        explicit_attributes = settings.attributes.model_fields_set

        def option(name: str) -> Any:
            return getattr(settings, name) if name in explicit else getattr(preset, name)

        def attribute(name: str) -> str:
            if name in explicit_attributes:
                return str(getattr(settings.attributes, name))
            return str(getattr(preset, name))

        attributes = {
            "username_attribute": attribute("username"),
            "display_name_attribute": attribute("display_name"),
            "mail_attribute": attribute("mail"),
            "group_name_attribute": attribute("group_name"),
            "member_of_attribute": attribute("member_of"),
        }
        users_filter = str(option("users_filter"))
        groups_filter = str(option("groups_filter"))
        group_search_mode = str(option("group_search_mode"))
        issues: list[Issue] = []

        def problem(message: str, option: str) -> None:
            position = where(option) if where is not None else None
            issues.append(Issue(position, f"authentication.ldap: {message}"))

        for name, value in attributes.items():
            users_filter = users_filter.replace("{" + name + "}", value)
        unknown = placeholders(users_filter) - {"input"}
        if "input" not in placeholders(users_filter):
            problem(
                f"users_filter {users_filter!r} must contain {{input}} (the username typed)",
                "users_filter",
            )
        if unknown:
            names = ", ".join(sorted("{" + name + "}" for name in unknown))
            problem(
                f"users_filter has unknown placeholders {names} (known: {{input}}, "
                "{username_attribute}, {mail_attribute}, {display_name_attribute})",
                "users_filter",
            )
        elif reason := filter_problem(render(users_filter, {"input": "x"})):
            problem(
                f"users_filter {users_filter!r} is not a valid LDAP filter ({reason})",
                "users_filter",
            )
        if group_search_mode == "filter":
            group_placeholders = placeholders(groups_filter)
            if group_placeholders - {"dn", "username", "input"}:
                problem(
                    f"groups_filter {groups_filter!r} may only use {{dn}}, {{username}}, {{input}}",
                    "groups_filter",
                )
            elif not group_placeholders:
                problem(
                    f"groups_filter {groups_filter!r} must contain {{dn}} or {{username}}",
                    "groups_filter",
                )
            elif reason := filter_problem(
                render(groups_filter, {"dn": "cn=x", "username": "x", "input": "x"})
            ):
                problem(
                    f"groups_filter {groups_filter!r} is not a valid LDAP filter ({reason})",
                    "groups_filter",
                )
        if issues:
            raise ConfigError(issues)
        return cls(
            urls=settings.urls,
            start_tls=settings.start_tls,
            ca_certificate=settings.ca_certificate,
            tls_skip_verify=settings.tls_skip_verify,
            users_base=_join_dn(settings.additional_users_dn, settings.base_dn),
            groups_base=_join_dn(settings.additional_groups_dn, settings.base_dn),
            users_filter=users_filter,
            groups_filter=groups_filter,
            group_search_mode=group_search_mode,
            bind_dn=settings.user,
            bind_password=settings.password,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            pool_size=settings.pool_size,
            retries=settings.retries,
            circuit_breaker_failures=settings.circuit_breaker_failures,
            circuit_breaker_reset=settings.circuit_breaker_reset,
            refresh_interval=settings.refresh_interval,
            **attributes,
        )


def _join_dn(prefix: str, base: str) -> str:
    prefix = prefix.strip().strip(",")
    return f"{prefix},{base}" if prefix else base


def read_ca_certificate(config: LdapConfig, *, referenced_at: Position | None = None) -> str | None:
    """The PEM text of ``ca_certificate`` when it is used (blocking); raises
    :class:`ConfigError`. ``referenced_at`` is the option's line in ``gateway.yml``."""
    if config.ca_certificate is None or config.tls_skip_verify:
        return None
    path = config.ca_certificate
    label = f"authentication.ldap.ca_certificate {path}"
    try:
        return read_file(path, referenced_at=referenced_at, label=label).decode("ascii")
    except UnicodeDecodeError:
        raise ConfigError(
            [Issue(referenced_at, f"{label}: not a PEM file (it is not ASCII text)")]
        ) from None


def client_tls(config: LdapConfig, ca_data: str | None) -> ldap3.Tls | None:
    """The TLS settings for LDAPS / StartTLS (None when neither is used)."""
    secure = config.start_tls or any(url.startswith("ldaps://") for url in config.urls)
    if not secure:
        return None
    if config.tls_skip_verify:
        logger.warning("LDAP: tls_skip_verify is set; the directory's certificate is NOT checked")
        return ldap3.Tls(validate=ssl.CERT_NONE, version=ssl.PROTOCOL_TLS_CLIENT)
    return ldap3.Tls(
        validate=ssl.CERT_REQUIRED,
        version=ssl.PROTOCOL_TLS_CLIENT,
        ca_certs_data=ca_data,
    )
