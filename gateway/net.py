"""Addresses and hosts: the one place a host name, an IP address or a network is normalised.

A request is judged by several components (the policy, the cookie-domain lookup, the API-host
index, the allowlists, the ban counters). When each of them spells the same value its own way
(one keeps a trailing dot, another lower-cases, a third sees ``::ffff:10.0.0.1`` as IPv6) a
rule written for one spelling misses the other, and that gap is a bypass. So every value is
normalised here, once, and the components compare what this module produced:

* :func:`normalize_host`: a ``Host`` value becomes a lower-case ASCII name without port or
  trailing dot (``App.Example.COM.:8443`` -> ``app.example.com``); anything that is not a
  valid name or bracketed IPv6 literal is a :class:`ValueError`, never a lenient guess.
* :func:`parse_address`: an IPv4-mapped IPv6 address (a dual-stack listener's view of an IPv4
  client) is the IPv4 address, an IPv6 zone id (``fe80::1%eth0``) is dropped.
* :class:`NetworkSet`: networks as sorted, merged integer ranges, one :mod:`bisect` per
  lookup; mapped networks (``::ffff:10.0.0.0/104``) count as the IPv4 networks they are.

Nothing here imports from the rest of the gateway, so every package may use it.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Iterable

__all__ = [
    "AddressSet",
    "IPAddress",
    "IPNetwork",
    "NetworkSet",
    "address_or_none",
    "normalize_host",
    "parse_address",
    "parse_network",
    "unmapped",
    "unmapped_network",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_HOST_LENGTH = 253
"""The longest DNS name; the bound also keeps every host-keyed memo small."""

_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
# Letters, digits and hyphens (RFC 1123): labels of 1 to 63 characters that neither start nor
# end with a hyphen. No '_': it is not valid in a host name, and a name that one server accepts
# and another refuses is one that two of them can read differently.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_PORT = re.compile(r"[0-9]{1,5}")


# -------------------------------------------------------------------------------- hosts


def normalize_host(value: str) -> str:
    """The canonical host of a ``Host`` value: lower case, no port, no trailing dot, IDNA as
    ASCII; an IPv6 literal loses its brackets. Raises :class:`ValueError` naming the problem.
    """
    if _UNSAFE.search(value):
        raise ValueError("host contains a space or control character")
    if value.startswith("["):
        literal, bracket, port = value[1:].partition("]")
        if not bracket:
            raise ValueError(f"invalid host '{value}': missing ']'")
        if port and not (port.startswith(":") and _is_port(port[1:])):
            raise ValueError(f"invalid host '{value}': bad port")
        try:
            if "%" in literal:  # a zone id names an interface of the sender, not a host
                raise ValueError
            return str(ipaddress.IPv6Address(literal))
        except ValueError:
            raise ValueError(f"invalid host '{value}': not an IPv6 address") from None
    host, colon, port = value.partition(":")
    if colon and not _is_port(port):
        if ":" in port:
            raise ValueError(f"invalid host '{value}': IPv6 addresses must be in brackets")
        raise ValueError(f"invalid host '{value}': bad port '{port}'")
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(
                f"invalid host '{value}': not a valid internationalised name"
            ) from None
    if len(host) > MAX_HOST_LENGTH:
        raise ValueError(f"invalid host: longer than {MAX_HOST_LENGTH} characters")
    if not _HOST_NAME.fullmatch(host):
        raise ValueError(f"invalid host '{value}'" if value else "the host is empty")
    return host


def _is_port(text: str) -> bool:
    return _PORT.fullmatch(text) is not None and int(text) <= 65535


# -------------------------------------------------------------------------------- addresses


def unmapped(address: IPAddress) -> IPAddress:
    """``::ffff:10.0.0.1`` -> ``10.0.0.1``; every other address unchanged."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def unmapped_network(network: IPNetwork) -> IPNetwork:
    """``::ffff:10.0.0.0/104`` -> ``10.0.0.0/8``; every other network unchanged."""
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def parse_address(text: str) -> IPAddress:
    """An IP address, exactly as written or as an IPv6 literal in brackets (``[2001:db8::1]``).

    IPv4-mapped IPv6 becomes IPv4 and an IPv6 zone id is dropped, so one client has one
    address. Whitespace is not trimmed. Raises :class:`ValueError`.
    """
    try:
        if text.startswith("[") and text.endswith("]"):
            address: IPAddress = ipaddress.IPv6Address(text[1:-1])
        else:
            address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"invalid IP address '{text}'") from None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return ipaddress.IPv6Address(int(address))
    return address


def address_or_none(value: str | IPAddress) -> IPAddress | None:
    """:func:`parse_address` for text, :func:`unmapped` for an address; None if malformed."""
    if not isinstance(value, str):
        return unmapped(value)
    try:
        return parse_address(value)
    except ValueError:
        return None


# -------------------------------------------------------------------------------- networks


def parse_network(text: str) -> IPNetwork:
    """Parse an IP address (a one-address network) or a CIDR; host bits are ignored like Go's
    ``net.ParseCIDR``. IPv4-mapped IPv6 networks become IPv4. Raises :class:`ValueError`.
    """
    try:
        network: IPNetwork = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"'{text}' is not an IP address or CIDR") from None
    return unmapped_network(network)


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
    """A set of IPv4 and IPv6 networks; membership costs one binary search.

    Networks may be given as text (:func:`parse_network`); mapped ones count as IPv4. An
    address to test must already be unmapped, as :func:`parse_address` returns it.
    """

    __slots__ = ("_v4_ends", "_v4_starts", "_v6_ends", "_v6_starts", "networks")

    def __init__(self, networks: Iterable[IPNetwork | str]) -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(
            parse_network(n) if isinstance(n, str) else unmapped_network(n) for n in networks
        )
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

    def __contains__(self, address: IPAddress | None) -> bool:
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


class AddressSet(NetworkSet):
    """A :class:`NetworkSet` that also takes address text and IPv4-mapped addresses, as client
    addresses arrive at an allowlist; anything that is not an address is outside."""

    __slots__ = ()

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, str | ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        return NetworkSet.__contains__(self, address_or_none(value))

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __len__(self) -> int:
        """The number of merged ranges (not networks, not addresses)."""
        return self.range_count

    def __repr__(self) -> str:
        return f"AddressSet({[str(n) for n in self.networks]!r})"
