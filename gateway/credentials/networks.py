"""Network allowlists: which client addresses may use an API host or an API key.

An :class:`AddressSet` is built once from CIDR networks (IPv4 and IPv6) into sorted, merged
integer ranges per family; a membership test is one :func:`bisect.bisect_right` per request.

The default allowlist of an API host that declares none is :data:`PRIVATE_NETWORKS`:
loopback and the RFC 1918 / RFC 4193 private ranges. Deliberately *not* included:

* link-local ``169.254.0.0/16`` and ``fe80::/10``: not routed, and a host that only sees a
  link-local peer is usually misconfigured;
* carrier-grade NAT ``100.64.0.0/10``: shared by many unrelated customers of an ISP (and used
  by Tailscale); list it explicitly when that is what you mean.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping
from functools import lru_cache

from gateway.net import NetworkSet

__all__ = [
    "PRIVATE",
    "PRIVATE_NETWORKS",
    "AddressSet",
    "IPAddress",
    "IPNetwork",
    "NetworkError",
    "networks_from_env",
    "parse_address",
    "parse_networks",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

PRIVATE_NETWORKS: tuple[str, ...] = (
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::1/128",
    "fc00::/7",
)
"""Loopback and private ranges: the allowlist of an API host that declares none."""


class NetworkError(ValueError):
    """A network list cannot be used; the message names where it came from."""


def parse_networks(values: Iterable[str], *, source: str = "networks") -> tuple[IPNetwork, ...]:
    """Parse CIDRs (or single addresses); host bits are allowed and masked off."""
    networks: list[IPNetwork] = []
    for value in values:
        text = str(value).strip()
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise NetworkError(
                f"{source}: '{text}' is not an IP address or CIDR network "
                "(write e.g. 10.0.0.0/8 or 2001:db8::/32)"
            ) from None
    return tuple(networks)


def networks_from_env(name: str, environ: Mapping[str, str] | None = None) -> tuple[IPNetwork, ...]:
    """The space- (or comma-) separated CIDRs in environment variable ``name``."""
    env = os.environ if environ is None else environ
    raw = env.get(name)
    if raw is None:
        raise NetworkError(
            f"environment variable {name} is not set "
            "(it must hold space-separated CIDR networks, e.g. '203.0.113.0/24 10.0.0.0/8')"
        )
    entries = raw.replace(",", " ").split()
    if not entries:
        raise NetworkError(f"environment variable {name} is empty (expected CIDR networks)")
    return parse_networks(entries, source=f"environment variable {name}")


@lru_cache(maxsize=8192)
def _parse_cached(text: str) -> IPAddress | None:
    host = text.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host.partition("%")[0]  # drop an IPv6 zone id (fe80::1%eth0)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_address(value: str | IPAddress) -> IPAddress | None:
    """A client address as an IP object (IPv4-mapped IPv6 becomes IPv4), or None if malformed."""
    if isinstance(value, ipaddress.IPv6Address):
        return value.ipv4_mapped or value
    if isinstance(value, ipaddress.IPv4Address):
        return value
    return _parse_cached(value)


class AddressSet(NetworkSet):
    """The policy's :class:`NetworkSet` (sorted ranges, one binary search per lookup) that
    also takes address text and IPv4-mapped IPv6 addresses, as client addresses arrive."""

    __slots__ = ()

    def __init__(self, networks: Iterable[IPNetwork | str]) -> None:
        super().__init__(
            item if not isinstance(item, str) else parse_networks([item])[0] for item in networks
        )

    @classmethod
    def from_strings(cls, values: Iterable[str], *, source: str = "networks") -> AddressSet:
        """Build from CIDR text; raises :class:`NetworkError` naming ``source``."""
        return cls(parse_networks(values, source=source))

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, str | ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        return NetworkSet.__contains__(self, parse_address(value))

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __len__(self) -> int:
        """The number of merged ranges (not networks, not addresses)."""
        return self.range_count

    def __repr__(self) -> str:
        return f"AddressSet({[str(n) for n in self.networks]!r})"


PRIVATE = AddressSet(PRIVATE_NETWORKS)
"""The default allowlist, built once."""
