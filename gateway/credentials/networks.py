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
from collections.abc import Iterable
from functools import lru_cache

# The parsers the configuration uses too: a network means the same in gateway.yml and here.
from gateway.config.values import PRIVATE_NETWORKS, NetworkError, networks_from_env, parse_networks
from gateway.policy.networks import NetworkSet

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
