"""What the values of a policy rule mean: levels, domains, subjects, networks, methods,
patterns and query conditions.

Each check takes a value already read from its YAML shape (:mod:`gateway.policy.decode`) and
returns what it compiles to, or raises :class:`ValueError` whose message the compiler
reports at the value's position. Nothing here knows about documents or positions.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from ipaddress import IPv6Address
from typing import Any

from gateway.config.suggest import closest, did_you_mean, suggestion
from gateway.net import IPNetwork, parse_network
from gateway.policy.matchers import (
    DomainKind,
    DomainPattern,
    QueryOperator,
    RegexMatcher,
    SubjectAlternative,
)
from gateway.policy.model import POLICY_NAMES, Level
from gateway.policy.regex import Pattern, compile_pattern

__all__ = [
    "METHODS",
    "SUBJECT_PREFIXES",
    "QueryError",
    "domain",
    "level",
    "method",
    "network",
    "query",
    "regex",
    "subject",
    "subject_alternative",
]

# Authelia's list: RFC 7231, RFC 5789 (PATCH), RFC 4918 (WebDAV) and the other registered
# WebDAV/extension methods its schema accepts.
METHODS = (
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "PATCH",
    "DELETE",
    "TRACE",
    "CONNECT",
    "OPTIONS",
    "COPY",
    "LOCK",
    "MKCOL",
    "MOVE",
    "PROPFIND",
    "PROPPATCH",
    "UNLOCK",
    "ACL",
    "BASELINE-CONTROL",
    "BIND",
    "CHECKIN",
    "CHECKOUT",
    "LABEL",
    "LINK",
    "MERGE",
    "MKACTIVITY",
    "MKCALENDAR",
    "MKREDIRECTREF",
    "MKWORKSPACE",
    "ORDERPATCH",
    "PRI",
    "QUERY",
    "REBIND",
    "REPORT",
    "SEARCH",
    "UNBIND",
    "UNCHECKOUT",
    "UNLINK",
    "UPDATE",
    "UPDATEREDIRECTREF",
    "VERSION-CONTROL",
)
_METHOD_SET = frozenset(METHODS)

# user:/group: match the user; the rest match credential subjects carried by the Subject.
SUBJECT_PREFIXES = ("user:", "group:", "oauth2:client:", "key:", "cert:", "client:")
_SUBJECT_WORDS = ("user", "group", "oauth2:client", "key", "cert", "client")
_OPERATORS = {operator.value: operator for operator in QueryOperator}
_VALUELESS = (QueryOperator.PRESENT, QueryOperator.ABSENT)
_DOMAIN_FORBIDDEN = frozenset(" \t/\\:?#@")


def _join_or(words: Sequence[str]) -> str:
    return ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else "".join(words)


def level(value: Any) -> Level:
    """A ``policy`` / ``default_policy`` value."""
    if not isinstance(value, str):
        raise ValueError(f"the policy must be one of {', '.join(POLICY_NAMES)}")
    return Level.from_policy(value)


def domain(text: str) -> tuple[DomainPattern, str | None]:
    """One ``domain`` entry, and a warning when it can match no host."""
    if _DOMAIN_FORBIDDEN.intersection(text) and not _is_ipv6(text):
        raise ValueError(
            f"invalid domain '{text}': write the host name only, without scheme, port or path"
        )
    pattern = DomainPattern.parse(str(IPv6Address(text)) if _is_ipv6(text) else text)
    stars = pattern.text.count("*")
    if stars and not (pattern.kind is DomainKind.WILDCARD and stars == 1):
        hint = ""
        if pattern.text.startswith("*") and not pattern.text.startswith("*."):
            hint = suggestion(f"*.{pattern.text[1:]}") if len(pattern.text) > 1 else ""
        return pattern, f"domain '{text}' matches no host: only a leading '*.' is a wildcard{hint}"
    if pattern.kind is DomainKind.WILDCARD and pattern.name == ".":
        raise ValueError("the wildcard domain '*.' names no domain")
    return pattern, None


def regex(text: str, *, ignore_case: bool) -> RegexMatcher:
    """One ``domain_regex`` or ``resources`` entry."""
    return RegexMatcher.build(text, compile_pattern(text, ignore_case=ignore_case))


def subject(item: Any) -> tuple[str, str]:
    """One subject such as ``user:john``, as its prefix and name."""
    if not isinstance(item, str):
        raise ValueError("a subject must be a string such as 'user:john'")
    for prefix in SUBJECT_PREFIXES:
        if item.startswith(prefix):
            name = item[len(prefix) :].strip(" ")
            if not name:
                raise ValueError(f"subject '{item}' names no {prefix[:-1]}")
            return prefix, name
    word, colon, rest = item.partition(":")
    hint = ""
    if colon and (close := closest(word, _SUBJECT_WORDS)) is not None:
        hint = suggestion(f"{close}:{rest}")
    raise ValueError(
        f"invalid subject '{item}': must start with {_join_or(SUBJECT_PREFIXES)}{hint}"
    )


def subject_alternative(
    subjects: Sequence[tuple[str, str]],
) -> tuple[SubjectAlternative, str | None]:
    """The subjects of one alternative (all must match), and a warning when it never can."""
    users: set[str] = set()
    groups: set[str] = set()
    credentials: set[str] = set()
    for prefix, name in subjects:
        if prefix == "user:":
            users.add(name)
        elif prefix == "group:":
            groups.add(name)
        else:
            credentials.add(prefix + name)
    warning = None
    if len(users) > 1:
        warning = (
            f"subject needs users {', '.join(sorted(users))} at once; a request has "
            "one user, so it never matches"
        )
    return SubjectAlternative(frozenset(users), frozenset(groups), frozenset(credentials)), warning


def network(text: str, defined: Mapping[str, tuple[IPNetwork, ...]]) -> tuple[IPNetwork, ...]:
    """Like Authelia: an address or CIDR first, then a name in ``defined``."""
    try:
        return (parse_network(text),)
    except ValueError:
        pass
    named = defined.get(text)
    if named is not None:
        return named
    known = sorted(defined)
    hint = did_you_mean(text, known) or (
        f" (defined: {', '.join(known)})" if known else " (no networks are defined)"
    )
    raise ValueError(
        f"unknown network '{text}': not an IP address, a CIDR or a defined network name{hint}"
    )


def method(text: str, seen: Collection[str]) -> str:
    """One ``methods`` entry, upper-cased; ValueError if it is unknown or already in ``seen``."""
    name = text.upper()
    if name not in _METHOD_SET:
        raise ValueError(f"unknown method '{text}' (expected one of {', '.join(METHODS)})")
    if name in seen:
        raise ValueError(f"duplicate method '{text}'")
    return name


class QueryError(ValueError):
    """A query condition is wrong at ``key`` of it (``None``: the condition as a whole)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def query(value: str | None, raw_operator: Any) -> tuple[QueryOperator, str | None, Pattern | None]:
    """The operator, value and pattern of a query condition whose ``value`` is text or
    missing; raises :class:`QueryError`."""
    if raw_operator is None:
        operator = QueryOperator.PRESENT if not value else QueryOperator.EQUAL
    elif isinstance(raw_operator, str) and raw_operator.lower() in _OPERATORS:
        operator = _OPERATORS[raw_operator.lower()]
    else:
        raise QueryError(
            f"unknown query operator '{raw_operator}' (expected {', '.join(_OPERATORS)})",
            "operator",
        )
    if operator in _VALUELESS:
        if value:
            raise QueryError(
                f"the query 'value' must not be set when the operator is '{operator.value}'",
                "value",
            )
        value = None
    elif value is None:
        raise QueryError(f"the query 'value' is required when the operator is '{operator.value}'")
    pattern = None
    if operator in (QueryOperator.PATTERN, QueryOperator.NOT_PATTERN):
        assert value is not None
        try:
            pattern = compile_pattern(value)
        except ValueError as error:
            raise QueryError(str(error), "value") from None
    return operator, value, pattern


def _is_ipv6(text: str) -> bool:
    try:
        IPv6Address(text)
    except ValueError:
        return False
    return True
