"""The policy engine: first matching rule wins, found through a host index.

Rules are indexed by what their ``domain`` entries say about the host:

* exact domains in a dict ``host → rules``;
* ``*.example.com``, ``{user}.example.com`` and ``{group}.example.com`` by their suffix
  (``.example.com``), looked up once per dot of the host;
* ``domain_regex`` rules (and placeholders that are not below a dot) in a list scanned for
  every host.

The merged, ordered candidate list of a host is memoised in a bounded cache, so a decision
with 10,000 host-specific rules costs about what it costs with 10. First-match order is kept:
candidates are sorted by rule position.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from gateway.config.yaml import Issue
from gateway.memo import BoundedMemo
from gateway.policy.matchers import DomainKind
from gateway.policy.model import Decision, Level, RuleRef, Subject, Target
from gateway.policy.rule import Rule

if TYPE_CHECKING:
    from gateway.credentials.api_keys import ApiKey
    from gateway.credentials.settings import ApiHostSettings

__all__ = ["PolicyEngine"]

# (rule, the host alone proves the domain condition)
_Candidate = tuple[Rule, bool]


class PolicyEngine:
    """A compiled policy. Build it with :func:`gateway.policy.load_policy`.

    Besides the rules it carries the API hosts and API keys the policy files declare
    (``api_hosts:``, ``api_keys:``), so that a reload replaces them together with the rules.
    """

    def __init__(
        self,
        rules: Sequence[Rule],
        default_level: Level = Level.DENY,
        *,
        warnings: Iterable[Issue] = (),
        sources: Iterable[str] = (),
        api_hosts: Iterable[ApiHostSettings] = (),
        static_api_keys: Iterable[ApiKey] = (),
        cache_size: int = 4096,
    ) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.default_level = default_level
        self.warnings: tuple[Issue, ...] = tuple(warnings)
        self.sources: tuple[str, ...] = tuple(sources)
        self.api_hosts: tuple[ApiHostSettings, ...] = tuple(api_hosts)
        """API hosts declared in the policy files, in file order."""
        self.static_api_keys: tuple[ApiKey, ...] = tuple(static_api_keys)
        """API keys declared (by hash) in the policy files."""
        self.requires_two_factor = default_level is Level.TWO_FACTOR or any(
            rule.level is Level.TWO_FACTOR for rule in self.rules
        )
        self._default = Decision(default_level, None, potential=False)
        # Host -> its candidate rules; hosts come from clients, so bounded (gateway/memo.py).
        self._cache: BoundedMemo[str, tuple[_Candidate, ...]] | None = (
            BoundedMemo(cache_size, cache_size * 512) if cache_size > 0 else None
        )
        self._exact: dict[str, list[tuple[int, bool]]] = {}
        self._suffix: dict[str, list[tuple[int, bool]]] = {}
        self._scan: list[tuple[int, bool]] = []
        for index, rule in enumerate(self.rules):
            self._index(index, rule)

    def _index(self, index: int, rule: Rule) -> None:
        for domain in rule.domains:
            if domain.kind is DomainKind.EXACT:
                self._exact.setdefault(domain.name, []).append((index, True))
            elif domain.name.startswith("."):
                certain = domain.kind is DomainKind.WILDCARD
                self._suffix.setdefault(domain.name, []).append((index, certain))
            else:
                self._scan.append((index, False))
        if rule.domain_regexes:
            self._scan.append((index, False))

    def decide(self, target: Target, subject: Subject) -> Decision:
        """The decision for ``target`` requested by ``subject``: the first matching rule's
        level, or the default policy. For an anonymous subject a rule that depends on the
        user matches potentially and the decision says so.
        """
        host = target.host
        cache = self._cache
        candidates = cache.get(host) if cache is not None else None
        if candidates is None:
            candidates = self._candidates(host)
            if cache is not None:
                cache.put(host, candidates, len(host))
        anonymous = subject.is_anonymous
        for rule, certain in candidates:
            if (certain or rule.matches_domain(host, subject, anonymous)) and rule.matches_request(
                target, subject, anonymous
            ):
                return rule.anonymous_decision if anonymous else rule.decision
        return self._default

    def host_rules(self, host: str) -> tuple[RuleRef, ...]:
        """The rules that may apply to ``host`` (a lower-case host name), in order."""
        return tuple(rule.ref for rule, _ in self._candidates(host))

    def _candidates(self, host: str) -> tuple[_Candidate, ...]:
        found: dict[int, bool] = {}
        for index, certain in self._exact.get(host, ()):
            found[index] = found.get(index, False) or certain
        dot = host.find(".")
        while dot != -1:
            for index, certain in self._suffix.get(host[dot:], ()):
                found[index] = found.get(index, False) or certain
            dot = host.find(".", dot + 1)
        for index, certain in self._scan:
            found[index] = found.get(index, False) or certain
        rules = self.rules
        return tuple((rules[index], found[index]) for index in sorted(found))

    def __repr__(self) -> str:
        return (
            f"<PolicyEngine {len(self.rules)} rules, default {self.default_level.policy}, "
            f"from {', '.join(self.sources) or 'memory'}>"
        )
