"""``gateway policy test``: ask the policy what it decides, for one request or a JSONL file.

A policy repository can keep its expectations next to its rules and check them in CI::

    gateway policy test --policy policy.yml --requests expectations.jsonl

where each line is ``{"url": ..., "method": ..., "user": ..., "groups": [...], "ip": ...,
"expect": "two_factor"}``. Exit status: 0 when every line was decided (and matched its
expectation), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from gateway.config.suggest import did_you_mean
from gateway.config.yaml import ConfigError
from gateway.policy.engine import PolicyEngine
from gateway.policy.loader import load_policy
from gateway.policy.model import POLICY_NAMES, BadTarget, Decision, Level, Subject, Target
from gateway.policy.normalize import PATH_MODES, PathMode

__all__ = ["add_arguments", "run"]

_LINE_FIELDS = ("url", "method", "user", "groups", "credentials", "ip", "expect")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``policy`` command's sub-commands (``test``) to ``parser``."""
    commands = parser.add_subparsers(dest="policy_command", metavar="SUBCOMMAND", required=True)
    test = commands.add_parser(
        "test",
        help="print the level the policy requires for a request",
        description=(
            "Print the level the policy requires for a request, the rule that decided it "
            "and whether it matched only potentially (anonymous request, rule about users)."
        ),
    )
    source = test.add_argument_group("policy (one of)")
    source.add_argument(
        "--config",
        metavar="FILE",
        type=Path,
        help="gateway configuration; its policy.files are used",
    )
    source.add_argument(
        "--policy",
        metavar="FILE",
        type=Path,
        action="append",
        default=[],
        help="a policy file (repeat for several; rules are concatenated in order)",
    )
    request = test.add_argument_group("one request")
    request.add_argument("--url", help="the requested URL, e.g. https://app.example.com/path")
    request.add_argument("--method", default="GET", help="request method (default GET)")
    request.add_argument("--user", help="the logged-in user (default: anonymous)")
    request.add_argument(
        "--group", action="append", default=[], metavar="GROUP", help="a group of the user"
    )
    request.add_argument(
        "--credential",
        action="append",
        default=[],
        metavar="SUBJECT",
        help="a credential subject such as key:ci-runner or client:reporting",
    )
    request.add_argument("--ip", help="the client IP address")
    test.add_argument(
        "--paths",
        choices=PATH_MODES,
        help=(
            "what to do with ambiguous raw paths (dot segments, encoded '/'): reject them "
            "as the server does by default, or judge them cleaned (default: server.paths "
            "of --config, else reject)"
        ),
    )
    test.add_argument(
        "--requests",
        metavar="FILE",
        help="JSON lines, one request per line ('-' for standard input)",
    )
    test.add_argument("--json", action="store_true", help="print the decision as JSON")


def run(args: argparse.Namespace) -> int:
    """Run the ``policy`` command; returns the exit status."""
    engine = _load(args)
    if engine is None:
        return 1
    mode: PathMode = args.paths or "reject"
    if args.requests is not None:
        if args.url is not None:
            print("error: give --url or --requests, not both", file=sys.stderr)
            return 2
        if args.requests == "-":
            return _run_lines(engine, sys.stdin, sys.stdout, mode)
        try:
            text = Path(args.requests).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or str(error)
            print(f"error: cannot read {args.requests}: {reason}", file=sys.stderr)
            return 1
        return _run_lines(engine, text.splitlines(), sys.stdout, mode)
    if args.url is None:
        print("error: give --url URL (or --requests FILE)", file=sys.stderr)
        return 2
    try:
        target = Target.from_url(args.url, args.method, args.ip, paths=mode)
    except BadTarget as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    subject = Subject.of(args.user, args.group, args.credential)
    decision = engine.decide(target, subject)
    if args.json:
        print(json.dumps(decision.as_dict()))
    else:
        print(_describe(decision))
    return 0


