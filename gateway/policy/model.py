"""The values the policy engine works with: levels (:mod:`gateway.levels`), who asks, what they
ask for, the answer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway import net
from gateway.config.yaml import Position
from gateway.errors import Rejected
from gateway.levels import POLICY_NAMES, Level
from gateway.net import IPAddress
from gateway.policy import normalize

__all__ = [
    "ANONYMOUS",
    "POLICY_NAMES",
    "BadTarget",
    "Decision",
    "Level",
    "RuleRef",
    "Subject",
    "Target",
]


class BadTarget(Rejected, ValueError):
    """A request URL, host, method or client IP that cannot be evaluated."""


@dataclass(frozen=True, slots=True)
class Subject:
    """Who is asking: a user (name and groups), machine credentials, or nobody yet."""

    username: str | None = None
    groups: frozenset[str] = frozenset()
    credentials: frozenset[str] = frozenset()
    """Credential subjects such as ``key:ci-runner``, ``client:reporting``, ``cert:...``."""

    @classmethod
    def of(
        cls, username: str | None, groups: Iterable[str] = (), credentials: Iterable[str] = ()
    ) -> Subject:
        """The subject of an identity: its name (None for a machine credential, which ``user:``
        rules must not match), its groups and its credential subjects."""
        return cls(username, frozenset(groups), frozenset(credentials))

    @property
    def is_anonymous(self) -> bool:
        """True when nothing identifies the caller (no user, no groups, no credentials)."""
        return self.username is None and not self.groups and not self.credentials


ANONYMOUS = Subject()


@dataclass(frozen=True, slots=True)
class Target:
    """The request being authorised, normalised so that rules cannot be dodged."""

    host: str
    """Lower-case host name without port or trailing dot (IPv6 without brackets)."""
    path: str
    """Decoded, dot-segment-cleaned path, plus ``?`` and the raw query when there is one."""
    query: Mapping[str, tuple[str, ...]]
    """Decoded query parameters in order of appearance."""
    method: str
    """Upper-case request method."""
    ip: IPAddress | None
    """Client address (IPv4-mapped IPv6 addresses are given as IPv4), if known."""

    @classmethod
    def from_url(
        cls,
        url: str,
        method: str = "GET",
        ip: str | IPAddress | None = None,
        *,
        paths: normalize.PathMode = "reject",
    ) -> Target:
        """Build a target from an absolute ``http(s)://host[:port]/path?query`` URL.

        Raises :class:`BadTarget` with a message naming the problem.
        """
        try:
            host, uri = normalize.split_url(url)
        except ValueError as error:
            raise BadTarget(str(error)) from None
        return cls.from_request(host, uri, method, ip, paths=paths)

    @classmethod
    def from_request(
        cls,
        host: str,
        uri: str,
        method: str = "GET",
        ip: str | IPAddress | None = None,
        *,
        paths: normalize.PathMode = "reject",
    ) -> Target:
        """Build a target from a ``Host`` value and a request URI (``/path?query``).

        This is the shape forward-auth headers have (``X-Forwarded-Host``,
        ``X-Forwarded-Uri``). ``paths`` says what to do with a raw path that servers could
        resolve differently: refuse it (the default) or judge it cleaned. Raises
        :class:`BadTarget`.
        """
        try:
            clean_host = net.normalize_host(host)
            raw_path, raw_query = normalize.split_request_uri(uri)
            if paths == "reject":
                normalize.refuse_ambiguous_path(raw_path)
            path = normalize.clean_path(normalize.decode_path(raw_path))
            query = normalize.parse_query(raw_query)
            clean_method = normalize.normalize_method(method)
            address = net.parse_address(ip) if isinstance(ip, str) else ip
        except ValueError as error:
            raise BadTarget(str(error)) from None
        if address is not None:
            address = net.unmapped(address)
        if raw_query:
            path = f"{path}?{raw_query}"
        return cls(host=clean_host, path=path, query=query, method=clean_method, ip=address)


@dataclass(frozen=True, slots=True)
class RuleRef:
    """Which rule decided: its 1-based position in the combined rule list and its source."""

    position: int
    source: Position
    level: Level

    @property
    def policy(self) -> str:
        """The rule's policy name."""
        return self.level.policy

    def __str__(self) -> str:
        return f"rule #{self.position} ({self.source})"


@dataclass(frozen=True, slots=True)
class Decision:
    """The required level, the rule that set it (``None``: default policy), and whether the
    rule matched only potentially (an anonymous request and a rule that depends on the user).
    """

    level: Level
    rule: RuleRef | None
    potential: bool

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description, as ``gateway policy test --json`` prints it."""
        rule: dict[str, Any] | None = None
        if self.rule is not None:
            rule = {"position": self.rule.position, "source": str(self.rule.source)}
        return {"level": self.level.policy, "rule": rule, "potential": self.potential}

    def __str__(self) -> str:
        decided_by = str(self.rule) if self.rule is not None else "default policy"
        suffix = " (potential match)" if self.potential else ""
        return f"{self.level.policy} by {decided_by}{suffix}"
