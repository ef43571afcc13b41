"""Everything start-up checks before it opens a connection, in one function.

:func:`validate` is what ``gateway check`` runs and what :func:`gateway.app.build_runtime`
runs first, so "check passes" and "serve starts" cannot disagree about the files: the
policy, the users file or the LDAP settings, and the files the credentials point at. What
neither can know without the network (is Redis up? does the LDAP bind work?) is left to
start-up.

Loading the settings checked the shape and the values of ``gateway.yml``; the checks here
need the features' own code, so each feature owns its part and they run in this order:

1. the policy files (:class:`~gateway.policy.reload.PolicyWatcher`, loaded once and kept);
2. :func:`gateway.identity.validation.validate_identity`: the users file, or LDAP;
3. :func:`gateway.credentials.validation.validate_credentials`: CA bundle, key files,
   certificate patterns, and the policy's declared API hosts and keys.

Problems are collected from every part before anything is refused, each with the
``file:line:column`` to fix: a missing file points at the line of ``gateway.yml`` that names
it.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.settings import Settings
from gateway.config.yaml import ConfigError, Issue, read_file
from gateway.credentials.validation import validate_credentials
from gateway.identity.validation import validate_identity
from gateway.policy.reload import PolicyWatcher

__all__ = ["Validated", "validate"]


@dataclass(slots=True)
class Validated:
    """What validation loaded, for start-up to use rather than load again."""

    policy: PolicyWatcher
    """The policy, loaded and not yet polling."""
    warnings: list[Issue]
    """Warnings of the policy files (the configuration's own come from the settings loader)."""


def _validate_policy(settings: Settings) -> tuple[PolicyWatcher | None, list[Issue]]:
    """The loaded policy (None when it cannot load) and its problems."""
    issues: list[Issue] = []
    # Files first, so that a missing one is reported once, at the line that names it, and
    # not again (without a line) by the loader that would have read it.
    for index, path in enumerate(settings.policy.files):
        option = ("policy", "files", index)
        try:
            read_file(path, referenced_at=settings.position(option), label=f"policy file {path}")
        except ConfigError as error:
            issues.extend(error.issues)
    if issues:
        return None, issues
    try:
        policy = PolicyWatcher(settings.policy.files, interval=settings.policy.reload_interval)
    except ConfigError as error:
        return None, error.issues
    return policy, []


def validate(settings: Settings) -> Validated:
    """Load and check everything ``settings`` points at; raises :class:`ConfigError` with
    every issue found (and the policy's warnings) when start-up would fail.

    Blocking (reads files): run it in a worker thread from async code.
    """
    policy, issues = _validate_policy(settings)
    engine = policy.current if policy is not None else None
    issues.extend(validate_identity(settings))
    issues.extend(
        validate_credentials(  # with the policy's API hosts and keys, as start-up installs them
            settings,
            api_hosts=engine.api_hosts if engine is not None else (),
            static_api_keys=engine.static_api_keys if engine is not None else (),
        )
    )
    warnings = list(engine.warnings) if engine is not None else []
    if issues or policy is None:
        raise ConfigError(issues, warnings=warnings)
    return Validated(policy=policy, warnings=warnings)
