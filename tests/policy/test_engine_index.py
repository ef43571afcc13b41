"""The host index and its cache must give exactly what a plain first-match scan gives."""

from __future__ import annotations

import random

import pytest

from gateway.policy import Decision, Level, PolicyEngine, Subject, Target
from gateway.policy.rule import Rule

from .helpers import policy_from_text

HOSTS = [
    "example.com",
    "app.example.com",
    "a.app.example.com",
    "john.example.com",
    "dev.example.com",
    "x.dev.example.com",
    "api.internal.example.com",
    "other.org",
    "www.other.org",
    "localhost",
]
DOMAINS = [
    "example.com",
    "app.example.com",
    "*.example.com",
    "*.app.example.com",
    "{user}.example.com",
    "{group}.example.com",
    "*.internal.example.com",
    "other.org",
    "*.other.org",
    "localhost",
]
REGEXES = [r"^(?P<User>\w+)\.example\.com$", r"^(?P<Group>\w+)\.example\.com$", r"\.org$", "app"]
SUBJECTS = [
    Subject(),
    Subject("john", frozenset({"dev"})),
    Subject("bob", frozenset({"admins"})),
    Subject(credentials=frozenset({"key:ci"})),
]


def random_policy(rng: random.Random, size: int) -> str:
    lines = ["access_control:", "  default_policy: deny", "  rules:"]
    for _ in range(size):
        policy = rng.choice(["one_factor", "two_factor", "deny"])
        if rng.random() < 0.2:
            lines.append(f"    - domain_regex: '{rng.choice(REGEXES)}'")
        else:
            chosen = rng.sample(DOMAINS, rng.randint(1, 2))
            lines.append("    - domain: [" + ", ".join(f'"{d}"' for d in chosen) + "]")
        if rng.random() < 0.3:
            lines.append(f"      methods: [{rng.choice(['GET', 'POST'])}]")
        if rng.random() < 0.3:
            lines.append(f"      subject: {rng.choice(['user:john', 'group:admins', 'key:ci'])}")
        if rng.random() < 0.2:
            lines.append(f"      resources: ['{rng.choice(['^/admin', 'x'])}']")
        lines.append(f"      policy: {policy}")
    return "\n".join(lines) + "\n"


def first_match(rules: tuple[Rule, ...], target: Target, subject: Subject) -> int | None:
    for rule in rules:
        if rule.matches(target, subject):
            return rule.position
    return None


def position(decision: Decision) -> int | None:
    return decision.rule.position if decision.rule else None


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("cache_size", [4096, 3, 0])
def test_index_agrees_with_a_linear_scan(seed: int, cache_size: int) -> None:
    rng = random.Random(seed)
    compiled = policy_from_text(random_policy(rng, rng.randint(1, 25)))
    engine = PolicyEngine(compiled.rules, compiled.default_level, cache_size=cache_size)
    for _ in range(300):
        target = Target.from_url(
            f"https://{rng.choice(HOSTS)}{rng.choice(['/', '/admin', '/x'])}",
            rng.choice(["GET", "POST"]),
        )
        subject = rng.choice(SUBJECTS)
        decision = engine.decide(target, subject)
        expected = first_match(engine.rules, target, subject)
        assert position(decision) == expected, (target, subject)
        if expected is not None:
            rule = engine.rules[expected - 1]
            assert decision.level is rule.level
            assert decision.potential is (subject.is_anonymous and rule.has_subjects)


def test_host_rules_lists_candidates_in_order() -> None:
    engine = policy_from_text(
        """
        access_control:
          rules:
            - domain: other.example.com
              policy: deny
            - domain_regex: 'never'
              policy: deny
            - domain: app.example.com
              policy: one_factor
            - domain: "*.example.com"
              policy: two_factor
        """
    )
    assert [ref.position for ref in engine.host_rules("app.example.com")] == [2, 3, 4]
    assert [ref.position for ref in engine.host_rules("example.com")] == [2]


def test_cache_is_bounded() -> None:
    compiled = policy_from_text(
        """
        access_control:
          rules:
            - domain: "*.example.com"
              policy: one_factor
        """
    )
    engine = PolicyEngine(compiled.rules, compiled.default_level, cache_size=8)
    for i in range(100):
        decision = engine.decide(Target.from_url(f"https://h{i}.example.com/"), Subject())
        assert decision.level.policy == "one_factor"
    assert len(engine._cache) == 8


def test_empty_condition_sets_match_nothing_rather_than_everything() -> None:
    from gateway.config.yaml import Position
    from gateway.net import NetworkSet
    from gateway.policy.matchers import DomainPattern

    where = Position("memory", 1, 1)
    domain = DomainPattern.parse("app.example.com")
    rules = [
        Rule(
            position=1, source=where, level=Level.BYPASS, domains=[domain], networks=NetworkSet([])
        ),
        Rule(position=2, source=where, level=Level.BYPASS, domains=[domain], methods=frozenset()),
    ]
    engine = PolicyEngine(rules, Level.DENY)
    target = Target.from_url("https://app.example.com/", ip="10.0.0.1")
    assert engine.decide(target, Subject()).rule is None
