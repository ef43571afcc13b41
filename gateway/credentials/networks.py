"""Network allowlists: which client addresses may use an API host or an API key.

An allowlist is a :class:`gateway.net.AddressSet`, built once from CIDR networks (IPv4 and
IPv6) into sorted, merged integer ranges per family; a membership test is one
:func:`bisect.bisect_right` per request.

The default allowlist of an API host that declares none is :data:`PRIVATE_NETWORKS`:
loopback and the RFC 1918 / RFC 4193 private ranges. Deliberately *not* included:

* link-local ``169.254.0.0/16`` and ``fe80::/10``: not routed, and a host that only sees a
  link-local peer is usually misconfigured;
* carrier-grade NAT ``100.64.0.0/10``: shared by many unrelated customers of an ISP (and used
  by Tailscale); list it explicitly when that is what you mean.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from gateway.errors import ConfigError
from gateway.net import AddressSet, IPNetwork, parse_network

__all__ = [
    "PRIVATE",
    "PRIVATE_NETWORKS",
    "NetworkError",
    "networks_from_env",
    "parse_networks",
]

PRIVATE_NETWORKS: tuple[str, ...] = (
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::1/128",
    "fc00::/7",
)
"""Loopback and private ranges: the allowlist of an API host that declares none."""


class NetworkError(ConfigError, ValueError):
    """A network list cannot be used; the message names where it came from."""


def parse_networks(values: Iterable[str], *, source: str = "networks") -> tuple[IPNetwork, ...]:
    """Parse CIDRs (or single addresses) with :func:`gateway.net.parse_network`; host bits are
    allowed and masked off, IPv4-mapped networks become IPv4."""
    networks: list[IPNetwork] = []
    for value in values:
        text = str(value).strip()
        try:
            networks.append(parse_network(text))
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


PRIVATE = AddressSet(PRIVATE_NETWORKS)
"""The default allowlist, built once."""
