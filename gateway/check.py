"""``gateway check``: validate the configuration and everything it points at, then exit."""

from __future__ import annotations

import argparse
import sys

from gateway.config.settings import load_settings_with_warnings
from gateway.config.yaml import ConfigError, Issue
from gateway.validation import validate

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
    """Exit 0 when the configuration and everything it points at is valid, 1 otherwise.

    Runs :func:`gateway.validation.validate`, exactly what start-up runs before it opens
    any connection.
    """
    warnings: list[Issue] = []
    try:
        settings, warnings = load_settings_with_warnings(args.config)
        validated = validate(settings)
    except ConfigError as error:
        _print_issues("warning", [*warnings, *error.warnings])
        _print_issues("error", error.issues)
        print(f"{args.config}: {len(error.issues)} error(s); the gateway would refuse to start.")
        return 1
    warnings.extend(validated.warnings)
    _print_issues("warning", warnings)
    engine = validated.policy.current
    rules = len(engine.rules)
    print(
        f"{args.config}: OK ({rules} rule{'s' if rules != 1 else ''} from "
        f"{len(settings.policy.files)} policy file(s), default policy "
        f"{engine.default_level.name.lower()}, {len(warnings)} warning(s))"
    )
    return 1 if args.strict and warnings else 0
