"""Client networks as sorted integer ranges, searched with :mod:`bisect`."""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable

__all__ = ["IPNetwork", "NetworkSet", "parse_network"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def parse_network(text: str) -> IPNetwork:
    """Parse an IP address (a one-address network) or a CIDR; host bits are ignored like Go's
    ``net.ParseCIDR``. IPv4-mapped IPv6 networks become IPv4. Raises :class:`ValueError`.
    """
    value = text.strip()
    try:
        network: IPNetwork = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"'{text}' is not an IP address or CIDR") from None
    if (
        isinstance(network, ipaddress.IPv6Network)
        and network.prefixlen >= 96
        and network.subnet_of(_IPV4_MAPPED)
    ):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def _merge(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    starts: list[int] = []
    ends: list[int] = []
    for start, end in sorted(ranges):
        if ends and start <= ends[-1] + 1:
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(start)
            ends.append(end)
    return tuple(starts), tuple(ends)


class NetworkSet:
    """A set of IPv4 and IPv6 networks; membership costs one binary search."""

    __slots__ = ("_v4_ends", "_v4_starts", "_v6_ends", "_v6_starts", "networks")

    def __init__(self, networks: Iterable[IPNetwork]) -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(networks)
        v4 = [
            (int(n.network_address), int(n.broadcast_address))
            for n in self.networks
            if n.version == 4
        ]
        v6 = [
            (int(n.network_address), int(n.broadcast_address))
            for n in self.networks
            if n.version == 6
        ]
        self._v4_starts, self._v4_ends = _merge(v4)
        self._v6_starts, self._v6_ends = _merge(v6)

    def __contains__(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        if address is None:
            return False
        if address.version == 4:
            starts, ends = self._v4_starts, self._v4_ends
        else:
            starts, ends = self._v6_starts, self._v6_ends
        number = int(address)
        index = bisect.bisect_right(starts, number) - 1
        return index >= 0 and number <= ends[index]

    def covers(self, other: NetworkSet) -> bool:
        """True when every address in ``other`` is also in this set."""
        for starts, ends, mine_starts, mine_ends in (
            (other._v4_starts, other._v4_ends, self._v4_starts, self._v4_ends),
            (other._v6_starts, other._v6_ends, self._v6_starts, self._v6_ends),
        ):
            for start, end in zip(starts, ends, strict=True):
                index = bisect.bisect_right(mine_starts, start) - 1
                if index < 0 or end > mine_ends[index]:
                    return False
        return True

    def __len__(self) -> int:
        return len(self.networks)

    @property
    def range_count(self) -> int:
        """How many disjoint ranges the networks merged into."""
        return len(self._v4_starts) + len(self._v6_starts)

    def __repr__(self) -> str:
        return f"NetworkSet({', '.join(str(n) for n in self.networks)})"
