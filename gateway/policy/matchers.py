"""The small matchers a rule is made of: domain, regex (domain or resource), query, subject.

Each has one ``matches`` method and keeps the text it was compiled from so a rule can be
explained and compared (lint).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.policy.model import Subject
from gateway.policy.regex import Pattern

__all__ = [
    "DomainKind",
    "DomainPattern",
    "QueryCondition",
    "QueryOperator",
    "RegexMatcher",
    "SubjectAlternative",
]


class DomainKind(enum.Enum):
    """How a ``domain`` entry matches."""

    EXACT = "exact"
    WILDCARD = "wildcard"  # *.example.com: any depth below, not the apex
    USER = "user"  # {user}.example.com
    GROUP = "group"  # {group}.example.com


@dataclass(frozen=True, slots=True)
class DomainPattern:
    """One ``domain`` entry. ``name`` is the exact host, or what follows ``*``, ``{user}`` or
    ``{group}`` (``.example.com``).
    """

    text: str
    kind: DomainKind
    name: str

    @classmethod
    def parse(cls, text: str) -> DomainPattern:
        """Classify a (lower-cased) domain entry the way Authelia does."""
        domain = text.lower()
        if domain.startswith("*."):
            return cls(domain, DomainKind.WILDCARD, domain[1:])
        if domain.startswith("{user}"):
            return cls(domain, DomainKind.USER, domain[len("{user}") :])
        if domain.startswith("{group}"):
            return cls(domain, DomainKind.GROUP, domain[len("{group}") :])
        return cls(domain, DomainKind.EXACT, domain.removesuffix("."))

    @property
    def depends_on_subject(self) -> bool:
        """True for ``{user}`` and ``{group}`` entries."""
        return self.kind is DomainKind.USER or self.kind is DomainKind.GROUP

    def matches(self, host: str, subject: Subject, anonymous: bool) -> bool:
        """Does ``host`` match? Anonymous requests match placeholders potentially."""
        kind = self.kind
        if kind is DomainKind.EXACT:
            return host == self.name
        if kind is DomainKind.WILDCARD:
            return host.endswith(self.name)
        if anonymous:
            return len(host) > len(self.name) and host.endswith(self.name)
        if kind is DomainKind.USER:
            return host == (subject.username or "").lower() + self.name
        dot = host.find(".")
        if dot <= 0 or host[dot:] != self.name:
            return False
        label = host[:dot]
        return any(group.lower() == label for group in subject.groups)


@dataclass(frozen=True, slots=True)
class RegexMatcher:
    """A ``domain_regex`` or ``resources`` pattern, searched (not anchored).

    Named groups ``User`` and ``Group`` must equal, ignoring case, the user's name or one of
    their groups; an anonymous request matches them potentially.
    """

    source: str
    regex: Pattern
    user_group: int | None = field(default=None)
    group_group: int | None = field(default=None)

    @classmethod
    def build(cls, source: str, regex: Pattern) -> RegexMatcher:
        """Wrap a compiled pattern, noting its identity groups."""
        return cls(source, regex, regex.groupindex.get("User"), regex.groupindex.get("Group"))

    @property
    def depends_on_subject(self) -> bool:
        """True when the pattern has a ``User`` or ``Group`` named group."""
        return self.user_group is not None or self.group_group is not None

    def matches(self, text: str, subject: Subject, anonymous: bool) -> bool:
        """Search ``text``; check identity groups against ``subject`` unless anonymous."""
        if self.user_group is None and self.group_group is None:
            return self.regex.search(text)
        if anonymous:
            # Only whether it matches counts, and a yes/no search is the cheaper question.
            return self.regex.search(text)
        found = self.regex.find(text)
        if found is None:
            return False
        if self.user_group is not None:
            # Go yields "" for a group that did not take part; compare the same way.
            user = found[self.user_group] or ""
            if user.lower() != (subject.username or "").lower():
                return False
        if self.group_group is not None:
            wanted = (found[self.group_group] or "").lower()
            if not any(group.lower() == wanted for group in subject.groups):
                return False
        return True


class QueryOperator(enum.Enum):
    """Operators of a ``query`` condition."""

    EQUAL = "equal"
    NOT_EQUAL = "not equal"
    PRESENT = "present"
    ABSENT = "absent"
    PATTERN = "pattern"
    NOT_PATTERN = "not pattern"


@dataclass(frozen=True, slots=True)
class QueryCondition:
    """One ``{key, value, operator}``. Like Go's ``Query().Get``, comparisons use the first
    value of the key, or the empty string when the key is absent.
    """

    key: str
    operator: QueryOperator
    value: str | None = None
    pattern: Pattern | None = None

    def matches(self, query: Mapping[str, tuple[str, ...]]) -> bool:
        """Does the parsed query satisfy this condition?"""
        operator = self.operator
        if operator is QueryOperator.PRESENT:
            return self.key in query
        if operator is QueryOperator.ABSENT:
            return self.key not in query
        values = query.get(self.key)
        first = values[0] if values else ""
        if operator is QueryOperator.EQUAL:
            return first == self.value
        if operator is QueryOperator.NOT_EQUAL:
            return first != self.value
        assert self.pattern is not None
        found = self.pattern.search(first)
        return found if operator is QueryOperator.PATTERN else not found

    @property
    def identity(self) -> tuple[str, str, str | None]:
        """What the condition tests, for comparing conditions."""
        return (self.key, self.operator.value, self.value)


@dataclass(frozen=True, slots=True)
class SubjectAlternative:
    """One AND-list of a ``subject`` condition: every user, group and credential must hold."""

    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    credentials: frozenset[str] = frozenset()

    def matches(self, subject: Subject) -> bool:
        """Exact match against an identified subject (names compare case-sensitively)."""
        for user in self.users:
            if user != subject.username:
                return False
        return self.groups <= subject.groups and self.credentials <= subject.credentials

    def implies(self, other: SubjectAlternative) -> bool:
        """True when every subject matching ``self`` also matches ``other``."""
        return (
            other.users <= self.users
            and other.groups <= self.groups
            and other.credentials <= self.credentials
        )
