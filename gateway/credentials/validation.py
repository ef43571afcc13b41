"""What start-up checks about ``credentials:`` before it opens anything.

The files the settings name (the client CA bundle, issuers' public key files) must be
readable and usable, the certificate patterns must compile, and the policy's declared API
hosts and keys must fit: the authenticator is built as start-up builds it, without storage
and without contacting a JWKS URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config.yaml import ConfigError, Issue, YamlPath, read_file

if TYPE_CHECKING:
    from gateway.config.settings import Settings
    from gateway.credentials.api_keys import ApiKey
    from gateway.credentials.settings import ApiHostSettings

__all__ = ["validate_credentials"]


def _input_files(settings: Settings) -> list[tuple[str, YamlPath, Path]]:
    """(what, option, path) of every file the credentials settings name."""
    credentials = settings.credentials
    files: list[tuple[str, YamlPath, Path]] = []
    if credentials.client_certificates is not None:
        option: YamlPath = ("credentials", "client_certificates", "ca_bundle")
        files.append(("client CA bundle", option, credentials.client_certificates.ca_bundle))
    for index, issuer in enumerate(credentials.issuers):
        for key_index, path in enumerate(issuer.public_key_files):
            option = ("credentials", "issuers", index, "public_key_files", key_index)
            files.append((f"public key file of issuer {issuer.name}", option, path))
    return files


def validate_credentials(
    settings: Settings,
    *,
    api_hosts: Sequence[ApiHostSettings] = (),
    static_api_keys: Sequence[ApiKey] = (),
) -> list[Issue]:
    """Every problem of ``credentials:`` (and of the policy's ``api_hosts`` / ``api_keys``
    as start-up installs them), each at the line to fix (blocking: reads files)."""
    issues: list[Issue] = []
    # Files first, so that a missing one is said once, at the line that names it.
    for what, option, path in _input_files(settings):
        try:
            read_file(path, referenced_at=settings.position(option), label=f"{what} {path}")
        except ConfigError as error:
            issues.extend(error.issues)
    certificates = settings.credentials.client_certificates
    if certificates is not None:
        from gateway.credentials.client_cert import CertificateConfigError, check_patterns

        try:
            check_patterns(certificates.subjects, certificates.sans)
        except CertificateConfigError as error:
            option = ("credentials", "client_certificates")
            issues.append(
                Issue(settings.position(option), f"credentials.client_certificates: {error}")
            )
    if issues:
        return issues

    from gateway.credentials.authenticator import CredentialsConfigError, MachineAuthenticator

    try:
        # No storage: reads the CA bundle and key files, compiles, connects to nothing.
        machines = MachineAuthenticator.from_settings(settings)
        # As start-up builds the first policy snapshot (gateway/snapshot.py).
        machines.declare(api_hosts, static_api_keys)
    except CredentialsConfigError as error:
        issues.append(Issue(settings.position(error.option), str(error)))
    except ValueError as error:  # a key id declared twice
        issues.append(Issue(None, str(error)))
    return issues
