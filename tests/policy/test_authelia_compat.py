"""Authelia configuration files load unchanged and decide as Authelia does.

The expected outcomes follow Authelia's ``internal/authorization`` semantics: rules in order,
first full match wins, an anonymous subject matches ``subject`` conditions (and ``{user}``
placeholders) potentially, so ``GetRequiredLevel`` returns that rule with ``hasSubjects``.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.policy import PolicyEngine

from .helpers import decide, fixture_policy, outcome

ANON: dict[str, Any] = {}
JOHN = {"user": "john", "groups": ["dev", "admins"]}
JOHN_DEV = {"user": "john", "groups": ["dev"]}
BOB = {"user": "bob"}
FRED = {"user": "fred", "groups": ["moderators"]}
ALICE_DEV = {"user": "alice", "groups": ["dev"]}
CAROL_DEV = {"user": "carol", "groups": ["dev"]}


@pytest.fixture(scope="module")
def authelia() -> PolicyEngine:
    return fixture_policy("authelia_configuration.yml")


def case(url: str, who: dict[str, Any], expected: tuple[str, int | None, bool], **options: Any):
    return pytest.param(
        url, {**who, **options}, expected, id=f"{url} {who or 'anonymous'} {options}"
    )


@pytest.mark.parametrize(
    ("url", "request_options", "expected"),
    [
        case("https://public.example.com/", ANON, ("bypass", 1, False)),
        case("https://secure.example.com/", ANON, ("bypass", 2, False), method="OPTIONS"),
        # Named networks from the old-style access_control.networks list, a CIDR and an IP.
        case("https://secure.example.com/", ANON, ("one_factor", 3, False), ip="10.10.5.5"),
        case("https://secure.example.com/", ANON, ("one_factor", 3, False), ip="10.9.1.1"),
        case("https://secure.example.com/", ANON, ("one_factor", 3, False), ip="192.168.1.77"),
        case("https://secure.example.com/", ANON, ("one_factor", 3, False), ip="10.0.0.1"),
        case("https://secure.example.com/", ANON, ("two_factor", 4, False), ip="10.0.0.2"),
        case("https://private.example.com/", ANON, ("two_factor", 4, False)),
        case("https://singlefactor.example.com/", JOHN, ("one_factor", 5, False)),
        case("https://mx2.mail.example.com/", JOHN, ("deny", 6, False)),
        # Bob is not an admin: no subject rule matches, and bob.example.com is not this host.
        case("https://mx2.mail.example.com/", BOB, ("deny", None, False)),
        # Anonymous: the subject rule matches potentially; Authelia sends them to log in.
        case("https://mx2.mail.example.com/", ANON, ("deny", 6, True)),
        case("https://anything.example.com/", FRED, ("two_factor", 7, False)),
        # Rule 7 (admins on *.example.com) comes before the dev.example.com rules.
        case("https://dev.example.com/groups/dev/x", JOHN, ("two_factor", 7, False)),
        case("https://dev.example.com/groups/dev/x", ALICE_DEV, ("two_factor", 8, False)),
        case("https://dev.example.com/groups/dev/x", BOB, ("deny", None, False)),
        case("https://dev.example.com/users/john/x", JOHN_DEV, ("two_factor", 9, False)),
        case("https://dev.example.com/users/john/x", CAROL_DEV, ("deny", None, False)),
        case("https://bob.example.com/", BOB, ("bypass", 10, False)),
        case("https://random.example.com/", ANON, ("two_factor", 7, True)),
        case("https://example.com/", ANON, ("deny", None, False)),
    ],
)
def test_authelia_detailed_example(
    authelia: PolicyEngine,
    url: str,
    request_options: dict[str, Any],
    expected: tuple[str, int | None, bool],
) -> None:
    assert outcome(decide(authelia, url, **request_options)) == expected


def test_a_whole_authelia_configuration_loads_with_warnings_only(authelia: PolicyEngine) -> None:
    warnings = [str(warning) for warning in authelia.warnings]
    assert len(authelia.rules) == 10
    assert any(
        "ignoring top-level keys 'theme', 'server', 'log', 'authentication_backend', "
        "'session', 'storage', 'notifier'" in warning
        for warning in warnings
    ), warnings
    # Authelia accepts a bypass rule on {user}.example.com; we load it and warn.
    assert any("bypass rule depends on the user ({user}.example.com)" in w for w in warnings)


@pytest.fixture(scope="module")
def split() -> PolicyEngine:
    return fixture_policy("authelia_split_a.yml", "authelia_split_b.yml")


@pytest.mark.parametrize(
    ("url", "request_options", "expected"),
    [
        case("https://status.example.com/", ANON, ("bypass", 1, False)),
        case("https://nas.example.com/public/x", ANON, ("bypass", 2, False), ip="192.168.1.1"),
        case(
            "https://nas.example.com/public/x",
            ANON,
            ("one_factor", 3, False),
            ip="192.168.1.1",
            method="POST",
        ),
        case("https://nas.example.com/", ANON, ("one_factor", 4, True), ip="8.8.8.8"),
        case("https://nas.example.com/", BOB, ("two_factor", None, False), ip="8.8.8.8"),
        case(
            "https://nas.example.com/",
            {"user": "alice", "groups": ["family"]},
            ("one_factor", 4, False),
            ip="8.8.8.8",
        ),
    ],
)
def test_rules_from_several_files_are_concatenated(
    split: PolicyEngine,
    url: str,
    request_options: dict[str, Any],
    expected: tuple[str, int | None, bool],
) -> None:
    assert outcome(decide(split, url, **request_options)) == expected


def test_rule_sources_name_their_own_file(split: PolicyEngine) -> None:
    sources = [
        (rule.position, rule.source.file.rsplit("/", 1)[-1], rule.source.line)
        for rule in split.rules
    ]
    assert sources == [
        (1, "authelia_split_a.yml", 8),
        (2, "authelia_split_a.yml", 10),
        (3, "authelia_split_b.yml", 4),
        (4, "authelia_split_b.yml", 7),
    ]
    assert split.default_level.policy == "two_factor"
