"""Everything start-up checks before it opens a connection, in one function.

:func:`validate` is what ``gateway check`` runs and what :func:`gateway.app.build_runtime`
runs first, so "check passes" and "serve starts" cannot disagree about the files: the
policy, the users file or the LDAP settings, and the files the credentials point at. What
neither can know without the network (is Redis up? does the LDAP bind work?) is left to
start-up.

Problems are collected from every part before anything is refused, each with the
``file:line:column`` to fix: a missing file points at the line of ``gateway.yml`` that names
it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.config.yaml import ConfigError, Issue, YamlPath, read_file
from gateway.policy.reload import PolicyWatcher
from gateway.settings import Settings

__all__ = ["Validated", "validate"]


@dataclass(slots=True)
class Validated:
    """What validation loaded, for start-up to use rather than load again."""

    policy: PolicyWatcher
    """The policy, loaded and not yet polling."""
    warnings: list[Issue]
    """Warnings of the policy files (the configuration's own come from the settings loader)."""


def _input_files(settings: Settings) -> list[tuple[str, YamlPath, Path]]:
    """(what, option, path) of every file start-up reads, as configured."""
    files: list[tuple[str, YamlPath, Path]] = [
        ("policy file", ("policy", "files", index), path)
        for index, path in enumerate(settings.policy.files)
    ]
    authentication = settings.authentication
    if authentication.backend == "file" and authentication.file is not None:
        files.append(("users file", ("authentication", "file", "path"), authentication.file.path))
    ldap = authentication.ldap if authentication.backend == "ldap" else None
    if ldap is not None and ldap.ca_certificate is not None and not ldap.tls_skip_verify:
        option: YamlPath = ("authentication", "ldap", "ca_certificate")
        files.append(("LDAP CA certificate", option, ldap.ca_certificate))
    credentials = settings.credentials
    if credentials.client_certificates is not None:
        option = ("credentials", "client_certificates", "ca_bundle")
        files.append(("client CA bundle", option, credentials.client_certificates.ca_bundle))
    for index, issuer in enumerate(credentials.issuers):
        for key_index, path in enumerate(issuer.public_key_files):
            option = ("credentials", "issuers", index, "public_key_files", key_index)
            files.append((f"public key file of issuer {issuer.name}", option, path))
    return files


def validate(settings: Settings) -> Validated:
    """Load and check everything ``settings`` points at; raises :class:`ConfigError` with
    every issue found (and the policy's warnings) when start-up would fail.

    Blocking (reads files): run it in a worker thread from async code.
    """
    issues: list[Issue] = []
    warnings: list[Issue] = []
    unreadable: set[YamlPath] = set()
    # Files first, so that a missing one is reported once, at the line that names it, and
    # not again (without a line) by the loader that would have read it.
    for what, option, path in _input_files(settings):
        try:
            read_file(path, referenced_at=settings.position(option), label=f"{what} {path}")
        except ConfigError as error:
            issues.extend(error.issues)
            unreadable.add(option[:2])

    policy: PolicyWatcher | None = None
    if ("policy", "files") not in unreadable:
        try:
            policy = PolicyWatcher(settings.policy.files, interval=settings.policy.reload_interval)
        except ConfigError as error:
            issues.extend(error.issues)
        else:
            warnings.extend(policy.current.warnings)

    authentication = settings.authentication
    if authentication.backend == "file" and authentication.file is not None:
        if ("authentication", "file") not in unreadable:
            from gateway.identity.users_file import load_users

            try:
                load_users(authentication.file.path)
            except ConfigError as error:
                issues.extend(error.issues)
    elif authentication.ldap is not None:
        from gateway.identity.ldap import LdapConfig, read_ca_certificate

        try:
            config = LdapConfig.from_settings(
                authentication.ldap,
                where=lambda option: settings.position(("authentication", "ldap", option)),
            )
            if ("authentication", "ldap") not in unreadable:
                read_ca_certificate(
                    config,
                    referenced_at=settings.position(("authentication", "ldap", "ca_certificate")),
                )
        except ConfigError as error:
            issues.extend(error.issues)

    if not any(option[0] == "credentials" for option in unreadable):
        from gateway.credentials.authenticator import CredentialsConfigError, MachineAuthenticator

        try:
            # No storage: reads the CA bundle and key files, compiles, connects to nothing.
            machines = MachineAuthenticator.from_settings(settings)
            if policy is not None:  # as start-up installs them
                machines.set_policy_hosts(policy.current.api_hosts)
                machines.set_static_keys(policy.current.static_api_keys)
        except CredentialsConfigError as error:
            issues.append(Issue(settings.position(error.option), str(error)))

    if issues or policy is None:
        raise ConfigError(issues, warnings=warnings)
    return Validated(policy=policy, warnings=warnings)
