"""``api_hosts:`` and ``api_keys:`` in policy files: machine access declared in Git.

An entry is validated by the code that validates the same thing elsewhere, so the two cannot
drift apart: an API host by :class:`~gateway.credentials.settings.ApiHostSettings` (as under
``credentials.api_hosts`` in ``gateway.yml``), a key by
:func:`~gateway.credentials.api_key_declarations.load_static_api_keys` (the declaration
``gateway keys create --static`` prints). On top, ``networks`` may name networks defined in
any policy file (``definitions.network``, ``access_control.networks``), and every problem is
reported with its ``file:line:column``.

Those two are imported only when a policy declares something: loading a policy without
declarations does not pull in pydantic and the storage layer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gateway.config.yaml import Document, Issue, Position, YamlPath, in_file_order
from gateway.net import IPNetwork

if TYPE_CHECKING:
    from gateway.credentials.api_keys import ApiKey
    from gateway.credentials.settings import ApiHostSettings

__all__ = ["ApiDeclarations", "NetworkResolver"]

NetworkResolver = Callable[[str], tuple[IPNetwork, ...]]
"""An address, a CIDR or a defined network name → its networks; ValueError if it is none."""

_Section = tuple[Document, YamlPath, Any]


class ApiDeclarations:
    """Collects the ``api_hosts`` and ``api_keys`` sections of every policy file, then
    compiles them once every network name is known. Problems go to :attr:`issues`.
    """

    def __init__(self) -> None:
        self.issues: list[Issue] = []
        self._hosts: list[_Section] = []
        self._keys: list[_Section] = []

    def add_hosts(self, document: Document, section: Any) -> None:
        """Remember a document's ``api_hosts:`` list."""
        if section is not None:
            self._hosts.append((document, ("api_hosts",), section))

    def add_keys(self, document: Document, section: Any) -> None:
        """Remember a document's ``api_keys:`` list."""
        if section is not None:
            self._keys.append((document, ("api_keys",), section))

    # ---------------------------------------------------------------- API hosts

    def compile_hosts(
        self, resolve: NetworkResolver, environ: Mapping[str, str] | None = None
    ) -> tuple[ApiHostSettings, ...]:
        """Every declared API host, in file order; ``environ`` serves ``networks_env``."""
        if not self._hosts:
            return ()
        from pydantic import ValidationError

        from gateway.config.schema import validation_issues
        from gateway.credentials.settings import ApiHostSettings

        start = len(self.issues)
        hosts: list[ApiHostSettings] = []
        seen: dict[str, Position] = {}
        context = {"environ": environ}
        for document, path, section in self._hosts:
            if not isinstance(section, list):
                self._error(document, path, "'api_hosts' must be a list of {domain, networks}")
                continue
            for index, entry in enumerate(section):
                here = (*path, index)
                if not isinstance(entry, dict):
                    self._error(
                        document, here, "an API host must be a mapping {domain, networks, upstream}"
                    )
                    continue
                before = len(self.issues)
                data = dict(entry)
                if data.get("networks") is not None:
                    data["networks"] = self._networks(document, here, data["networks"], resolve)
                try:
                    host = ApiHostSettings.model_validate(data, context=context)
                except ValidationError as error:
                    self.issues.extend(
                        validation_issues(document, error, model=ApiHostSettings, prefix=here)
                    )
                    continue
                if len(self.issues) > before:
                    continue
                where = document.position((*here, "domain"))
                first = seen.get(host.domain)
                if first is not None:
                    self.issues.append(
                        Issue(where, f"API host '{host.domain}' is already declared at {first}")
                    )
                    continue
                seen[host.domain] = where
                hosts.append(host)
        self._in_file_order(start)
        return tuple(hosts)

    # ---------------------------------------------------------------- API keys

    def compile_keys(self, resolve: NetworkResolver) -> tuple[ApiKey, ...]:
        """Every declared key, in file order; names and ids are unique across files."""
        if not self._keys:
            return ()
        from gateway.credentials.api_key_declarations import StaticKeyError, load_static_api_keys

        start = len(self.issues)
        keys: list[ApiKey] = []
        names: dict[str, Position] = {}
        ids: dict[str, Position] = {}
        for document, path, section in self._keys:
            if not isinstance(section, list):
                self._error(
                    document, path, "'api_keys' must be a list of {name, id, hash} declarations"
                )
                continue
            before = len(self.issues)
            entries = [
                {**entry, "networks": self._networks(document, (*path, index), value, resolve)}
                if isinstance(entry, dict) and (value := entry.get("networks")) is not None
                else entry
                for index, entry in enumerate(section)
            ]
            try:
                declared = load_static_api_keys(entries, path=path)
            except StaticKeyError as error:
                self.issues.extend(
                    document.issue(where, message, at_key=where in error.unknown)
                    for where, message in error.problems
                )
                continue
            if len(self.issues) > before:
                continue
            # load_static_api_keys compiles every entry or raises: keys and entries pair up.
            for index, key in enumerate(declared):
                here = (*path, index)
                for label, value, field, known in (
                    ("name", key.name, "name", names),
                    ("id", key.key_id, "id", ids),
                ):
                    where = document.position((*here, field))
                    first = known.get(value)
                    if first is not None:
                        message = f"API key {label} '{value}' is already declared at {first}"
                        self.issues.append(Issue(where, message))
                    else:
                        known[value] = where
            keys.extend(declared)
        self._in_file_order(start)
        return tuple(keys)

    # ---------------------------------------------------------------- helpers

    def _networks(
        self, document: Document, path: YamlPath, value: Any, resolve: NetworkResolver
    ) -> list[str]:
        """CIDR text for ``networks`` (a list, or one space- or comma-separated string),
        with network names replaced by what they stand for."""
        where = (*path, "networks")
        if isinstance(value, str):
            items: list[tuple[YamlPath, Any]] = [
                (where, text) for text in value.replace(",", " ").split()
            ]
        elif isinstance(value, list):
            items = [((*where, index), item) for index, item in enumerate(value)]
        else:
            self._error(
                document, where, "'networks' must be a list of networks (CIDRs or network names)"
            )
            return []
        found: list[str] = []
        for item_path, item in items:
            if not isinstance(item, str) or not item.strip():
                self._error(document, item_path, "a network must be text (a CIDR or a name)")
                continue
            try:
                found.extend(str(network) for network in resolve(item.strip()))
            except ValueError as error:
                self._error(document, item_path, str(error))
        return found

    def _in_file_order(self, start: int) -> None:
        """Sort the issues found since ``start`` by file, line and column."""
        self.issues[start:] = in_file_order(self.issues[start:])

    def _error(self, document: Document, path: YamlPath, message: str) -> None:
        self.issues.append(document.issue(path, message))
