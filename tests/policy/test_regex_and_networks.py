"""Go (Authelia) regex meaning kept by RE2, and network ranges (more regex: test_regex.py)."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.net import NetworkSet, parse_network
from gateway.policy.regex import compile_pattern

from .helpers import decide, policy_from_text


def test_dollar_means_end_of_text_as_in_go() -> None:
    pattern = compile_pattern("^/admin$")
    assert pattern.search("/admin")
    assert not pattern.search("/admin\n")  # Python's '$' would match here; RE2's, like Go's, not


def test_a_trailing_newline_does_not_satisfy_an_anchored_resource() -> None:
    engine = policy_from_text(
        """
        access_control:
          rules:
            - domain: app.example.com
              resources: ['^/public$']
              policy: bypass
            - domain: app.example.com
              policy: two_factor
        """
    )
    assert decide(engine, "https://app.example.com/public").level.policy == "bypass"
    # (The default server.paths refuses an encoded newline before any rule sees it.)
    target = "https://app.example.com/public%0A"
    assert decide(engine, target, paths="normalize").level.policy == "two_factor"


def test_invalid_pattern_message() -> None:
    with pytest.raises(ValueError) as refused:
        compile_pattern("(?<=a)b")
    # Python would accept a look-behind; Go (Authelia) refuses it, and so does RE2.
    assert str(refused.value) == (
        "invalid regular expression '(?<=a)b': invalid perl operator: `(?<=` (look-behind "
        "assertions are left out of RE2 to keep matching linear; Go refuses them too)"
    )


def test_domain_regex_ignores_case_resources_do_not() -> None:
    engine = policy_from_text(
        """
        access_control:
          rules:
            - domain_regex: '^APP\\.example\\.com$'
              resources: ['^/Admin']
              policy: two_factor
            - domain: app.example.com
              policy: one_factor
        """
    )
    assert decide(engine, "https://app.example.com/Admin").level.policy == "two_factor"
    assert decide(engine, "https://app.example.com/admin").level.policy == "one_factor"


@pytest.mark.parametrize(
    ("text", "network"),
    [
        ("10.0.0.1", "10.0.0.1/32"),
        ("10.1.2.3/8", "10.0.0.0/8"),
        ("2001:db8::1", "2001:db8::1/128"),
        ("2001:db8::1/32", "2001:db8::/32"),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
        (" 192.168.0.0/16 ", "192.168.0.0/16"),
    ],
)
def test_parse_network(text: str, network: str) -> None:
    assert str(parse_network(text)) == network


@pytest.mark.parametrize("text", ["10.0.0.0/33", "10.0.0", "internal", "2001:db8::/129", ""])
def test_parse_network_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="is not an IP address or CIDR"):
        parse_network(text)


def test_network_set_membership_at_the_edges() -> None:
    networks = NetworkSet(
        parse_network(text)
        for text in ["10.0.0.0/24", "10.0.1.0/24", "192.168.1.5", "2001:db8::/32"]
    )
    inside = ["10.0.0.0", "10.0.1.255", "192.168.1.5", "2001:db8::", "2001:db8:ffff:ffff::1"]
    outside = ["9.255.255.255", "10.0.2.0", "192.168.1.4", "192.168.1.6", "2001:db9::", "::1"]
    for text in inside:
        assert ipaddress.ip_address(text) in networks, text
    for text in outside:
        assert ipaddress.ip_address(text) not in networks, text
    assert None not in networks


def test_network_set_covers() -> None:
    wide = NetworkSet([parse_network("10.0.0.0/8"), parse_network("2001:db8::/32")])
    assert wide.covers(NetworkSet([parse_network("10.1.0.0/16"), parse_network("10.2.3.4")]))
    assert wide.covers(NetworkSet([parse_network("2001:db8:1::/48")]))
    assert not wide.covers(NetworkSet([parse_network("11.0.0.0/16")]))
    assert not wide.covers(NetworkSet([parse_network("2001:db9::/48")]))
    # Two adjacent halves together cover the whole.
    halves = NetworkSet([parse_network("10.0.0.0/9"), parse_network("10.128.0.0/9")])
    assert halves.covers(NetworkSet([parse_network("10.0.0.0/8")]))
