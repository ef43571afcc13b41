"""What start-up checks about ``authentication:`` before it opens anything.

The users file must load; for LDAP, the filters must parse (after the ``implementation``
preset) and the CA certificate must be readable. The directory itself is not contacted:
whether the bind works is start-up's to find out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.config.yaml import ConfigError, Issue, YamlPath, load_bytes, read_file

if TYPE_CHECKING:
    from gateway.config.settings import Settings

__all__ = ["validate_identity"]


def validate_identity(settings: Settings) -> list[Issue]:
    """Every problem of the configured user backend, each at the line to fix (blocking)."""
    authentication = settings.authentication
    if authentication.backend == "file" and authentication.file is not None:
        return _users_file(settings)
    if authentication.ldap is not None:
        return _ldap(settings)
    return []


def _users_file(settings: Settings) -> list[Issue]:
    from gateway.identity.users_file import parse_users

    assert settings.authentication.file is not None
    path = settings.authentication.file.path
    option: YamlPath = ("authentication", "file", "path")
    try:
        data = read_file(path, referenced_at=settings.position(option), label=f"users file {path}")
        # No ${ENV} interpolation: argon2 hashes are full of '$'.
        parse_users(load_bytes(data, str(path), environ=None))
    except ConfigError as error:
        return error.issues
    return []


def _ldap(settings: Settings) -> list[Issue]:
    from gateway.identity.ldap.config import LdapConfig, read_ca_certificate

    ldap = settings.authentication.ldap
    assert ldap is not None
    issues: list[Issue] = []
    ca_option: YamlPath = ("authentication", "ldap", "ca_certificate")
    ca_readable = True
    # The file first, so that a missing one is said once, at the line that names it.
    if ldap.ca_certificate is not None and not ldap.tls_skip_verify:
        path = ldap.ca_certificate
        try:
            read_file(
                path,
                referenced_at=settings.position(ca_option),
                label=f"LDAP CA certificate {path}",
            )
        except ConfigError as error:
            issues.extend(error.issues)
            ca_readable = False
    try:
        config = LdapConfig.from_settings(
            ldap, where=lambda option: settings.position(("authentication", "ldap", option))
        )
        if ca_readable:
            read_ca_certificate(config, referenced_at=settings.position(ca_option))
    except ConfigError as error:
        issues.extend(error.issues)
    return issues
