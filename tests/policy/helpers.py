"""Helpers for policy tests: build engines from YAML text and ask them for decisions."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gateway.config.yaml import ConfigError, load_text
from gateway.policy import Decision, PolicyEngine, Subject, Target, compile_documents, load_policy
from gateway.policy.normalize import PathMode

FIXTURES = Path(__file__).parent / "fixtures"


def policy_from_text(text: str, file: str = "policy.yml") -> PolicyEngine:
    """Compile one policy document given as (indented) YAML text."""
    return compile_documents([load_text(textwrap.dedent(text), file)])


def fixture_policy(*names: str) -> PolicyEngine:
    """Load policy files from tests/policy/fixtures, in order."""
    return load_policy([FIXTURES / name for name in names], environ={})


def issues_of(text: str, file: str = "policy.yml") -> list[str]:
    """The ``file:line:col: message`` lines a policy is refused with."""
    with pytest.raises(ConfigError) as refused:
        policy_from_text(text, file)
    return [str(issue) for issue in refused.value.issues]


def warnings_of(text: str, file: str = "policy.yml") -> list[str]:
    """The warnings of a policy that loads."""
    return [str(issue) for issue in policy_from_text(text, file).warnings]


def decide(
    engine: PolicyEngine,
    url: str,
    user: str | None = None,
    groups: tuple[str, ...] | list[str] = (),
    *,
    method: str = "GET",
    ip: str | None = None,
    credentials: tuple[str, ...] | list[str] = (),
    paths: PathMode = "reject",
) -> Decision:
    """Ask ``engine`` about one request."""
    subject = Subject(user, frozenset(groups), frozenset(credentials))
    return engine.decide(Target.from_url(url, method, ip, paths=paths), subject)


def outcome(decision: Decision) -> tuple[str, int | None, bool]:
    """(level, deciding rule position or None for the default policy, potential)."""
    position = decision.rule.position if decision.rule is not None else None
    return decision.level.policy, position, decision.potential
