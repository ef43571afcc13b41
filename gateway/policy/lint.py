"""Warnings about rules that load but do not do what their author meant.

Every warning here is proven, never guessed: a rule is reported as unreachable only when an
earlier rule provably matches every request it could match.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.config.yaml import Issue
from gateway.policy.matchers import DomainKind, DomainPattern
from gateway.policy.model import Level
from gateway.policy.rule import Rule

__all__ = ["lint_rules"]


def lint_rules(rules: Sequence[Rule]) -> list[Issue]:
    """All warnings for an ordered rule list."""
    return [*_bypass_depending_on_user(rules), *_shadowed(rules)]


def _bypass_depending_on_user(rules: Sequence[Rule]) -> list[Issue]:
    warnings = []
    for rule in rules:
        if rule.level is not Level.BYPASS or not rule.has_subjects:
            continue
        what = [d.text for d in rule.domains if d.depends_on_subject] + [
            r.source for r in rule.resources if r.depends_on_subject
        ]
        warnings.append(
            Issue(
                rule.source,
                f"bypass rule depends on the user ({', '.join(what)}); before login every "
                "request matches it potentially and passes without logging in",
            )
        )
    return warnings


def _dot_suffixes(name: str) -> list[str]:
    """``a.b.c`` → ``[.b.c, .c]``; ``.b.c`` → ``[.b.c, .c]``."""
    suffixes = []
    dot = name.find(".")
    while dot != -1:
        suffixes.append(name[dot:])
        dot = name.find(".", dot + 1)
    return suffixes


class _StaticDomains:
    """The subject-independent part of a rule's domain condition."""

    __slots__ = ("exact", "wildcards")

    def __init__(self, rule: Rule) -> None:
        self.exact = {d.name for d in rule.domains if d.kind is DomainKind.EXACT}
        self.wildcards = {d.name for d in rule.domains if d.kind is DomainKind.WILDCARD}

    def covers(self, domain: DomainPattern) -> bool:
        """True when every host ``domain`` can match is matched by these entries."""
        if domain.kind is DomainKind.EXACT:
            if domain.name in self.exact:
                return True
            return any(suffix in self.wildcards for suffix in _dot_suffixes(domain.name))
        # *.x, {user}.x, {group}.x only match hosts ending in .x when .x starts with a dot.
        if not domain.name.startswith("."):
            return False
        return any(suffix in self.wildcards for suffix in _dot_suffixes(domain.name))


def _shadowed(rules: Sequence[Rule]) -> list[Issue]:
    warnings = []
    static = [_StaticDomains(rule) for rule in rules]
    exact_index: dict[str, list[int]] = {}
    wildcard_index: dict[str, list[int]] = {}
    for j, rule in enumerate(rules):
        if rule.domains and not rule.domain_regexes:
            first = rule.domains[0]
            names = _dot_suffixes(first.name)
            candidates = set(exact_index.get(first.name, ()))
            for suffix in names:
                candidates.update(wildcard_index.get(suffix, ()))
            for i in sorted(candidates):
                earlier = rules[i]
                if all(static[i].covers(domain) for domain in rule.domains) and _implied(
                    earlier, rule
                ):
                    warnings.append(
                        Issue(
                            rule.source,
                            f"rule #{rule.position} can never match: rule #{earlier.position} "
                            f"({earlier.source}) comes first and matches every request it would",
                        )
                    )
                    break
        for name in static[j].exact:
            exact_index.setdefault(name, []).append(j)
        for name in static[j].wildcards:
            wildcard_index.setdefault(name, []).append(j)
    return warnings


def _implied(earlier: Rule, later: Rule) -> bool:
    """True when every non-domain condition of ``earlier`` holds whenever ``later``'s do."""
    if earlier.methods is not None and (
        later.methods is None or not later.methods <= earlier.methods
    ):
        return False
    if earlier.networks is not None and (
        later.networks is None or not earlier.networks.covers(later.networks)
    ):
        return False
    if earlier.resources:
        mine = {r.source for r in earlier.resources}
        if not later.resources or not {r.source for r in later.resources} <= mine:
            return False
    if earlier.query:
        mine_query = [{c.identity for c in group} for group in earlier.query]
        if not later.query:
            return False
        for group in later.query:
            theirs = {c.identity for c in group}
            if not any(conditions <= theirs for conditions in mine_query):
                return False
    if earlier.subjects:
        if not later.subjects:
            return False
        for alternative in later.subjects:
            if not any(alternative.implies(mine) for mine in earlier.subjects):
                return False
    return True
