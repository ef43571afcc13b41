"""``gateway check``: validate the configuration and everything it points at, then exit."""

from __future__ import annotations

import argparse
import sys

from gateway.policy import load_policy
from gateway.settings import load_settings_with_warnings
from gateway.yaml_source import ConfigError, Issue

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        required=True,
        metavar="FILE",
        help="the gateway configuration (gateway.yml)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="treat warnings as errors (exit 1 when any is printed)",
    )


def _print_issues(kind: str, issues: list[Issue]) -> None:
    for issue in issues:
        print(f"{kind}: {issue}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Exit 0 when the configuration, policies and users file are valid, 1 otherwise."""
    warnings: list[Issue] = []
    try:
        settings, warnings = load_settings_with_warnings(args.config)
        engine = load_policy(settings.policy.files)
        warnings.extend(engine.warnings)
        if settings.authentication.backend == "file" and settings.authentication.file is not None:
            from gateway.identity.users_file import load_users

            load_users(settings.authentication.file.path)
        # Reads CA bundles and key files named under credentials (no network, no storage).
        from gateway.credentials.authenticator import CredentialsConfigError, MachineAuthenticator

        try:
            MachineAuthenticator.from_settings(settings)
        except CredentialsConfigError as error:
            raise ConfigError([Issue(None, f"{args.config}: {error}")]) from None
    except ConfigError as error:
        _print_issues("warning", warnings or error.warnings)
        _print_issues("error", error.issues)
        print(f"{args.config}: {len(error.issues)} error(s); the gateway would refuse to start.")
        return 1
    _print_issues("warning", warnings)
    rules = len(engine.rules)
    print(
        f"{args.config}: OK ({rules} rule{'s' if rules != 1 else ''} from "
        f"{len(settings.policy.files)} policy file(s), default policy "
        f"{engine.default_level.name.lower()}, {len(warnings)} warning(s))"
    )
    return 1 if args.strict and warnings else 0
