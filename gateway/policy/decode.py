"""Reading the YAML shapes of policy documents into plain values with their positions.

:class:`Problems` collects what is wrong (issues) and odd (warnings) with ``file:line:column``
and reads the shapes every section shares (a string or a list of strings; a mapping with
known keys, "did you mean" for the others). :class:`PolicySections` reads each document's
top level, ``definitions`` and ``access_control``: the named networks, the
``default_policy`` and the rules, left as data for :mod:`gateway.policy.compile`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.config.suggest import did_you_mean
from gateway.config.yaml import Document, Issue, Position, YamlPath
from gateway.net import IPNetwork, parse_network
from gateway.policy import checks
from gateway.policy.model import Level

__all__ = [
    "QUERY_KEYS",
    "RULE_KEYS",
    "TOP_LEVEL_KEYS",
    "PolicySections",
    "Problems",
    "RuleSource",
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

RuleSource = tuple[Document, YamlPath, Any]
"""A rule as read: its document, its path there, and its data (not yet checked)."""


class Problems:
    """The issues (errors) and warnings found so far, each with its position."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []
        self.warnings: list[Issue] = []

    def error(
        self, document: Document, path: YamlPath, message: str, *, at_key: bool = False
    ) -> None:
        """An error at ``path`` (at its key with ``at_key``)."""
        self.issues.append(document.issue(path, message, at_key=at_key))

    def warn(
        self, document: Document, path: YamlPath, message: str, *, at_key: bool = False
    ) -> None:
        """A warning at ``path`` (at its key with ``at_key``)."""
        self.warnings.append(document.issue(path, message, at_key=at_key))

    def strings(
        self, document: Document, path: YamlPath, value: Any, what: str
    ) -> list[tuple[YamlPath, str]]:
        """A string or a list of strings, each with its path; problems become issues."""
        if isinstance(value, str):
            entries: list[tuple[YamlPath, Any]] = [(path, value)]
        elif isinstance(value, list) and value:
            entries = [((*path, index), item) for index, item in enumerate(value)]
        else:
            self.error(document, path, f"{what} must be a string or a non-empty list of strings")
            return []
        found: list[tuple[YamlPath, str]] = []
        for entry_path, item in entries:
            if not isinstance(item, str):
                self.error(document, entry_path, f"{what} entries must be strings (quote them)")
            elif not item.strip():
                self.error(document, entry_path, f"{what} has an empty entry")
            else:
                found.append((entry_path, item))
        return found

    def unknown_keys(
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
            self.error(document, (*path, key), message, at_key=True)
        return bool(unknown)


class PolicySections:
    """The top level, ``definitions`` and ``access_control`` of every document read so far.

    Network names defined in one file may be used in another, so :attr:`networks` is
    complete only once every document has been read; :attr:`rules` are left unchecked.
    """

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        self.networks: dict[str, tuple[IPNetwork, ...]] = {}
        """Named networks (``definitions.network``, ``access_control.networks``)."""
        self.default: tuple[Level, Position] | None = None
        """The ``default_policy`` and where it is set, if it is."""
        self.missing_at: Position | None = None
        """Where to point when something is missing rather than wrong: the first
        'access_control' key seen, else the start of the first file."""
        self.rules: list[RuleSource] = []
        self._network_at: dict[str, Position] = {}
        self._access_control_seen = False

    def add(self, document: Document) -> dict[Any, Any] | None:
        """Read one document; its top-level mapping, or None when it is not one."""
        problems = self.problems
        data = document.data
        if self.missing_at is None:
            self.missing_at = document.position(())
        if data is None:
            problems.warnings.append(document.issue((), "the policy file is empty"))
            return None
        if not isinstance(data, dict):
            problems.error(
                document,
                (),
                "a policy file must be a mapping with an 'access_control' section",
            )
            return None
        ignored: list[str] = []
        for key in data:
            if key in TOP_LEVEL_KEYS:
                continue
            hint = did_you_mean(key, TOP_LEVEL_KEYS)
            if hint:
                problems.error(
                    document, (key,), f"unknown top-level key '{key}'{hint}", at_key=True
                )
            else:
                ignored.append(key)
        if ignored:
            names = ", ".join(f"'{key}'" for key in ignored)
            problems.warn(
                document,
                (ignored[0],),
                f"ignoring top-level keys {names}: a policy file only uses "
                "'access_control', 'definitions', 'api_hosts' and 'api_keys'",
                at_key=True,
            )
        if "definitions" in data:
            self._read_definitions(document, data["definitions"])
        if "access_control" in data:
            self._read_access_control(document, data["access_control"])
        if not any(key in data for key in TOP_LEVEL_KEYS):
            problems.warnings.append(document.issue((), "no 'access_control' section in this file"))
        return data

    def _read_definitions(self, document: Document, section: Any) -> None:
        path: YamlPath = ("definitions",)
        if section is None:
            return
        if not isinstance(section, dict):
            self.problems.error(document, path, "'definitions' must be a mapping")
            return
        for key, value in section.items():
            if key != "network":
                self.problems.warn(
                    document,
                    (*path, key),
                    f"ignoring 'definitions.{key}'{did_you_mean(key, ['network'])}",
                    at_key=True,
                )
                continue
            if value is None:
                continue
            if not isinstance(value, dict):
                self.problems.error(
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
            self.missing_at = document.key_position(path)
        if section is None:
            return
        if not isinstance(section, dict):
            self.problems.error(document, path, "'access_control' must be a mapping")
            return
        self.problems.unknown_keys(document, path, section, ACCESS_CONTROL_KEYS, "access_control")
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
            self.problems.error(document, (*path, "rules"), "'rules' must be a list of rules")
            return
        for index, rule in enumerate(rules):
            self.rules.append((document, (*path, "rules", index), rule))

    def _read_default_policy(self, document: Document, path: YamlPath, value: Any) -> None:
        here = document.position(path)
        if self.default is not None:
            self.problems.issues.append(
                Issue(here, f"default_policy is already set at {self.default[1]}")
            )
            return
        try:
            self.default = (checks.level(value), here)
        except ValueError as error:
            self.problems.error(document, path, str(error))

    def _read_network_groups(self, document: Document, path: YamlPath, groups: Any) -> None:
        problems = self.problems
        if not isinstance(groups, list):
            problems.error(document, path, "'networks' must be a list of {name, networks}")
            return
        for index, group in enumerate(groups):
            where = (*path, index)
            if not isinstance(group, dict):
                problems.error(
                    document, where, "a network group must be a mapping {name, networks}"
                )
                continue
            problems.unknown_keys(document, where, group, NETWORK_GROUP_KEYS, "network group")
            name = group.get("name")
            if not isinstance(name, str) or not name:
                problems.error(document, where, "a network group needs a 'name'")
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
        problems = self.problems
        if not isinstance(name, str) or not name:
            problems.issues.append(Issue(here, "a network name must be text"))
            return
        if name in self.networks:
            problems.issues.append(
                Issue(here, f"network '{name}' is already defined at {self._network_at[name]}")
            )
            return
        entries = problems.strings(document, path, value, f"network '{name}'")
        networks: list[IPNetwork] = []
        for entry_path, text in entries:
            try:
                networks.append(parse_network(text))
            except ValueError as error:
                problems.error(document, entry_path, f"invalid network in '{name}': {error}")
        self.networks[name] = tuple(networks)
        self._network_at[name] = here
