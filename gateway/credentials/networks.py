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

# The parsers the configuration uses too: a network means the same in gateway.yml and here.
from gateway.config.values import PRIVATE_NETWORKS, NetworkError, networks_from_env, parse_networks
from gateway.net import AddressSet

__all__ = [
    "PRIVATE",
    "PRIVATE_NETWORKS",
    "NetworkError",
    "networks_from_env",
    "parse_networks",
]


PRIVATE = AddressSet(PRIVATE_NETWORKS)
"""The default allowlist, built once."""
