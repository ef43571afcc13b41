"""Policy documents → validated, compiled :class:`~gateway.policy.rule.Rule` objects.

Validation is at least as strict as Authelia's ``validator/access_control.go``: every problem
in every file is collected with its ``file:line:column`` before anything is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from ipaddress import IPv6Address
from typing import TYPE_CHECKING, Any

from gateway.config.suggest import closest, did_you_mean, suggestion
from gateway.config.yaml import Document, Issue, Position, YamlPath
from gateway.net import IPNetwork, NetworkSet, parse_network
from gateway.policy.declarations import ApiDeclarations
from gateway.policy.matchers import (
    DomainKind,
    DomainPattern,
    QueryCondition,
    QueryOperator,
    RegexMatcher,
    SubjectAlternative,
)
from gateway.policy.model import POLICY_NAMES, Level
from gateway.policy.regex import compile_pattern
from gateway.policy.rule import Rule

if TYPE_CHECKING:
    from gateway.credentials.api_keys import ApiKey
    from gateway.credentials.settings import ApiHostSettings

__all__ = [
    "METHODS",
    "RULE_KEYS",
    "SUBJECT_PREFIXES",
    "PolicyCompiler",
]

TOP_LEVEL_KEYS = ("access_control", "definitions", "api_hosts", "api_keys")
ACCESS_CONTROL_KEYS = ("default_policy", "networks", "rules")
RULE_KEYS = (
    "domain",
    "domain_regex",
    "policy",
    "subject",
    "networks",
    "resources",
    "methods",
    "query",
)
QUERY_KEYS = ("key", "value", "operator")
NETWORK_GROUP_KEYS = ("name", "networks")

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


class PolicyCompiler:
    """Collects policy documents, then compiles their rules in order.

    Add every document first (network names defined in one file may be used in another),
    then call :meth:`compile`. Problems accumulate in :attr:`issues`; warnings in
    :attr:`warnings`; the declared API hosts and keys are in :attr:`api_hosts` and
    :attr:`static_api_keys` after :meth:`compile`. ``environ`` serves ``networks_env``
    (default: the process environment).
    """

    def __init__(self, *, environ: Mapping[str, str] | None = None) -> None:
        self.issues: list[Issue] = []
        self.warnings: list[Issue] = []
        self.api_hosts: tuple[ApiHostSettings, ...] = ()
        self.static_api_keys: tuple[ApiKey, ...] = ()
        self._environ = environ
        self._networks: dict[str, tuple[tuple[IPNetwork, ...], Position]] = {}
        self._default: tuple[Level, Position] | None = None
        # Where to point when something is missing rather than wrong: the first
        # 'access_control' key seen, else the start of the first file.
        self._missing_at: Position | None = None
        self._access_control_seen = False
        self._rules: list[tuple[Document, YamlPath, Any]] = []
        self._declarations = ApiDeclarations()

    # ---------------------------------------------------------------- reading documents

    def add(self, document: Document) -> None:
        """Read one policy document's ``definitions``, ``access_control``, ``api_hosts`` and
        ``api_keys`` sections."""
        data = document.data
        if self._missing_at is None:
            self._missing_at = document.position(())
        if data is None:
            self.warnings.append(document.issue((), "the policy file is empty"))
            return
        if not isinstance(data, dict):
            self._error(
                document,
                (),
                "a policy file must be a mapping with an 'access_control' section",
            )
            return
        ignored: list[str] = []
        for key in data:
            if key in TOP_LEVEL_KEYS:
                continue
            hint = did_you_mean(key, TOP_LEVEL_KEYS)
            if hint:
                self._error(document, (key,), f"unknown top-level key '{key}'{hint}", at_key=True)
            else:
                ignored.append(key)
        if ignored:
            names = ", ".join(f"'{key}'" for key in ignored)
            self.warnings.append(
                document.issue(
                    (ignored[0],),
                    f"ignoring top-level keys {names}: a policy file only uses "
                    "'access_control', 'definitions', 'api_hosts' and 'api_keys'",
                    at_key=True,
                )
            )
        if "definitions" in data:
            self._read_definitions(document, data["definitions"])
        if "access_control" in data:
            self._read_access_control(document, data["access_control"])
        self._declarations.add_hosts(document, data.get("api_hosts"))
        self._declarations.add_keys(document, data.get("api_keys"))
        if not any(key in data for key in TOP_LEVEL_KEYS):
            self.warnings.append(document.issue((), "no 'access_control' section in this file"))

    def _read_definitions(self, document: Document, section: Any) -> None:
        path: YamlPath = ("definitions",)
        if section is None:
            return
        if not isinstance(section, dict):
            self._error(document, path, "'definitions' must be a mapping")
            return
        for key, value in section.items():
            if key != "network":
                self.warnings.append(
                    document.issue(
                        (*path, key),
                        f"ignoring 'definitions.{key}'{did_you_mean(key, ['network'])}",
                        at_key=True,
                    )
                )
                continue
            if value is None:
                continue
            if not isinstance(value, dict):
                self._error(
                    document, (*path, key), "'definitions.network' must map names to networks"
                )
                continue
            for name, networks in value.items():
                where = (*path, key, name)
                self._define_network(document, where, document.key_position(where), name, networks)

    def _read_access_control(self, document: Document, section: Any) -> None:
        path: YamlPath = ("access_control",)
        if not self._access_control_seen:
            self._access_control_seen = True
            self._missing_at = document.key_position(path)
        if section is None:
            return
        if not isinstance(section, dict):
            self._error(document, path, "'access_control' must be a mapping")
            return
        self._unknown_keys(document, path, section, ACCESS_CONTROL_KEYS, "access_control")
        if section.get("default_policy") is not None:  # empty means "not set", as in Authelia
            self._read_default_policy(
                document, (*path, "default_policy"), section["default_policy"]
            )
        groups = section.get("networks")
        if groups is not None:
            self._read_network_groups(document, (*path, "networks"), groups)
        rules = section.get("rules")
        if rules is None:
            return
        if not isinstance(rules, list):
            self._error(document, (*path, "rules"), "'rules' must be a list of rules")
            return
        for index, rule in enumerate(rules):
            self._rules.append((document, (*path, "rules", index), rule))

    def _read_default_policy(self, document: Document, path: YamlPath, value: Any) -> None:
        here = document.position(path)
        if self._default is not None:
            self.issues.append(Issue(here, f"default_policy is already set at {self._default[1]}"))
            return
        level = self._level(document, path, value)
        if level is not None:
            self._default = (level, here)

    def _read_network_groups(self, document: Document, path: YamlPath, groups: Any) -> None:
        if not isinstance(groups, list):
            self._error(document, path, "'networks' must be a list of {name, networks}")
            return
        for index, group in enumerate(groups):
            where = (*path, index)
            if not isinstance(group, dict):
                self._error(document, where, "a network group must be a mapping {name, networks}")
                continue
            self._unknown_keys(document, where, group, NETWORK_GROUP_KEYS, "network group")
            name = group.get("name")
            if not isinstance(name, str) or not name:
                self._error(document, where, "a network group needs a 'name'")
                continue
            self._define_network(
                document,
                (*where, "networks"),
                document.position((*where, "name")),
                name,
                group.get("networks"),
            )

    def _define_network(
        self, document: Document, path: YamlPath, here: Position, name: Any, value: Any
    ) -> None:
        if not isinstance(name, str) or not name:
            self.issues.append(Issue(here, "a network name must be text"))
            return
        if name in self._networks:
            self.issues.append(
                Issue(here, f"network '{name}' is already defined at {self._networks[name][1]}")
            )
            return
        entries = self._strings(document, path, value, f"network '{name}'")
        networks: list[IPNetwork] = []
        for entry_path, text in entries:
            try:
                networks.append(parse_network(text))
            except ValueError as error:
                self._error(document, entry_path, f"invalid network in '{name}': {error}")
        self._networks[name] = (tuple(networks), here)

    # ---------------------------------------------------------------- compiling rules

    @property
    def default_level(self) -> Level:
        """The ``default_policy`` read so far; ``deny`` when none was given."""
        return self._default[0] if self._default is not None else Level.DENY

    def compile(self) -> list[Rule]:
        """Compile every rule read so far, in order, and the API declarations; problems go
        to :attr:`issues`."""
        rules: list[Rule] = []
        for position, (document, path, data) in enumerate(self._rules, start=1):
            rule = self._compile_rule(position, document, path, data)
            if rule is not None:
                rules.append(rule)
        declarations = self._declarations
        self.api_hosts = declarations.compile_hosts(self._network, self._environ)
        self.static_api_keys = declarations.compile_keys(self._network)
        self.issues.extend(declarations.issues)
        if not self._rules and self.default_level not in (Level.ONE_FACTOR, Level.TWO_FACTOR):
            if self._default is not None:
                where: Position | None = self._default[1]
                current = self.default_level.policy
            else:
                where = self._missing_at
                current = f"{self.default_level.policy}, the default when it is not set"
            self.issues.append(
                Issue(
                    where,
                    "no rules are defined, so default_policy must be one_factor or two_factor "
                    f"(it is {current})",
                )
            )
        return rules

    def _compile_rule(
        self, position: int, document: Document, path: YamlPath, data: Any
    ) -> Rule | None:
        if not isinstance(data, dict):
            self._error(
                document,
                path,
                "a rule must be a mapping with 'domain' (or 'domain_regex') and 'policy'",
            )
            return None
        before = len(self.issues)
        self._unknown_keys(document, path, data, RULE_KEYS, "rule")
        domains = self._domains(document, path, data)
        domain_regexes = self._regexes(document, path, data, "domain_regex", ignore_case=True)
        if "domain" not in data and "domain_regex" not in data:
            self._error(document, path, "a rule needs 'domain' or 'domain_regex'")
        level: Level | None = None
        if "policy" not in data:
            self._error(
                document, path, f"a rule needs a 'policy' (expected {', '.join(POLICY_NAMES)})"
            )
        else:
            level = self._level(document, (*path, "policy"), data["policy"])
        subjects = self._subjects(document, path, data)
        networks = self._networks_of(document, path, data)
        resources = self._regexes(document, path, data, "resources", ignore_case=False)
        methods = self._methods(document, path, data)
        query = self._query(document, path, data)
        if level is Level.BYPASS:
            if "subject" in data:
                self._error(
                    document,
                    (*path, "subject"),
                    "policy 'bypass' cannot have a 'subject': the user is unknown until they "
                    "log in (use one_factor)",
                )
            for index, regex in enumerate(domain_regexes):
                if regex.depends_on_subject:
                    self._error(
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

    def _level(self, document: Document, path: YamlPath, value: Any) -> Level | None:
        if not isinstance(value, str):
            self._error(
                document,
                path,
                f"the policy must be one of {', '.join(POLICY_NAMES)}",
            )
            return None
        try:
            return Level.from_policy(value)
        except ValueError as error:
            self._error(document, path, str(error))
            return None

    def _domains(
        self, document: Document, path: YamlPath, data: dict[str, Any]
    ) -> list[DomainPattern]:
        if "domain" not in data:
            return []
        found: list[DomainPattern] = []
        for entry_path, text in self._strings(
            document, (*path, "domain"), data["domain"], "'domain'"
        ):
            if _DOMAIN_FORBIDDEN.intersection(text) and not _is_ipv6(text):
                self._error(
                    document,
                    entry_path,
                    f"invalid domain '{text}': write the host name only, without scheme, port "
                    "or path",
                )
                continue
            domain = DomainPattern.parse(str(IPv6Address(text)) if _is_ipv6(text) else text)
            stars = domain.text.count("*")
            if stars and not (domain.kind is DomainKind.WILDCARD and stars == 1):
                hint = ""
                if domain.text.startswith("*") and not domain.text.startswith("*."):
                    hint = suggestion(f"*.{domain.text[1:]}") if len(domain.text) > 1 else ""
                self.warnings.append(
                    document.issue(
                        entry_path,
                        f"domain '{text}' matches no host: only a leading '*.' is a wildcard{hint}",
                    )
                )
            elif domain.kind is DomainKind.WILDCARD and domain.name == ".":
                self._error(document, entry_path, "the wildcard domain '*.' names no domain")
                continue
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
        found: list[RegexMatcher] = []
        for entry_path, text in self._strings(document, (*path, key), data[key], f"'{key}'"):
            try:
                found.append(
                    RegexMatcher.build(text, compile_pattern(text, ignore_case=ignore_case))
                )
            except ValueError as error:
                self._error(document, entry_path, str(error))
        return found

    def _subjects(
        self, document: Document, path: YamlPath, data: dict[str, Any]
    ) -> list[SubjectAlternative]:
        if "subject" not in data:
            return []
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
            self._error(
                document,
                where,
                "'subject' must be a string, or a list of strings and lists of strings",
            )
            return []
        compiled: list[SubjectAlternative] = []
        for alternative_path, items in alternatives:
            if not items:
                self._error(
                    document,
                    alternative_path,
                    "an empty subject list would match everyone; remove it or name a subject",
                )
                continue
            users: set[str] = set()
            groups: set[str] = set()
            credentials: set[str] = set()
            for item_path, item in items:
                parsed = self._subject(document, item_path, item)
                if parsed is None:
                    continue
                prefix, name = parsed
                if prefix == "user:":
                    users.add(name)
                elif prefix == "group:":
                    groups.add(name)
                else:
                    credentials.add(prefix + name)
            if len(users) > 1:
                self.warnings.append(
                    document.issue(
                        alternative_path,
                        f"subject needs users {', '.join(sorted(users))} at once; a request has "
                        "one user, so it never matches",
                    )
                )
            compiled.append(
                SubjectAlternative(frozenset(users), frozenset(groups), frozenset(credentials))
            )
        return compiled

    def _subject(self, document: Document, path: YamlPath, item: Any) -> tuple[str, str] | None:
        if not isinstance(item, str):
            self._error(document, path, "a subject must be a string such as 'user:john'")
            return None
        for prefix in SUBJECT_PREFIXES:
            if item.startswith(prefix):
                name = item[len(prefix) :].strip(" ")
                if not name:
                    self._error(document, path, f"subject '{item}' names no {prefix[:-1]}")
                    return None
                return prefix, name
        word, colon, rest = item.partition(":")
        hint = ""
        if colon and (close := closest(word, _SUBJECT_WORDS)) is not None:
            hint = suggestion(f"{close}:{rest}")
        self._error(
            document,
            path,
            f"invalid subject '{item}': must start with {_join_or(SUBJECT_PREFIXES)}{hint}",
        )
        return None

    def _networks_of(
        self, document: Document, path: YamlPath, data: dict[str, Any]
    ) -> NetworkSet | None:
        if "networks" not in data:
            return None
        found: list[IPNetwork] = []
        for entry_path, text in self._strings(
            document, (*path, "networks"), data["networks"], "'networks'"
        ):
            try:
                found.extend(self._network(text))
            except ValueError as error:
                self._error(document, entry_path, str(error))
        return NetworkSet(found)

    def _network(self, text: str) -> tuple[IPNetwork, ...]:
        """Like Authelia: an address or CIDR first, then a network name; ValueError if none."""
        try:
            return (parse_network(text),)
        except ValueError:
            pass
        named = self._networks.get(text)
        if named is not None:
            return named[0]
        known = sorted(self._networks)
        hint = did_you_mean(text, known) or (
            f" (defined: {', '.join(known)})" if known else " (no networks are defined)"
        )
        raise ValueError(
            f"unknown network '{text}': not an IP address, a CIDR or a defined network name{hint}"
        )

    def _methods(
        self, document: Document, path: YamlPath, data: dict[str, Any]
    ) -> frozenset[str] | None:
        if "methods" not in data:
            return None
        methods: set[str] = set()
        for entry_path, text in self._strings(
            document, (*path, "methods"), data["methods"], "'methods'"
        ):
            method = text.upper()
            if method not in _METHOD_SET:
                self._error(
                    document,
                    entry_path,
                    f"unknown method '{text}' (expected one of {', '.join(METHODS)})",
                )
            elif method in methods:
                self._error(document, entry_path, f"duplicate method '{text}'")
            methods.add(method)
        return frozenset(methods)

    def _query(
        self, document: Document, path: YamlPath, data: dict[str, Any]
    ) -> list[list[QueryCondition]]:
        if "query" not in data:
            return []
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
                    self._error(
                        document,
                        entry_path,
                        "a query entry must be a condition {key, value, operator} or a list "
                        "of them",
                    )
        else:
            self._error(
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
        if not isinstance(item, dict):
            self._error(
                document, path, "a query condition must be a mapping {key, value, operator}"
            )
            return None
        bad = self._unknown_keys(document, path, item, QUERY_KEYS, "query condition")
        key = item.get("key")
        if not isinstance(key, str) or not key:
            self._error(document, path, "a query condition needs a 'key' (text)")
            bad = True
        value = item.get("value")
        if value is not None and not isinstance(value, str):
            self._error(document, (*path, "value"), "the query 'value' must be a string (quote it)")
            return None
        raw_operator = item.get("operator")
        if raw_operator is None:
            operator = QueryOperator.PRESENT if not value else QueryOperator.EQUAL
        elif isinstance(raw_operator, str) and raw_operator.lower() in _OPERATORS:
            operator = _OPERATORS[raw_operator.lower()]
        else:
            self._error(
                document,
                (*path, "operator"),
                f"unknown query operator '{raw_operator}' (expected {', '.join(_OPERATORS)})",
            )
            return None
        if operator in _VALUELESS:
            if value:
                self._error(
                    document,
                    (*path, "value"),
                    f"the query 'value' must not be set when the operator is '{operator.value}'",
                )
                return None
            value = None
        elif value is None:
            self._error(
                document,
                path,
                f"the query 'value' is required when the operator is '{operator.value}'",
            )
            return None
        pattern = None
        if operator in (QueryOperator.PATTERN, QueryOperator.NOT_PATTERN):
            assert value is not None
            try:
                pattern = compile_pattern(value)
            except ValueError as error:
                self._error(document, (*path, "value"), str(error))
                return None
        if bad:
            return None
        assert isinstance(key, str)
        return QueryCondition(key=key, operator=operator, value=value, pattern=pattern)

    # ---------------------------------------------------------------- helpers

    def _strings(
        self, document: Document, path: YamlPath, value: Any, what: str
    ) -> list[tuple[YamlPath, str]]:
        """A string or a list of strings, each with its path; problems become issues."""
        if isinstance(value, str):
            entries: list[tuple[YamlPath, Any]] = [(path, value)]
        elif isinstance(value, list) and value:
            entries = [((*path, index), item) for index, item in enumerate(value)]
        else:
            self._error(document, path, f"{what} must be a string or a non-empty list of strings")
            return []
        found: list[tuple[YamlPath, str]] = []
        for entry_path, item in entries:
            if not isinstance(item, str):
                self._error(document, entry_path, f"{what} entries must be strings (quote them)")
            elif not item.strip():
                self._error(document, entry_path, f"{what} has an empty entry")
            else:
                found.append((entry_path, item))
        return found

    def _error(
        self, document: Document, path: YamlPath, message: str, *, at_key: bool = False
    ) -> None:
        self.issues.append(document.issue(path, message, at_key=at_key))

    def _unknown_keys(
        self,
        document: Document,
        path: YamlPath,
        mapping: Mapping[str, Any],
        known: Sequence[str],
        what: str,
    ) -> bool:
        """An error at every key of ``mapping`` (at ``path``) that is not ``known``; whether
        there was one."""
        unknown = [key for key in mapping if key not in known]
        for key in unknown:
            message = f"unknown key '{key}' in {what}{did_you_mean(key, known)}"
            self._error(document, (*path, key), message, at_key=True)
        return bool(unknown)


def _is_ipv6(text: str) -> bool:
    try:
        IPv6Address(text)
    except ValueError:
        return False
    return True