def _load(args: argparse.Namespace) -> PolicyEngine | None:
    paths: list[Path] = []
    if args.config is not None:
        if args.policy:
            print("error: give --config or --policy, not both", file=sys.stderr)
            return None
        try:
            from gateway.config.settings import load_settings
        except ImportError as error:  # pragma: no cover - settings ships with the gateway
            print(f"error: cannot read --config: {error}", file=sys.stderr)
            return None
        try:
            settings = load_settings(args.config)
        except ConfigError as error:
            print(f"error: {args.config} is not valid:\n{error}", file=sys.stderr)
            return None
        paths = [Path(path) for path in settings.policy.files]
        if args.paths is None:
            args.paths = settings.server.paths
    else:
        paths = list(args.policy)
    if not paths:
        print("error: give --config FILE or --policy FILE", file=sys.stderr)
        return None
    try:
        engine = load_policy(paths)
    except ConfigError as error:
        print(f"error: the policy is not valid:\n{error}", file=sys.stderr)
        return None
    for warning in engine.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return engine


def _describe(decision: Decision) -> str:
    if decision.rule is None:
        decided_by = "default policy"
    else:
        decided_by = f"rule #{decision.rule.position} at {decision.rule.source}"
    potential = "yes (anonymous request; checked again after login)" if decision.potential else "no"
    return f"level:     {decision.level.policy}\nrule:      {decided_by}\npotential: {potential}"


def _run_lines(
    engine: PolicyEngine, lines: Iterable[str], out: TextIO, mode: PathMode = "reject"
) -> int:
    failed = 0
    total = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        total += 1
        try:
            result = _decide_line(engine, line, mode)
        except _BadLine as error:
            failed += 1
            result = {"line": number, "error": str(error)}
        else:
            result = {"line": number, **result}
            if result.get("ok") is False:
                failed += 1
        out.write(json.dumps(result) + "\n")
    if failed:
        print(f"{failed} of {total} requests failed", file=sys.stderr)
    return 1 if failed else 0


class _BadLine(ValueError):
    pass


def _decide_line(engine: PolicyEngine, line: str, mode: PathMode = "reject") -> dict[str, Any]:
    try:
        request = json.loads(line)
    except json.JSONDecodeError as error:
        raise _BadLine(f"not valid JSON: {error.msg} at column {error.colno}") from None
    if not isinstance(request, dict):
        raise _BadLine('a request must be a JSON object such as {"url": "https://..."}')
    for key in request:
        if key not in _LINE_FIELDS:
            raise _BadLine(f"unknown field '{key}'{did_you_mean(key, _LINE_FIELDS)}")
    url = _text(request, "url", required=True)
    method = _text(request, "method") or "GET"
    user = _text(request, "user")
    ip = _text(request, "ip")
    groups = _texts(request, "groups")
    credentials = _texts(request, "credentials")
    expect = _text(request, "expect")
    expected: Level | None = None
    if expect is not None:
        try:
            expected = Level.from_policy(expect)
        except ValueError:
            raise _BadLine(
                f"'expect' must be one of {', '.join(POLICY_NAMES)} (got '{expect}')"
            ) from None
    assert url is not None
    try:
        target = Target.from_url(url, method, ip, paths=mode)
    except BadTarget as error:
        raise _BadLine(str(error)) from None
    decision = engine.decide(target, Subject.of(user, groups, credentials))
    result: dict[str, Any] = {"url": url, "method": target.method}
    if user is not None:
        result["user"] = user
    result.update(decision.as_dict())
    if expected is not None:
        result["expect"] = expected.policy
        result["ok"] = decision.level is expected
    return result


def _text(request: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = request.get(key)
    if value is None:
        if required:
            raise _BadLine(f"'{key}' is required")
        return None
    if not isinstance(value, str):
        raise _BadLine(f"'{key}' must be a string")
    return value


def _texts(request: dict[str, Any], key: str) -> list[str]:
    value = request.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _BadLine(f"'{key}' must be a list of strings")
    return value
