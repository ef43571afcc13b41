"""YAML documents that remember where every value came from.

Configuration and policy errors must name ``file:line:column``. We build plain Python values
straight from the parser's event stream and keep a map from each value's path
(``("session", "cookies", 0, "domain")``) to its position.

Building from events rather than from PyYAML's node tree is what keeps the loaders total:
every input is either a value or a :class:`ConfigError` with positions, never another
exception. In particular:

* nesting is bounded (:data:`MAX_DEPTH`): libyaml's composer recurses in C and crashes the
  process on very deep input, and Python's recurses until ``RecursionError``;
* aliases are expanded with a budget (:data:`MAX_ALIAS_VALUES`), so a "billion laughs" file
  is refused instead of exhausting memory, and an alias inside its own anchor is an error;
* explicit tags are refused, except ``!!str``: a tag is never needed in these files, and
  ``!!binary``, ``!!timestamp`` or ``!!bool maybe`` only produce surprising values or a
  constructor crash;
* plain scalars that look like a type but are not a valid one (``2001-02-30`` resolves to a
  timestamp) are errors that say to quote the value.

Every file the gateway reads reports problems the same way: each is an :class:`Issue` at a
:class:`Position`, all of them are collected, and the load fails with one
:class:`ConfigError`. A loader that walks the data itself (the policy's ``access_control``,
the users file) calls :meth:`Document.issue`; a section validated by a pydantic model
(``gateway.yml``, a policy's ``api_hosts``) goes through
:func:`gateway.config.schema.validation_issues`; a validator of plain values (API key
declarations) reports paths that :meth:`Document.issue` places; a check that runs after
loading points at ``Settings.position(option)``. An unknown key is always shown at the key,
with a suggestion from :mod:`gateway.config.suggest`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from gateway import errors

__all__ = [
    "MAX_ALIAS_VALUES",
    "MAX_DEPTH",
    "ConfigError",
    "Document",
    "Issue",
    "Position",
    "YamlPath",
    "decode",
    "in_file_order",
    "load_bytes",
    "load_file",
    "load_text",
    "read_file",
]

YamlPath = tuple[str | int, ...]

MAX_DEPTH = 64
"""Deepest nesting of mappings and lists accepted; real files stay below ten."""

MAX_ALIAS_VALUES = 250_000
"""How many values aliases (``*name``) may add in one file, all expansions together."""

_MAX_NUMBER = 1000
"""Digits (or bits) a number may have: no option needs more, and Python refuses to convert
integers of more than 4300 digits to and from text."""

# libyaml's C parser when available (several times faster on big policy files); the pure
# Python one otherwise. Both report the same events with the same marks.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_ENV_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

_TAG_PREFIX = "tag:yaml.org,2002:"
_STR = _TAG_PREFIX + "str"
_NULL = _TAG_PREFIX + "null"
_BOOL = _TAG_PREFIX + "bool"
_INT = _TAG_PREFIX + "int"
_FLOAT = _TAG_PREFIX + "float"
_TIMESTAMP = _TAG_PREFIX + "timestamp"
_MERGE = _TAG_PREFIX + "merge"
_VALUE = _TAG_PREFIX + "value"

# Stateless for scalars, so one instance of each serves every load (and every thread).
_RESOLVER = Resolver()
_CONSTRUCTOR = SafeConstructor()
_resolve: Callable[[type[yaml.Node], str, tuple[bool, bool]], str] = _RESOLVER.resolve
_KIND = {_INT: "an integer", _FLOAT: "a number", _TIMESTAMP: "a date", _BOOL: "a boolean"}


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


def in_file_order(issues: Iterable[Issue], files: Sequence[str] = ()) -> list[Issue]:
    """``issues`` by file, line and column: files in the order of ``files``, then in the
    order they first appear; issues without a position first."""
    issues = list(issues)
    order = {file: index for index, file in enumerate(files)}
    for issue in issues:
        if issue.position is not None:
            order.setdefault(issue.position.file, len(order))

    def place(issue: Issue) -> tuple[int, int, int]:
        where = issue.position
        return (-1, 0, 0) if where is None else (order[where.file], where.line, where.column)

    return sorted(issues, key=place)


class ConfigError(errors.ConfigError):
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


class _Stop(Exception):
    """Raised inside the builder when the rest of the stream cannot be read sensibly."""


_NO_KEY = object()  # a mapping expects a key next
_SKIP = object()  # the value of a refused key comes next: read it, keep nothing
_INVALID = object()  # a scalar that was refused (the issue is already recorded)
_MERGE_KEY = object()  # '<<' in a key position


class _Frame:
    """A mapping or list being built. ``path`` is None for values that are thrown away
    (complex keys, values of refused keys): their positions are not recorded."""

    __slots__ = ("key", "path", "start", "value")

    def __init__(
        self, value: dict[str, Any] | list[Any], path: YamlPath | None, start: Position
    ) -> None:
        self.value = value
        self.path = path
        self.start = start
        self.key: Any = _NO_KEY


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _tag_name(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG_PREFIX) if tag.startswith(_TAG_PREFIX) else tag


class _Builder:
    """Turns a YAML event stream into plain values, positions and issues.

    Iterative (an explicit stack), so the depth bound is ours and not Python's or C's.
    """

    def __init__(self, file: str, environ: Mapping[str, str] | None) -> None:
        self.file = file
        self.environ = environ
        self.positions: dict[YamlPath, Position] = {}
        self.key_positions: dict[YamlPath, Position] = {}
        self.issues: list[Issue] = []
        self.data: Any = None
        self._stack: list[_Frame] = []
        self._documents = 0
        # Anchor name -> the events of its value; None while that value is still being read.
        self._anchors: dict[str, list[yaml.Event] | None] = {}
        self._anchor_marks: dict[str, Position] = {}
        # Anchored collections being read: (name, events so far, stack depth at the start).
        self._recording: list[tuple[str, list[yaml.Event], int]] = []
        self._alias_budget = MAX_ALIAS_VALUES

    def mark(self, event: yaml.Event) -> Position:
        mark = event.start_mark
        if mark is None:  # never from the parser; only a stand-in event could lack one
            return Position(self.file, 1, 1)
        return Position(self.file, mark.line + 1, mark.column + 1)

    def feed_all(self, events: Iterable[yaml.Event]) -> None:
        """Consume the stream; stops early (with an issue) on input it cannot go on with."""
        try:
            for event in events:
                self._feed(event, replaying=False)
        except _Stop:
            pass

    # ---------------------------------------------------------------- events

    def _feed(self, event: yaml.Event, *, replaying: bool) -> None:
        if isinstance(event, yaml.AliasEvent):
            self._alias(event)
            return
        if self._recording:
            self._record(event)
        if isinstance(event, yaml.ScalarEvent):
            if not replaying:
                self._anchor(event)
            self._deliver(self._scalar(event, is_key=self._expects_key()), self.mark(event))
        elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            if not replaying:
                self._anchor(event)
            self._start(event)
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            frame = self._stack.pop()
            self._deliver(frame.value, frame.start)
        elif isinstance(event, yaml.DocumentStartEvent):
            self._documents += 1
            if self._documents > 1:
                self.issues.append(
                    Issue(
                        self.mark(event),
                        "invalid YAML: expected a single document in the stream, "
                        "but found another document",
                    )
                )
                raise _Stop

    def _expects_key(self) -> bool:
        return (
            bool(self._stack)
            and isinstance(self._stack[-1].value, dict)
            and (self._stack[-1].key is _NO_KEY)
        )

    def _start(self, event: yaml.CollectionStartEvent) -> None:
        here = self.mark(event)
        if len(self._stack) >= MAX_DEPTH:
            self.issues.append(
                Issue(here, f"mappings and lists are nested more than {MAX_DEPTH} levels deep")
            )
            raise _Stop
        if not event.implicit and event.tag not in (None, "!"):
            self._refuse_tag(event.tag, here)
        value: dict[str, Any] | list[Any] = {} if isinstance(event, yaml.MappingStartEvent) else []
        self._stack.append(_Frame(value, self._child_path(), here))

    def _child_path(self) -> YamlPath | None:
        """Where the next value goes, or None when it is not kept."""
        if not self._stack:
            return ()
        frame = self._stack[-1]
        if frame.path is None:
            return None
        if isinstance(frame.value, list):
            return (*frame.path, len(frame.value))
        if frame.key is _NO_KEY or frame.key is _SKIP:
            return None  # a key that is itself a collection, or the value of a refused key
        return (*frame.path, frame.key)

    def _deliver(self, value: Any, here: Position) -> None:
        """Hand a finished value (starting at ``here``) to the collection it belongs to."""
        path = self._child_path()
        if not self._stack:
            self.data = None if value is _INVALID else value
            self.positions[()] = here
            return
        frame = self._stack[-1]
        if isinstance(frame.value, list):
            if path is not None:
                self.positions[path] = here
            frame.value.append(None if value is _INVALID else value)
            return
        if frame.key is _NO_KEY:
            frame.key = self._key(frame, value, here)
            return
        if frame.key is not _SKIP:
            if path is not None:
                self.positions[path] = here
            frame.value[frame.key] = None if value is _INVALID else value
        frame.key = _NO_KEY

    def _key(self, frame: _Frame, key: Any, here: Position) -> Any:
        """The key as text, or _SKIP (with an issue) when it cannot be one."""
        assert isinstance(frame.value, dict)
        if key is _INVALID:
            return _SKIP
        if key is _MERGE_KEY:
            self.issues.append(Issue(here, "YAML merge keys ('<<') are not supported"))
            return _SKIP
        if isinstance(key, bool) or not isinstance(key, str | int):
            self.issues.append(Issue(here, "mapping keys must be text"))
            return _SKIP
        text = str(key)
        if text in frame.value:
            self.issues.append(Issue(here, f"duplicate key '{text}'"))
            return _SKIP
        if frame.path is not None:
            self.key_positions[(*frame.path, text)] = here
        return text

    # ---------------------------------------------------------------- scalars

    def _scalar(self, event: yaml.ScalarEvent, *, is_key: bool) -> Any:
        here = self.mark(event)
        value: str = event.value
        tag = event.tag
        if tag is None or tag == "!":
            tag = _resolve(yaml.ScalarNode, value, event.implicit)
        elif tag != _STR:
            self._refuse_tag(tag, here)
            return _INVALID
        if tag == _STR:
            # Keys are never interpolated: '${...}' in a key is a typo, not a reference.
            if not is_key and self.environ is not None and "$" in value:
                return self._interpolate(value, here)
            return value
        if tag == _MERGE:
            return _MERGE_KEY if is_key else value  # '<<' is only special as a key
        if tag == _VALUE:
            return value  # '=' (YAML 1.1's "value" key) means nothing here: plain text
        if tag == _NULL:
            return None
        if tag in (_INT, _FLOAT) and len(value) > _MAX_NUMBER:
            self.issues.append(Issue(here, f"the number '{_short(value)}' is too large"))
            return _INVALID
        try:
            result = _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, yaml.ScalarNode(tag, value))
        except Exception as error:  # PyYAML's conversion of a bad date, a huge integer, ...
            reason = (str(error).splitlines() or [type(error).__name__])[0]
            self.issues.append(
                Issue(
                    here,
                    f"'{_short(value)}' looks like {_KIND.get(tag, 'a typed value')} but is not a "
                    f"valid one ({reason}); quote it if it is text",
                )
            )
            return _INVALID
        if isinstance(result, int) and result.bit_length() > _MAX_NUMBER:
            self.issues.append(Issue(here, f"the number '{_short(value)}' is too large"))
            return _INVALID
        return result

    def _refuse_tag(self, tag: str, here: Position) -> None:
        self.issues.append(
            Issue(
                here,
                f"YAML tag {_tag_name(tag)} is not supported: remove it "
                "(quote a value, or tag it !!str, to make it text)",
            )
        )

    def _interpolate(self, value: str, here: Position) -> str:
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
                    here,
                    f"environment variable {name} is not set "
                    f"(set it, or write ${{{name}:-default}})",
                )
            )
            return ""

        return _ENV_REFERENCE.sub(replace, value)

    # ---------------------------------------------------------------- anchors and aliases

    def _anchor(self, event: yaml.NodeEvent) -> None:
        name = event.anchor
        if name is None:
            return
        here = self.mark(event)
        if name in self._anchors:
            first = self._anchor_marks[name]
            self.issues.append(
                Issue(here, f"invalid YAML: anchor '&{name}' is already defined at {first}")
            )
            return
        self._anchor_marks[name] = here
        if isinstance(event, yaml.ScalarEvent):
            self._anchors[name] = [event]
        else:  # recorded from this start event to its end event (see _record)
            self._anchors[name] = None
            self._recording.append((name, [event], len(self._stack)))

    def _record(self, event: yaml.Event) -> None:
        """Add ``event`` to every anchored collection being read; finish those it ends."""
        ends = isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent)
        still: list[tuple[str, list[yaml.Event], int]] = []
        for name, events, depth in self._recording:
            events.append(event)
            if ends and len(self._stack) - 1 == depth:
                self._anchors[name] = events
            else:
                still.append((name, events, depth))
        self._recording = still

    def _alias(self, event: yaml.AliasEvent) -> None:
        name = event.anchor or ""
        here = self.mark(event)
        events = self._anchors.get(name)
        if events is None:
            if name in self._anchors:
                message = (
                    f"alias '*{name}' is inside its own anchor (a value cannot contain itself)"
                )
            else:
                message = (
                    f"invalid YAML: alias '*{name}' refers to no anchor (define '&{name}' first)"
                )
            self.issues.append(Issue(here, message))
            # Stand in an empty value, so the surrounding mapping or list keeps its shape.
            events = [
                yaml.ScalarEvent(None, None, (True, False), "", event.start_mark, event.end_mark)
            ]
        else:
            self._alias_budget -= len(events)
            if self._alias_budget < 0:
                self.issues.append(
                    Issue(
                        here,
                        f"aliases expand to more than {MAX_ALIAS_VALUES} values; "
                        "write the values out instead",
                    )
                )
                raise _Stop
        for recorded in events:
            self._feed(recorded, replaying=True)


def _position_in(text: str, index: int, file: str) -> Position:
    """The 1-based line and column of character ``index`` of ``text``."""
    index = max(0, min(index, len(text)))
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return Position(file, line, column)


def _unique(issues: list[Issue]) -> list[Issue]:
    # An alias repeats the issues of its anchored value; each is worth saying once.
    return list(dict.fromkeys(issues))


def load_text(text: str, file: str, *, environ: Mapping[str, str] | None = None) -> Document:
    """Parse YAML text; ``environ`` enables ``${VAR}`` / ``${VAR:-default}`` interpolation.

    Raises :class:`ConfigError` (every issue with a position) for anything that is not a
    plain YAML document of mappings, lists and scalars; see the module docs for the limits.
    """
    builder = _Builder(file, environ)
    try:
        builder.feed_all(yaml.parse(text, Loader=_LOADER))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        position = Position(file, mark.line + 1, mark.column + 1) if mark else Position(file, 1, 1)
        problem = error.problem or error.context or "invalid YAML"
        raise ConfigError([Issue(position, f"invalid YAML: {problem}")]) from None
    except yaml.reader.ReaderError as error:
        position = _position_in(text, error.position, file)
        code = (
            error.character if isinstance(error.character, int) else ord(error.character[:1] or " ")
        )
        raise ConfigError(
            [
                Issue(
                    position,
                    f"invalid YAML: character U+{code:04X} is not allowed "
                    '(write it as an escape inside double quotes, e.g. "\\x01")',
                )
            ]
        ) from None
    except yaml.YAMLError as error:
        raise ConfigError([Issue(Position(file, 1, 1), f"invalid YAML: {error}")]) from None
    except UnicodeEncodeError as error:  # a lone surrogate in text that did not come from a file
        position = _position_in(text, error.start, file)
        raise ConfigError(
            [Issue(position, "invalid YAML: the text is not valid Unicode")]
        ) from None
    if builder.issues:
        raise ConfigError(_unique(builder.issues))
    return Document(
        data=builder.data,
        file=file,
        positions=builder.positions,
        key_positions=builder.key_positions,
    )


def decode(data: bytes, file: str) -> str:
    """UTF-8 text of a file's bytes; invalid UTF-8 is a :class:`ConfigError` at its place."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        before = data[: error.start].decode("utf-8", errors="replace")
        position = _position_in(before, len(before), file)
        raise ConfigError(
            [Issue(position, f"the file is not UTF-8 text (byte 0x{data[error.start]:02x})")]
        ) from None


