"""A compiled access-control rule: its matchers, its level, and the decisions it gives."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.config.yaml import Position
from gateway.net import NetworkSet
from gateway.policy.matchers import DomainPattern, QueryCondition, RegexMatcher, SubjectAlternative
from gateway.policy.model import Decision, Level, RuleRef, Subject, Target

__all__ = ["Rule"]


class Rule:
    """One rule. Everything is checked and precomputed here; :meth:`matches` only looks."""

    __slots__ = (
        "anonymous_decision",
        "decision",
        "domain_regexes",
        "domains",
        "has_subjects",
        "level",
        "methods",
        "networks",
        "position",
        "query",
        "ref",
        "resources",
        "source",
        "subjects",
    )

    def __init__(
        self,
        *,
        position: int,
        source: Position,
        level: Level,
        domains: Sequence[DomainPattern] = (),
        domain_regexes: Sequence[RegexMatcher] = (),
        resources: Sequence[RegexMatcher] = (),
        query: Sequence[Sequence[QueryCondition]] = (),
        methods: frozenset[str] | None = None,
        networks: NetworkSet | None = None,
        subjects: Sequence[SubjectAlternative] = (),
    ) -> None:
        self.position = position
        self.source = source
        self.level = level
        self.domains = tuple(domains)
        self.domain_regexes = tuple(domain_regexes)
        self.resources = tuple(resources)
        self.query = tuple(tuple(conditions) for conditions in query)
        # None means "any"; an empty set matches nothing (never widen a condition).
        self.methods = methods
        self.networks = networks
        self.subjects = tuple(subjects)
        # Authelia's "HasSubjects": the rule can only be decided once the user is known.
        self.has_subjects = (
            bool(self.subjects)
            or any(domain.depends_on_subject for domain in self.domains)
            or any(regex.depends_on_subject for regex in self.domain_regexes)
            or any(regex.depends_on_subject for regex in self.resources)
        )
        self.ref = RuleRef(position, source, level)
        self.decision = Decision(level, self.ref, potential=False)
        self.anonymous_decision = Decision(level, self.ref, potential=self.has_subjects)

    def matches_domain(self, host: str, subject: Subject, anonymous: bool) -> bool:
        """Does any ``domain`` or ``domain_regex`` entry match the host?"""
        for domain in self.domains:
            if domain.matches(host, subject, anonymous):
                return True
        return any(regex.matches(host, subject, anonymous) for regex in self.domain_regexes)

    def matches_request(self, target: Target, subject: Subject, anonymous: bool) -> bool:
        """Do all conditions other than the domain hold? Anonymous requests pass ``subject``
        conditions potentially (they will be asked to log in and checked again).
        """
        if self.methods is not None and target.method not in self.methods:
            return False
        if self.networks is not None and target.ip not in self.networks:
            return False
        if self.resources:
            path = target.path
            for resource in self.resources:
                if resource.matches(path, subject, anonymous):
                    break
            else:
                return False
        if self.query:
            query = target.query
            for conditions in self.query:
                if all(condition.matches(query) for condition in conditions):
                    break
            else:
                return False
        if self.subjects and not anonymous:
            for alternative in self.subjects:
                if alternative.matches(subject):
                    break
            else:
                return False
        return True

    def matches(self, target: Target, subject: Subject) -> bool:
        """Does the whole rule match (potentially, for an anonymous subject)?"""
        anonymous = subject.is_anonymous
        return self.matches_domain(target.host, subject, anonymous) and self.matches_request(
            target, subject, anonymous
        )

    def __repr__(self) -> str:
        domains = [d.text for d in self.domains] + [r.source for r in self.domain_regexes]
        return f"<Rule #{self.position} {self.level.policy} {domains} at {self.source}>"
