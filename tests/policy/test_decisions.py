"""Table-driven decisions: one row per request against tests/policy/fixtures/fields.yml.

Each row is (url, who, options) → (level, deciding rule or None for the default policy,
potential match). Rule numbers are written next to each rule in the fixture.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.policy import PolicyEngine

from .helpers import decide, fixture_policy, outcome

ANON: dict[str, Any] = {}
JOHN = {"user": "john", "groups": ["dev", "admins"]}
BOB = {"user": "bob"}


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return fixture_policy("fields.yml")


def row(url: str, who: dict[str, Any], expected: tuple[str, int | None, bool], **options: Any):
    return pytest.param(
        url, {**who, **options}, expected, id=f"{url} {who or 'anonymous'} {options}"
    )


DOMAIN_ROWS = [
    row("https://exact.example.com/", ANON, ("one_factor", 1, False)),
    row("https://EXACT.Example.COM/", ANON, ("one_factor", 1, False)),
    row("https://exact.example.com.:8443/x", ANON, ("one_factor", 1, False)),
    row("https://sub.exact.example.com/", ANON, ("deny", None, False)),
    row("https://multi-a.example.com/", ANON, ("two_factor", 2, False)),
    row("https://multi-b.example.com/", ANON, ("two_factor", 2, False)),
    # *.wild.example.com: any depth below, never the apex, only at a dot.
    row("https://a.wild.example.com/", ANON, ("one_factor", 3, False)),
    row("https://a.b.c.wild.example.com/", ANON, ("one_factor", 3, False)),
    row("https://wild.example.com/", ANON, ("deny", None, False)),
    row("https://notwild.example.com/", ANON, ("deny", None, False)),
]

PLACEHOLDER_ROWS = [
    # {user}.users.example.com: exactly the user's own host once logged in ...
    row("https://john.users.example.com/", JOHN, ("one_factor", 4, False)),
    row("https://bob.users.example.com/", BOB, ("one_factor", 4, False)),
    row("https://john.users.example.com/", BOB, ("deny", None, False)),
    # ... and potentially any host below for an anonymous request (it must log in first).
    row("https://john.users.example.com/", ANON, ("one_factor", 4, True)),
    row("https://a.b.users.example.com/", ANON, ("one_factor", 4, True)),
    row("https://users.example.com/", ANON, ("deny", None, False)),
    # {group}.groups.example.com: the first label is one of the user's groups (any case).
    row(
        "https://dev.groups.example.com/",
        {"user": "bob", "groups": ["dev"]},
        ("two_factor", 5, False),
    ),
    row(
        "https://dev.groups.example.com/",
        {"user": "bob", "groups": ["DEV"]},
        ("two_factor", 5, False),
    ),
    row(
        "https://dev.groups.example.com/", {"user": "bob", "groups": ["ops"]}, ("deny", None, False)
    ),
    row(
        "https://x.dev.groups.example.com/",
        {"user": "bob", "groups": ["dev"]},
        ("deny", None, False),
    ),
    row("https://dev.groups.example.com/", ANON, ("two_factor", 5, True)),
    row("https://x.dev.groups.example.com/", ANON, ("two_factor", 5, True)),
    # domain_regex named groups compare ignoring case, like Authelia's EqualFold.
    row("https://u-john.regex.example.com/", JOHN, ("one_factor", 6, False)),
    row("https://u-john.regex.example.com/", {"user": "JOHN"}, ("one_factor", 6, False)),
    row("https://u-john.regex.example.com/", BOB, ("deny", None, False)),
    row("https://u-john.regex.example.com/", ANON, ("one_factor", 6, True)),
    row(
        "https://g-admins.regex.example.com/",
        {"user": "x", "groups": ["Admins"]},
        ("two_factor", 7, False),
    ),
    row(
        "https://g-admins.regex.example.com/",
        {"user": "x", "groups": ["users"]},
        ("deny", None, False),
    ),
    row("https://g-admins.regex.example.com/", ANON, ("two_factor", 7, True)),
    # A regex without anchors is searched anywhere in the host.
    row("https://plain.regex.example.com/", ANON, ("bypass", 8, False)),
    row("https://x.plain.regex.example.com/", ANON, ("bypass", 8, False)),
    row("https://PLAIN.Regex.example.com/", BOB, ("bypass", 8, False)),
]

RESOURCE_ROWS = [
    row("https://res.example.com/admin", ANON, ("two_factor", 9, False)),
    row("https://res.example.com/admin/users", ANON, ("two_factor", 9, False)),
    row("https://res.example.com/administrator", ANON, ("one_factor", 11, False)),
    # Normalisation: none of these can dodge ^/admin.
    row("https://res.example.com/%61dmin", ANON, ("two_factor", 9, False)),
    row("https://res.example.com//admin", ANON, ("two_factor", 9, False)),
    # With server.paths: normalize, ambiguous paths are judged cleaned (the default refuses
    # them: tests/policy/test_target.py).
    row("https://res.example.com/a/../admin", ANON, ("two_factor", 9, False), paths="normalize"),
    row("https://res.example.com/./admin", ANON, ("two_factor", 9, False), paths="normalize"),
    row(
        "https://res.example.com/public/../../admin",
        ANON,
        ("two_factor", 9, False),
        paths="normalize",
    ),
    row(
        "https://res.example.com/x/%2E%2E/admin", ANON, ("two_factor", 9, False), paths="normalize"
    ),
    row("https://res.example.com/admin%2Fsub", ANON, ("two_factor", 9, False), paths="normalize"),
    # Unanchored patterns are searched in path and query alike (as in Authelia >= 4.27).
    row("https://res.example.com/x/secret/y", ANON, ("two_factor", 9, False)),
    row("https://res.example.com/docs?q=secret", ANON, ("two_factor", 9, False)),
    # "?" and the raw query are appended only when the query is not empty.
    row("https://res.example.com/api?x=1", ANON, ("bypass", 10, False)),
    row("https://res.example.com/api", ANON, ("one_factor", 11, False)),
    row("https://res.example.com/api?", ANON, ("one_factor", 11, False)),
]

METHOD_ROWS = [
    row("https://methods.example.com/", ANON, ("one_factor", 12, False), method="GET"),
    row("https://methods.example.com/", ANON, ("one_factor", 12, False), method="HEAD"),
    row("https://methods.example.com/", ANON, ("deny", 13, False), method="POST"),
    row("https://methods.example.com/", ANON, ("deny", 13, False), method="OPTIONS"),
]

NETWORK_ROWS = [
    row("https://net.example.com/", BOB, ("one_factor", 14, False), ip="10.1.2.3"),
    row("https://net.example.com/", BOB, ("one_factor", 14, False), ip="192.168.1.5"),
    row("https://net.example.com/", BOB, ("two_factor", 15, False), ip="192.168.1.6"),
    row("https://net.example.com/", BOB, ("one_factor", 14, False), ip="2001:db8::1"),
    row("https://net.example.com/", BOB, ("two_factor", 15, False), ip="2001:db9::1"),
    row("https://net.example.com/", BOB, ("one_factor", 14, False), ip="172.20.0.1"),  # office
    row("https://net.example.com/", BOB, ("one_factor", 14, False), ip="fd00:10::5"),  # office
    row("https://net.example.com/", BOB, ("one_factor", 14, False), ip="::ffff:10.0.0.1"),
    row("https://net.example.com/", BOB, ("two_factor", 15, False), ip="11.0.0.1"),
    row("https://net.example.com/", BOB, ("two_factor", 15, False)),  # no client address
]

SUBJECT_ROWS = [
    row("https://subj.example.com/", JOHN, ("one_factor", 16, False)),
    row("https://subj.example.com/", {"user": "John"}, ("deny", 17, False)),  # exact, like Authelia
    row("https://subj.example.com/", {"user": "bob", "groups": ["dev"]}, ("deny", 17, False)),
    row(
        "https://subj.example.com/",
        {"user": "bob", "groups": ["dev", "ops"]},
        ("one_factor", 16, False),
    ),
    row(
        "https://subj.example.com/", {"user": "bob", "groups": ["DEV", "OPS"]}, ("deny", 17, False)
    ),
    row("https://subj.example.com/", {"credentials": ["key:ci-runner"]}, ("one_factor", 16, False)),
    row("https://subj.example.com/", {"credentials": ["key:other"]}, ("deny", 17, False)),
    row(
        "https://subj.example.com/",
        {"credentials": ["oauth2:client:reporting"]},
        ("one_factor", 16, False),
    ),
    row("https://subj.example.com/", ANON, ("one_factor", 16, True)),
]

QUERY_ROWS = [
    row("https://query.example.com/?mode=edit&token=1", ANON, ("two_factor", 18, False)),
    row("https://query.example.com/?mode=%65dit&token=1", ANON, ("two_factor", 18, False)),
    row("https://query.example.com/?mode=edit&token", ANON, ("two_factor", 18, False)),
    row("https://query.example.com/?mode=edit", ANON, ("one_factor", 19, False)),
    row("https://query.example.com/?mode=view&token=1", ANON, ("one_factor", 19, False)),
    row("https://query.example.com/?page=about&id=42&lang=en", ANON, ("two_factor", 18, False)),
    row("https://query.example.com/?page=home&id=42", ANON, ("one_factor", 19, False)),
    # An absent key compares as "": not equal to "home", not matching ^x.
    row("https://query.example.com/?id=42", ANON, ("two_factor", 18, False)),
    row("https://query.example.com/?page=a&id=42&debug=1", ANON, ("one_factor", 19, False)),
    row("https://query.example.com/?page=a&id=4x2", ANON, ("one_factor", 19, False)),
    row("https://query.example.com/?page=a&id=42&lang=xx", ANON, ("one_factor", 19, False)),
    # Only the first value of a repeated key counts, like Go's Query().Get.
    row("https://query.example.com/?id=42&id=abc", ANON, ("two_factor", 18, False)),
    row("https://query.example.com/?id=abc&id=42", ANON, ("one_factor", 19, False)),
    row("https://query.example.com/", ANON, ("one_factor", 19, False)),
]

DEFAULT_ROWS = [
    row("https://unknown.example.org/", ANON, ("deny", None, False)),
    row("https://unknown.example.org/", JOHN, ("deny", None, False)),
]


@pytest.mark.parametrize(
    ("url", "request_options", "expected"),
    DOMAIN_ROWS
    + PLACEHOLDER_ROWS
    + RESOURCE_ROWS
    + METHOD_ROWS
    + NETWORK_ROWS
    + SUBJECT_ROWS
    + QUERY_ROWS
    + DEFAULT_ROWS,
)
def test_decision(
    engine: PolicyEngine,
    url: str,
    request_options: dict[str, Any],
    expected: tuple[str, int | None, bool],
) -> None:
    assert outcome(decide(engine, url, **request_options)) == expected


def test_first_match_wins_over_later_more_specific_rule() -> None:
    from .helpers import policy_from_text

    engine = policy_from_text(
        """
        access_control:
          rules:
            - domain: "*.example.com"
              policy: one_factor
            - domain: app.example.com
              policy: two_factor
        """
    )
    assert outcome(decide(engine, "https://app.example.com/")) == ("one_factor", 1, False)


def test_default_policy_applies_when_no_rule_matches() -> None:
    from .helpers import policy_from_text

    engine = policy_from_text(
        """
        access_control:
          default_policy: two_factor
          rules:
            - domain: public.example.com
              policy: bypass
        """
    )
    decision = decide(engine, "https://other.example.com/")
    assert outcome(decision) == ("two_factor", None, False)
    assert engine.default_level.policy == "two_factor"


@pytest.mark.parametrize("default", ["", "\n  default_policy:", "\n  default_policy: null"])
def test_default_policy_is_deny_when_absent_or_empty(default: str) -> None:
    from .helpers import policy_from_text

    engine = policy_from_text(
        f"access_control:{default}\n"
        "  rules:\n    - domain: public.example.com\n      policy: bypass\n"
    )
    assert outcome(decide(engine, "https://other.example.com/")) == ("deny", None, False)


def test_decision_names_the_file_and_line_of_the_rule() -> None:
    engine = fixture_policy("fields.yml")
    decision = decide(engine, "https://res.example.com/admin")
    assert decision.rule is not None
    assert str(decision.rule.source).endswith("fields.yml:26:7")
    assert decision.as_dict() == {
        "level": "two_factor",
        "rule": {"position": 9, "source": str(decision.rule.source)},
        "potential": False,
    }


def test_query_shorthands_single_condition_and_flat_list_of_alternatives() -> None:
    from .helpers import policy_from_text

    engine = policy_from_text(
        """
        access_control:
          rules:
            - domain: one.example.com
              query: {key: a, value: x}
              policy: two_factor
            - domain: any.example.com
              query: [{key: a}, {key: b}]
              policy: two_factor
            - domain: [one.example.com, any.example.com]
              policy: one_factor
        """
    )
    assert decide(engine, "https://one.example.com/?a=x").level.policy == "two_factor"
    assert decide(engine, "https://one.example.com/?a=y").level.policy == "one_factor"
    assert decide(engine, "https://any.example.com/?a").level.policy == "two_factor"
    assert decide(engine, "https://any.example.com/?b=1").level.policy == "two_factor"
    assert decide(engine, "https://any.example.com/?c=1").level.policy == "one_factor"
