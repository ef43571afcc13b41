"""Network allowlists: AddressSet membership, defaults, environment variables, host globs."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.credentials.hosts import HostMatcher
from gateway.credentials.networks import PRIVATE, NetworkError, networks_from_env, parse_networks
from gateway.net import AddressSet, address_or_none


@pytest.mark.parametrize(
    ("address", "inside"),
    [
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("172.31.255.255", True),
        ("172.32.0.1", False),
        ("192.168.10.10", True),
        ("127.0.0.1", True),
        ("::1", True),
        ("fd12:3456::1", True),
        ("::ffff:10.0.0.7", True),  # IPv4-mapped IPv6 counts as IPv4
        ("100.64.0.1", False),  # CGNAT is not private by default
        ("169.254.1.1", False),  # link-local is not included
        ("fe80::1", False),
        ("8.8.8.8", False),
        ("2001:db8::1", False),
        ("not-an-ip", False),
        ("", False),
    ],
)
def test_default_allowlist_is_private_and_loopback(address: str, inside: bool) -> None:
    assert (address in PRIVATE) is inside


def test_ranges_merge_and_bisect_at_the_edges() -> None:
    networks = AddressSet(["10.0.0.0/24", "10.0.1.0/24", "10.0.0.128/25", "2001:db8::/64"])
    assert len(networks) == 2  # the two IPv4 /24s and the /25 merge into one range
    assert "10.0.0.0" in networks
    assert "10.0.1.255" in networks
    assert "10.0.2.0" not in networks
    assert "9.255.255.255" not in networks
    assert ipaddress.ip_address("2001:db8::ffff") in networks
    assert "2001:db8:0:1::" not in networks
    assert "[2001:db8::1]" in networks  # brackets as in a Host header
    assert "fe80::1%eth0" not in networks  # zone id dropped before parsing


def test_empty_set_contains_nothing() -> None:
    empty = AddressSet([])
    assert not empty
    assert "127.0.0.1" not in empty


def test_bad_cidr_names_its_source() -> None:
    with pytest.raises(NetworkError, match=r"api host networks: '10\.0\.0\.0/33'"):
        AddressSet(parse_networks(["10.0.0.0/33"], source="api host networks"))


def test_networks_from_env() -> None:
    environ = {"PARTNER_NETS": "203.0.113.0/24  198.51.100.7,2001:db8::/48"}
    networks = AddressSet(networks_from_env("PARTNER_NETS", environ))
    assert "203.0.113.9" in networks
    assert "198.51.100.7" in networks
    assert "198.51.100.8" not in networks
    assert "2001:db8:0:ffff::1" in networks


def test_networks_from_env_unset_names_the_variable() -> None:
    with pytest.raises(NetworkError, match="environment variable PARTNER_NETS is not set"):
        networks_from_env("PARTNER_NETS", {})


def test_networks_from_env_bad_value_names_the_variable() -> None:
    with pytest.raises(NetworkError, match="environment variable PARTNER_NETS: 'nope'"):
        networks_from_env("PARTNER_NETS", {"PARTNER_NETS": "10.0.0.0/8 nope"})
    with pytest.raises(NetworkError, match="PARTNER_NETS is empty"):
        networks_from_env("PARTNER_NETS", {"PARTNER_NETS": "  "})


def test_parse_address_normalises() -> None:
    assert address_or_none("::ffff:192.0.2.1") == ipaddress.ip_address("192.0.2.1")
    assert address_or_none(ipaddress.ip_address("::ffff:192.0.2.1")) == ipaddress.ip_address(
        "192.0.2.1"
    )
    assert address_or_none("garbage") is None


@pytest.mark.parametrize(
    ("patterns", "host", "matches"),
    [
        (["api.billing.example.com"], "api.billing.example.com", True),
        (["api.billing.example.com"], "api.billing.example.org", False),
        (["*.example.com"], "a.b.example.com", True),
        (["*.example.com"], "example.com", False),
        (["api.*.example.com"], "api.reports.example.com", True),
        (["api.*.example.com"], "www.reports.example.com", False),
        (["api.*"], "api.anything.test", True),
        ([], "api.example.com", False),
    ],
)
def test_host_globs(patterns: list[str], host: str, matches: bool) -> None:
    assert HostMatcher(patterns).matches(host) is matches


def test_host_glob_rejects_junk() -> None:
    with pytest.raises(ValueError, match="not a host name or glob"):
        HostMatcher(["api.example.com/path"])
