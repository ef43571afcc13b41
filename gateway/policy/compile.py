"""Policy documents → validated, compiled :class:`~gateway.policy.rule.Rule` objects.

Validation is at least as strict as Authelia's ``validator/access_control.go``: every problem
in every file is collected with its ``file:line:column`` before anything is refused.

:class:`PolicyCompiler` runs the steps: :mod:`gateway.policy.decode` reads each document's
sections, :mod:`gateway.policy.checks` says what each value means, and the compiler builds the
rules and compiles the API declarations (:mod:`gateway.policy.declarations`) once every
network name is known.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gateway.config.yaml import Document, Issue, Position, YamlPath
from gateway.net import IPNetwork, NetworkSet
from gateway.policy import checks
from gateway.policy.declarations import ApiDeclarations
from gateway.policy.decode import QUERY_KEYS, RULE_KEYS, PolicySections, Problems
from gateway.policy.matchers import (
    DomainPattern,
    QueryCondition,
    RegexMatcher,
    SubjectAlternative,
)
from gateway.policy.model import POLICY_NAMES, Level
from gateway.policy.rule import Rule

if TYPE_CHECKING:
    from gateway.credentials.api_keys import ApiKey
    from gateway.credentials.settings import ApiHostSettings

__all__ = ["PolicyCompiler"]


class PolicyCompiler:
    """Collects policy documents, then compiles their rules in order.

    Add every document first (network names defined in one file may be used in another),
    then call :meth:`compile`. Problems accumulate in :attr:`issues`; warnings in
    :attr:`warnings`; the declared API hosts and keys are in :attr:`api_hosts` and
    :attr:`static_api_keys` after :meth:`compile`. ``environ`` serves ``networks_env``
    (default: the process environment).
    """

    def __init__(self, *, environ: Mapping[str, str] | None = None) -> None:
        self._problems = Problems()
        self.issues: list[Issue] = self._problems.issues
        self.warnings: list[Issue] = self._problems.warnings
        self.api_hosts: tuple[ApiHostSettings, ...] = ()
        self.static_api_keys: tuple[ApiKey, ...] = ()
        self._environ = environ
        self._sections = PolicySections(self._problems)
        self._declarations = ApiDeclarations()

    def add(self, document: Document) -> None:
        """Read one policy document's ``definitions``, ``access_control``, ``api_hosts`` and
        ``api_keys`` sections."""
        data = self._sections.add(document)
        if data is not None:
            self._declarations.add_hosts(document, data.get("api_hosts"))
            self._declarations.add_keys(document, data.get("api_keys"))

    @property
    def default_level(self) -> Level:
        """The ``default_policy`` read so far; ``deny`` when none was given."""
        default = self._sections.default
        return default[0] if default is not None else Level.DENY

    def compile(self) -> list[Rule]:
        """Compile every rule read so far, in order, and the API declarations; problems go
        to :attr:`issues`."""
        sections = self._sections
        rules: list[Rule] = []
        for position, (document, path, data) in enumerate(sections.rules, start=1):
            rule = self._compile_rule(position, document, path, data)
            if rule is not None:
                rules.append(rule)
        declarations = self._declarations
        self.api_hosts = declarations.compile_hosts(self._network, self._environ)
        self.static_api_keys = declarations.compile_keys(self._network)
        self.issues.extend(declarations.issues)
        if not sections.rules and self.default_level not in (Level.ONE_FACTOR, Level.TWO_FACTOR):
            if sections.default is not None:
                where: Position | None = sections.default[1]
                current = self.default_level.policy
            else:
                where = sections.missing_at
                current = f"{self.default_level.policy}, the default when it is not set"
            self.issues.append(
                Issue(
                    where,
                    "no rules are defined, so default_policy must be one_factor or two_factor "
                    f"(it is {current})",
                )
            )
        return rules

    # ---------------------------------------------------------------- one rule

    def _compile_rule(
        self, position: int, document: Document, path: YamlPath, data: Any
    ) -> Rule | None:
        problems = self._problems
        if not isinstance(data, dict):
            problems.error(
                document,
                path,
                "a rule must be a mapping with 'domain' (or 'domain_regex') and 'policy'",
            )
            return None
        before = len(self.issues)
        problems.unknown_keys(document, path, data, RULE_KEYS, "rule")
        domains = self._domains(document, path, data)
        domain_regexes = self._regexes(document, path, data, "domain_regex", ignore_case=True)
        if "domain" not in data and "domain_regex" not in data:
            problems.error(document, path, "a rule needs 'domain' or 'domain_regex'")
        level: Level | None = None
        if "policy" not in data:
            problems.error(
                document, path, f"a rule needs a 'policy' (expected {', '.join(POLICY_NAMES)})"
            )
        else:
            try:
                level = checks.level(data["policy"])
            except ValueError as error:
                problems.error(document, (*path, "policy"), str(error))
        subjects = self._subjects(document, path, data)
        networks = self._networks_of(document, path, data)
        resources = self._regexes(document, path, data, "resources", ignore_case=False)
        methods = self._methods(document, path, data)
        query = self._query(document, path, data)
        if level is Level.BYPASS:
            if "subject" in data:
                problems.error(
                    document,
                    (*path, "subject"),
                    "policy 'bypass' cannot have a 'subject': the user is unknown until they "
                    "log in (use one_factor)",
                )
            for index, regex in enumerate(domain_regexes):
                if regex.depends_on_subject:
                    problems.error(
                        document,
                        (*path, "domain_regex", index),
                        "policy 'bypass' cannot use a domain_regex with User or Group named "
                        "groups: the user is unknown until they log in",
                    )
        if len(self.issues) > before or level is None:
            return None
        return Rule(
            position=position,
            source=document.position(path),
            level=level,
            domains=domains,
            domain_regexes=domain_regexes,
            resources=resources,
            query=query,
            methods=methods,
            networks=networks,
            subjects=subjects,
        )

    def _domains(
        self, document: Document, path: YamlPath, data: dict[str, Any]
    ) -> list[DomainPattern]:
        if "domain" not in data:
            return []
        problems = self._problems
        found: list[DomainPattern] = []
        for entry_path, text in problems.strings(
            document, (*path, "domain"), data["domain"], "'domain'"
        ):
            try:
                domain, warning = checks.domain(text)
            except ValueError as error:
                problems.error(document, entry_path, str(error))
                continue
            if warning is not None:
                problems.warn(document, entry_path, warning)
            found.append(domain)
        return found

    def _regexes(
        self,
        document: Document,
        path: YamlPath,
        data: dict[str, Any],
        key: str,
        *,
        ignore_case: bool,
    ) -> list[RegexMatcher]:
        if key not in data:
            return []
        problems = self._problems
        found: list[RegexMatcher] = []
        for entry_path, text in problems.strings(document, (*path, key), data[key], f"'{key}'"):
            try:
                found.append(checks.regex(text, ignore_case=ignore_case))
            except ValueError as error:
                problems.error(document, entry_path, str(error))
        return found

    def _subjects(
        self, document: Document, path: YamlPath, data: dict[str, Any]
    ) -> list[SubjectAlternative]:
        if "subject" not in data:
            return []
        problems = self._problems
        where = (*path, "subject")
        value = data["subject"]
        alternatives: list[tuple[YamlPath, list[tuple[YamlPath, Any]]]] = []
        if isinstance(value, str):
            alternatives.append((where, [(where, value)]))
        elif isinstance(value, list) and value:
            for index, entry in enumerate(value):
                entry_path = (*where, index)
                if isinstance(entry, list):
                    items = [((*entry_path, j), item) for j, item in enumerate(entry)]
                    alternatives.append((entry_path, items))
                else:
                    alternatives.append((entry_path, [(entry_path, entry)]))
        else:
            problems.error(
                document,
                where,
                "'subject' must be a string, or a list of strings and lists of strings",
            )
            return []
        compiled: list[SubjectAlternative] = []
        for alternative_path, items in alternatives:
            if not items:
                problems.error(
                    document,
                    alternative_path,
                    "an empty subject list would match everyone; remove it or name a subject",
                )
                continue
            parsed: list[tuple[str, str]] = []
            for item_path, item in items:
                try:
                    parsed.append(checks.subject(item))
                except ValueError as error:
                    problems.error(document, item_path, str(error))
            alternative, warning = checks.subject_alternative(parsed)
            if warning is not None:
                problems.warn(document, alternative_path, warning)
            compiled.append(alternative)
        return compiled

    def _networks_of(
        self, document: Document, path: YamlPath, data: dict[str, Any]
    ) -> NetworkSet | None:
        if "networks" not in data:
            return None
        problems = self._problems
        found: list[IPNetwork] = []
        for entry_path, text in problems.strings(
            document, (*path, "networks"), data["networks"], "'networks'"
        ):
            try:
                found.extend(self._network(text))
            except ValueError as error:
                problems.error(document, entry_path, str(error))
        return NetworkSet(found)

    def _network(self, text: str) -> tuple[IPNetwork, ...]:
        """An address, a CIDR or a defined network name; ValueError if it is none."""
        return checks.network(text, self._sections.networks)

    def _methods(
        self, document: Document, path: YamlPath, data: dict[str, Any]
    ) -> frozenset[str] | None:
        if "methods" not in data:
            return None
        problems = self._problems
        methods: set[str] = set()
        for entry_path, text in problems.strings(
            document, (*path, "methods"), data["methods"], "'methods'"
        ):
            try:
                checks.method(text, methods)
            except ValueError as error:
                problems.error(document, entry_path, str(error))
            methods.add(text.upper())
        return frozenset(methods)

    def _query(
        self, document: Document, path: YamlPath, data: dict[str, Any]
    ) -> list[list[QueryCondition]]:
        if "query" not in data:
            return []
        problems = self._problems
        where = (*path, "query")
        value = data["query"]
        groups: list[list[tuple[YamlPath, Any]]] = []
        if isinstance(value, dict):
            groups.append([(where, value)])
        elif isinstance(value, list) and value:
            for index, entry in enumerate(value):
                entry_path = (*where, index)
                if isinstance(entry, list) and entry:
                    groups.append([((*entry_path, j), item) for j, item in enumerate(entry)])
                elif isinstance(entry, dict):
                    groups.append([(entry_path, entry)])
                else:
                    problems.error(
                        document,
                        entry_path,
                        "a query entry must be a condition {key, value, operator} or a list "
                        "of them",
                    )
        else:
            problems.error(
                document,
                where,
                "'query' must be a list of conditions {key, value, operator} or lists of them",
            )
        compiled: list[list[QueryCondition]] = []
        for group in groups:
            conditions = [self._condition(document, item_path, item) for item_path, item in group]
            compiled.append([condition for condition in conditions if condition is not None])
        return compiled

    def _condition(self, document: Document, path: YamlPath, item: Any) -> QueryCondition | None:
        problems = self._problems
        if not isinstance(item, dict):
            problems.error(
                document, path, "a query condition must be a mapping {key, value, operator}"
            )
            return None
        bad = problems.unknown_keys(document, path, item, QUERY_KEYS, "query condition")
        key = item.get("key")
        if not isinstance(key, str) or not key:
            problems.error(document, path, "a query condition needs a 'key' (text)")
            bad = True
        value = item.get("value")
        if value is not None and not isinstance(value, str):
            problems.error(
                document, (*path, "value"), "the query 'value' must be a string (quote it)"
            )
            return None
        try:
            operator, value, pattern = checks.query(value, item.get("operator"))
        except checks.QueryError as error:
            at = path if error.key is None else (*path, error.key)
            problems.error(document, at, str(error))
            return None
        if bad:
            return None
        assert isinstance(key, str)
        return QueryCondition(key=key, operator=operator, value=value, pattern=pattern)
