"""Lint: warnings for rules that load but cannot do what their author meant. Never false."""

from __future__ import annotations

import pytest

from .helpers import FIXTURES, fixture_policy, warnings_of


def shadow(later: int, earlier: int, later_at: str, earlier_at: str) -> str:
    return (
        f"policy.yml:{later_at}: rule #{later} can never match: rule #{earlier} "
        f"(policy.yml:{earlier_at}) comes first and matches every request it would"
    )


def two_rules(earlier: str, later: str) -> str:
    """A policy with ``earlier`` (one_factor) then ``later`` (deny); lines split on newlines."""

    def rule(text: str, policy: str) -> str:
        first, *rest = [line.strip() for line in text.split("\n")]
        body = "".join(f"      {line}\n" for line in rest)
        return f"    - {first}\n{body}      policy: {policy}\n"

    return "access_control:\n  rules:\n" + rule(earlier, "one_factor") + rule(later, "deny")


def test_same_domain_without_conditions_shadows_the_later_rule() -> None:
    assert warnings_of(
        """
        access_control:
          rules:
            - domain: app.example.com
              policy: one_factor
            - domain: App.Example.com
              policy: two_factor
        """
    ) == [shadow(2, 1, "6:7", "4:7")]


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ('domain: "*.example.com"', "domain: app.example.com"),
        ('domain: "*.example.com"', 'domain: "*.app.example.com"'),
        ('domain: "*.example.com"', 'domain: "{user}.example.com"'),
        ('domain: "*.example.com"', 'domain: "{group}.apps.example.com"'),
        ("domain: [a.example.com, b.example.com]", "domain: [b.example.com, a.example.com]"),
        (
            "domain: app.example.com\n  methods: [GET, POST]",
            "domain: app.example.com\n  methods: [get]",
        ),
        (
            "domain: app.example.com\n  networks: [10.0.0.0/8]",
            "domain: app.example.com\n  networks: [10.1.0.0/16, 10.2.0.1]",
        ),
        (
            "domain: app.example.com\n  resources: ['^/a', '^/b']",
            "domain: app.example.com\n  resources: ['^/b']\n  methods: [GET]",
        ),
        (
            "domain: app.example.com\n  subject: group:admins",
            "domain: app.example.com\n  subject: [[group:admins, user:john]]",
        ),
        (
            "domain: app.example.com\n  query: [{key: a}]",
            "domain: app.example.com\n  query: [[{key: a}, {key: b, value: x}]]",
        ),
    ],
)
def test_earlier_rule_with_wider_conditions_shadows(earlier: str, later: str) -> None:
    warnings = warnings_of(two_rules(earlier, later))
    assert len(warnings) == 1, warnings
    assert "rule #2 can never match: rule #1" in warnings[0]


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        # The later rule matches requests the earlier one does not: no warning.
        ("domain: app.example.com", "domain: [app.example.com, other.example.com]"),
        ('domain: "*.example.com"', "domain: example.com"),
        ("domain: app.example.com\n  methods: [GET]", "domain: app.example.com"),
        (
            "domain: app.example.com\n  methods: [GET]",
            "domain: app.example.com\n  methods: [GET, POST]",
        ),
        (
            "domain: app.example.com\n  networks: [10.0.0.0/8]",
            "domain: app.example.com\n  networks: [11.0.0.0/8]",
        ),
        (
            "domain: app.example.com\n  resources: ['^/a']",
            "domain: app.example.com\n  resources: ['^/a/b']",
        ),
        (
            "domain: app.example.com\n  subject: group:admins",
            "domain: app.example.com\n  subject: group:dev",
        ),
        ("domain: app.example.com\n  subject: group:admins", "domain: app.example.com"),
        (
            "domain: app.example.com\n  query: [{key: a}]",
            "domain: app.example.com\n  query: [{key: b}]",
        ),
        # Placeholders and regexes depend on the user or on patterns: never claimed to cover.
        ('domain: "{user}.example.com"', "domain: john.example.com"),
        ("domain_regex: '.*'", "domain: app.example.com"),
        ("domain: app.example.com", "domain_regex: '^app\\.example\\.com$'"),
    ],
)
def test_no_warning_when_the_later_rule_can_still_match(earlier: str, later: str) -> None:
    assert warnings_of(two_rules(earlier, later)) == []


def test_ineffective_domains_and_impossible_subjects() -> None:
    assert warnings_of(
        """
        access_control:
          rules:
            - domain: "*example.com"
              policy: deny
            - domain: "*"
              policy: deny
            - domain: q.example.com
              subject: [[user:a, user:b]]
              policy: one_factor
            - domain: "{user}.example.com"
              policy: bypass
        """
    ) == [
        "policy.yml:4:15: domain '*example.com' matches no host: only a leading '*.' is a "
        "wildcard (did you mean '*.example.com'?)",
        "policy.yml:6:15: domain '*' matches no host: only a leading '*.' is a wildcard",
        "policy.yml:9:17: subject needs users a, b at once; a request has one user, so it "
        "never matches",
        "policy.yml:11:7: bypass rule depends on the user ({user}.example.com); before login "
        "every request matches it potentially and passes without logging in",
    ]


def test_shipped_example_and_fixtures_have_no_shadowed_rules() -> None:
    assert fixture_policy("fields.yml").warnings == ()
    example = FIXTURES.parent.parent.parent / "policies" / "example.yml"
    from gateway.policy import load_policy

    assert load_policy([example], environ={}).warnings == ()


def test_many_host_rules_and_a_catch_all() -> None:
    hosts = "".join(
        f"    - domain: app{i}.example.com\n      policy: one_factor\n" for i in range(600)
    )
    catch_all = '    - domain: "*.example.com"\n      policy: deny\n'
    # Catch-all last: every rule is reachable.
    assert warnings_of("access_control:\n  rules:\n" + hosts + catch_all) == []
    # Catch-all first: every host rule after it is dead, and each one is reported.
    warnings = warnings_of("access_control:\n  rules:\n" + catch_all + hosts)
    assert len(warnings) == 600
    assert all("comes first and matches every request it would" in w for w in warnings)
