"""YAML documents that remember where every value came from.

Configuration and policy errors must name ``file:line:column``. PyYAML's composer keeps a
mark on every node, so we build plain Python values from the node tree ourselves and keep a
map from each value's path (``("session", "cookies", 0, "domain")``) to its position.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ConfigError",
    "Document",
    "Issue",
    "Position",
    "YamlPath",
    "load_file",
    "load_text",
]

YamlPath = tuple[str | int, ...]

# libyaml's C parser when available (several times faster on big policy files); the pure
# Python one otherwise. Both keep node marks, which is all we need for positions.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_ENV_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True, slots=True)
class Position:
    """A place in a source file, 1-based like an editor shows it."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem found in a file; ``str()`` gives ``file:line:col: message``."""

    position: Position | None
    message: str

    def __str__(self) -> str:
        return f"{self.position}: {self.message}" if self.position else self.message


class ConfigError(Exception):
    """A configuration or policy file cannot be used; carries every issue found."""

    def __init__(self, issues: Iterable[Issue], *, warnings: Iterable[Issue] = ()) -> None:
        self.issues: list[Issue] = list(issues)
        self.warnings: list[Issue] = list(warnings)
        """Warnings found before the errors stopped the load (reported alongside them)."""
        super().__init__("\n".join(str(issue) for issue in self.issues))


@dataclass(slots=True)
class Document:
    """Plain data loaded from YAML plus the position of every value in it."""

    data: Any
    file: str
    positions: dict[YamlPath, Position] = field(default_factory=dict)
    key_positions: dict[YamlPath, Position] = field(default_factory=dict)

    def position(self, path: YamlPath) -> Position:
        """Position of ``path``, or of its nearest ancestor that has one."""
        probe = tuple(path)
        while probe:
            found = self.positions.get(probe)
            if found is not None:
                return found
            probe = probe[:-1]
        return self.positions.get((), Position(self.file, 1, 1))

    def key_position(self, path: YamlPath) -> Position:
        """Position of the key that introduces ``path`` (falls back to :meth:`position`)."""
        return self.key_positions.get(tuple(path)) or self.position(path)

    def issue(self, path: YamlPath, message: str, *, at_key: bool = False) -> Issue:
        return Issue(self.key_position(path) if at_key else self.position(path), message)


class _Builder:
    def __init__(self, file: str, environ: Mapping[str, str] | None) -> None:
        self.file = file
        self.environ = environ
        self.positions: dict[YamlPath, Position] = {}
        self.key_positions: dict[YamlPath, Position] = {}
        self.issues: list[Issue] = []

    def mark(self, node: yaml.Node) -> Position:
        return Position(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def build(self, node: yaml.Node, path: YamlPath) -> Any:
        self.positions[path] = self.mark(node)
        if isinstance(node, yaml.MappingNode):
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self.issues.append(
                        Issue(self.mark(key_node), "YAML merge keys ('<<') are not supported")
                    )
                    continue
                key = self.scalar(key_node)
                if not isinstance(key, str | int | bool) or isinstance(key, bool):
                    self.issues.append(Issue(self.mark(key_node), "mapping keys must be text"))
                    continue
                key = str(key)
                if key in result:
                    self.issues.append(Issue(self.mark(key_node), f"duplicate key '{key}'"))
                    continue
                self.key_positions[(*path, key)] = self.mark(key_node)
                result[key] = self.build(value_node, (*path, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
        value = self.scalar(node)
        if isinstance(value, str) and self.environ is not None and "$" in value:
            value = self.interpolate(value, node)
        return value

    def scalar(self, node: yaml.Node) -> Any:
        constructor = yaml.SafeLoader.yaml_constructors.get(node.tag)
        if constructor is None or not isinstance(node, yaml.ScalarNode):
            self.issues.append(Issue(self.mark(node), f"unsupported YAML tag {node.tag}"))
            return None
        # The constructor only needs a loader for timestamps and the like; a bare one is enough.
        loader = yaml.SafeLoader("")
        try:
            return constructor(loader, node)
        finally:
            loader.dispose()

    def interpolate(self, value: str, node: yaml.Node) -> str:
        assert self.environ is not None
        environ = self.environ

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            self.issues.append(
                Issue(
                    self.mark(node),
                    f"environment variable {name} is not set "
                    f"(set it, or write ${{{name}:-default}})",
                )
            )
            return ""

        return _ENV_REFERENCE.sub(replace, value)


def load_text(text: str, file: str, *, environ: Mapping[str, str] | None = None) -> Document:
    """Parse YAML text; ``environ`` enables ``${VAR}`` / ``${VAR:-default}`` interpolation."""
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        position = Position(file, mark.line + 1, mark.column + 1) if mark else None
        problem = error.problem or error.context or "invalid YAML"
        raise ConfigError([Issue(position, f"invalid YAML: {problem}")]) from None
    except yaml.YAMLError as error:
        raise ConfigError([Issue(Position(file, 1, 1), f"invalid YAML: {error}")]) from None
    builder = _Builder(file, environ)
    data = builder.build(node, ()) if node is not None else None
    if builder.issues:
        raise ConfigError(builder.issues)
    return Document(
        data=data, file=file, positions=builder.positions, key_positions=builder.key_positions
    )


def load_file(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Document:
    """Read and parse a YAML file; a missing or unreadable file is a :class:`ConfigError`."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Issue(None, f"{name}: file not found")]) from None
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise ConfigError([Issue(None, f"{name}: cannot read file ({reason})")]) from None
    return load_text(text, name, environ=environ if environ is not None else None)


def default_environ() -> Mapping[str, str]:
    """The process environment, for interpolation."""
    return os.environ
