"""Addresses and hosts: one spelling per value, so no component can read another one."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.net import (
    AddressSet,
    NetworkSet,
    address_or_none,
    normalize_host,
    parse_address,
    parse_network,
    unmapped,
    unmapped_network,
)


@pytest.mark.parametrize(
    ("value", "host"),
    [
        ("app.example.com", "app.example.com"),
        ("App.Example.COM", "app.example.com"),
        ("API.Example.com:8443", "api.example.com"),
        ("api.example.com.", "api.example.com"),
        ("API.Example.com.:8443", "api.example.com"),
        ("localhost:9091", "localhost"),
        ("10.0.0.1", "10.0.0.1"),
        ("[2001:DB8::1]:443", "2001:db8::1"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("a-b.example.com", "a-b.example.com"),
        ("x" * 63 + ".example.com", "x" * 63 + ".example.com"),
        (".".join(["a" * 63] * 3) + "." + "b" * 61, ".".join(["a" * 63] * 3) + "." + "b" * 61),
    ],
)
def test_normalize_host(value: str, host: str) -> None:
    assert normalize_host(value) == host
    if ":" not in host:  # a canonical name is its own canonical form (IPv6 lost its brackets)
        assert normalize_host(host) == host


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "the host is empty"),
        (".", "invalid host '.'"),
        ("a.example.com..", "invalid host 'a.example.com..'"),
        ("exa!mple.com", "invalid host 'exa!mple.com'"),
        ("a_b.example.com", "invalid host 'a_b.example.com'"),
        ("-a.example.com", "invalid host '-a.example.com'"),
        ("a-.example.com", "invalid host 'a-.example.com'"),
        ("x" * 64 + ".example.com", f"invalid host '{'x' * 64}.example.com'"),
        (".".join(["a" * 63] * 4), "invalid host: longer than 253 characters"),
        (" app.example.com", "host contains a space or control character"),
        ("app.example.com\t", "host contains a space or control character"),
        ("a.example.com:99999", "invalid host 'a.example.com:99999': bad port '99999'"),
        ("a.example.com:", "invalid host 'a.example.com:': bad port ''"),
        ("a.example.com:abc", "invalid host 'a.example.com:abc': bad port 'abc'"),
        ("a.example.com:²", "invalid host 'a.example.com:²': bad port '²'"),
        ("API.Example.com:8443.", "invalid host 'API.Example.com:8443.': bad port '8443.'"),
        ("::1", "invalid host '::1': IPv6 addresses must be in brackets"),
        ("[::1", "invalid host '[::1': missing ']'"),
        ("[::1]x", "invalid host '[::1]x': bad port"),
        ("[10.0.0.1]", "invalid host '[10.0.0.1]': not an IPv6 address"),
        ("[fe80::1%eth0]", "invalid host '[fe80::1%eth0]': not an IPv6 address"),
        ("user@app.example.com", "invalid host 'user@app.example.com'"),
    ],
)
def test_normalize_host_refuses(value: str, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        normalize_host(value)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:DB8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("[::ffff:192.0.2.1]", "192.0.2.1"),
        ("fe80::1%eth0", "fe80::1"),
    ],
)
def test_parse_address(text: str, address: str) -> None:
    parsed = parse_address(text)
    assert str(parsed) == address
    assert address_or_none(text) == parsed


@pytest.mark.parametrize(
    "text", ["", "garbage", " 192.0.2.1", "192.0.2.1 ", "[192.0.2.1]", "[[::1]]", "1.2.3.4%x"]
)
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid IP address"):
        parse_address(text)
    assert address_or_none(text) is None


def test_unmapped() -> None:
    assert unmapped(ipaddress.ip_address("::ffff:10.0.0.1")) == ipaddress.ip_address("10.0.0.1")
    assert unmapped(ipaddress.ip_address("2001:db8::1")) == ipaddress.ip_address("2001:db8::1")
    assert address_or_none(ipaddress.ip_address("::ffff:10.0.0.1")) == ipaddress.ip_address(
        "10.0.0.1"
    )
    mapped = ipaddress.ip_network("::ffff:10.0.0.0/104")
    assert unmapped_network(mapped) == ipaddress.ip_network("10.0.0.0/8")
    assert str(parse_network("::ffff:10.0.0.0/104")) == "10.0.0.0/8"


def test_mapped_networks_count_as_ipv4_in_every_set() -> None:
    # A trusted-proxy list, a policy network and an allowlist all built from the same text
    # answer alike: the mapped network is the IPv4 one.
    networks = NetworkSet([ipaddress.ip_network("::ffff:10.0.0.0/104"), "192.0.2.0/24"])
    assert ipaddress.ip_address("10.1.2.3") in networks
    assert parse_address("::ffff:10.1.2.3") in networks
    assert AddressSet(["::ffff:10.0.0.0/104"]).covers(NetworkSet(["10.0.0.0/8"]))
    assert "::ffff:10.1.2.3" in AddressSet(["::ffff:10.0.0.0/104"])
    assert "10.1.2.3" in AddressSet(["10.0.0.0/8"])
    assert None not in networks
    assert 42 not in AddressSet(["10.0.0.0/8"])