def load_bytes(data: bytes, file: str, *, environ: Mapping[str, str] | None = None) -> Document:
    """Like :func:`load_text`, for a file's raw content."""
    return load_text(decode(data, file), file, environ=environ)


def read_file(
    path: str | Path, *, referenced_at: Position | None = None, label: str | None = None
) -> bytes:
    """A file's bytes; a missing or unreadable file is a :class:`ConfigError`.

    ``referenced_at`` is where the file is named (a line of ``gateway.yml``): the issue then
    points there, which is where the fix goes. ``label`` replaces the bare path at the start
    of the message (``users file /etc/gateway/users.yml: file not found``).
    """
    name = label or str(path)
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        reason = "file not found"
    except IsADirectoryError:
        reason = "is a directory, not a file"
    except PermissionError:
        reason = "permission denied (check the file's owner and mode)"
    except OSError as error:
        reason = f"cannot read file ({error.strerror or error})"
    except ValueError:  # open() refuses a NUL byte in a path
        reason = "the path contains a NUL byte"
    raise ConfigError([Issue(referenced_at, f"{name}: {reason}")]) from None


def load_file(
    path: str | Path,
    *,
    environ: Mapping[str, str] | None = None,
    referenced_at: Position | None = None,
) -> Document:
    """Read and parse a YAML file; a missing or unreadable file is a :class:`ConfigError`."""
    return load_bytes(read_file(path, referenced_at=referenced_at), str(path), environ=environ)


def default_environ() -> Mapping[str, str]:
    """The process environment, for interpolation."""
    return os.environ
