"""Edit a users file the way a person would: change a line, keep the comments.

Each edit is made twice: on the data, and as a small text change (replace a value, insert a
line, append a block). The edited text is parsed back and must give exactly the edited
data; when it does not (flow-style YAML, anchors, unusual layouts), the file is written anew
from the data instead, and :attr:`UsersFileEditor.comments_kept` becomes False.
"""

from __future__ import annotations

import contextlib
import copy
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import yaml

from gateway.config.yaml import ConfigError, decode, load_text
from gateway.identity.users_file import UserRecord, parse_users

__all__ = ["UsersFileEditor", "write_atomically"]

_NEW_FILE_HEADER = (
    "# Users of the gateway. Manage with `gateway users ...`; passwords are argon2id hashes\n"
    "# (`gateway users hash-password`). The gateway reloads this file when it changes.\n"
)


class UsersFileEditor:
    """The text and data of one users file, edited in memory, then :meth:`save`-d."""

    def __init__(self, path: Path, text: str, *, exists: bool) -> None:
        self.path = path
        self.text = text
        self.exists = exists
        self.comments_kept = True
        document = load_text(text, str(path))
        self.records: dict[str, UserRecord] = parse_users(document)
        data = document.data if isinstance(document.data, dict) else {}
        if not isinstance(data.get("users"), dict):
            data["users"] = {}
        self.data: dict[str, Any] = data

    @classmethod
    def open(cls, path: str | Path, *, create: bool = False) -> UsersFileEditor:
        """Read and validate ``path``; a missing file is an error unless ``create``."""
        target = Path(path)
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            if not create:
                raise
            return cls(target, _NEW_FILE_HEADER + "users: {}\n", exists=False)
        return cls(target, decode(data, str(target)), exists=True)  # bad UTF-8: ConfigError

    @property
    def users(self) -> dict[str, Any]:
        users: dict[str, Any] = self.data["users"]
        return users

    def add(self, username: str, entry: dict[str, Any]) -> None:
        """Append a user (the caller checked it is new)."""
        data = copy.deepcopy(self.data)
        data["users"][username] = entry
        self._apply(data, self._text_with_user_added(username, entry))

    def set(self, username: str, key: str, value: Any) -> None:
        """Set one field of an existing user."""
        data = copy.deepcopy(self.data)
        data["users"][username][key] = value
        self._apply(data, self._text_with_field_set(username, key, value))

    def remove(self, username: str) -> None:
        """Delete a user's entry."""
        data = copy.deepcopy(self.data)
        del data["users"][username]
        self._apply(data, self._text_with_user_removed(username))

    def save(self) -> None:
        """Write the file atomically (mode 600 for a new file, else the file's own mode)."""
        write_atomically(self.path, self.text)
        self.exists = True

    # -- internals ---------------------------------------------------------------------

    def _apply(self, data: dict[str, Any], candidate: str | None) -> None:
        # Validate the data itself first (callers check their input; this is the backstop).
        records = parse_users(load_text(_render(data), f"{self.path} (as edited)"))
        if candidate is not None and _parses_to(candidate, data):
            self.text = candidate
        else:
            self.text = _leading_comments(self.text) + _render(data)
            self.comments_kept = self.comments_kept and not self.exists
        self.data = data
        self.records = records

    def _users_node(self) -> yaml.MappingNode | None:
        root = yaml.compose(self.text, Loader=yaml.SafeLoader)
        if not isinstance(root, yaml.MappingNode):
            return None
        for key, value in root.value:
            if key.value == "users" and isinstance(value, yaml.MappingNode):
                return value if not value.flow_style and value.value else None
        return None

    def _user_node(self, username: str) -> tuple[yaml.Node, yaml.MappingNode] | None:
        users = self._users_node()
        for key, value in users.value if users is not None else ():
            if key.value == username and isinstance(value, yaml.MappingNode):
                return (key, value) if not value.flow_style and value.value else None
        return None

    def _text_with_user_added(self, username: str, entry: dict[str, Any]) -> str | None:
        users = self._users_node()
        if users is None:
            return None
        first_key, first_value = users.value[0]
        indent = first_key.start_mark.column
        step = 2
        if isinstance(first_value, yaml.MappingNode) and first_value.value:
            step = max(2, min(9, first_value.value[0][0].start_mark.column - indent))
        block = yaml.safe_dump(
            {username: entry}, sort_keys=False, allow_unicode=True, indent=step, width=10**6
        )
        block = "".join(" " * indent + line for line in block.splitlines(keepends=True))
        return _insert_after_line(self.text, _end_of(users.value[-1][1]), block)

    def _text_with_field_set(self, username: str, key: str, value: Any) -> str | None:
        found = self._user_node(username)
        if found is None:
            return None
        _, mapping = found
        rendered = _render_scalar(value)
        for key_node, value_node in mapping.value:
            if key_node.value == key:
                if not isinstance(value_node, yaml.ScalarNode) or not value_node.value:
                    return None
                start, end = value_node.start_mark.index, value_node.end_mark.index
                return self.text[:start] + rendered + self.text[end:]
        indent = mapping.value[0][0].start_mark.column
        line = " " * indent + f"{key}: {rendered}\n"
        return _insert_after_line(self.text, _end_of(mapping), line)

    def _text_with_user_removed(self, username: str) -> str | None:
        found = self._user_node(username)
        if found is None:
            return None
        key_node, mapping = found
        start = self.text.rfind("\n", 0, key_node.start_mark.index) + 1
        if self.text[start : key_node.start_mark.index].strip():
            return None  # something else precedes the key on its line
        end = _line_end(self.text, _end_of(mapping))
        return self.text[:start] + self.text[end:]


def _render(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=10**6)


def _render_scalar(value: Any) -> str:
    text = yaml.safe_dump(value, allow_unicode=True, width=10**6)
    return text.removesuffix("\n...\n").rstrip("\n")


def _parses_to(text: str, data: dict[str, Any]) -> bool:
    try:
        return bool(load_text(text, "<edited>").data == data)
    except ConfigError:
        return False


def _end_of(node: yaml.Node) -> int:
    """Index just after the last character of a node's content (ignores trailing comments)."""
    if isinstance(node, yaml.MappingNode):
        return max((_end_of(child) for pair in node.value for child in pair), default=0)
    if isinstance(node, yaml.SequenceNode):
        return max((_end_of(child) for child in node.value), default=node.end_mark.index)
    return int(node.end_mark.index)


def _line_end(text: str, index: int) -> int:
    """Index of the start of the line after the one ``index`` is on (or that ``index`` ends)."""
    if index > 0 and text[index - 1] == "\n":
        return index
    newline = text.find("\n", index)
    return len(text) if newline < 0 else newline + 1


def _insert_after_line(text: str, index: int, block: str) -> str:
    position = _line_end(text, index)
    prefix = text[:position]
    if prefix and not prefix.endswith("\n"):
        prefix += "\n"
    return prefix + block + text[position:]


def _leading_comments(text: str) -> str:
    lines = []
    for line in text.splitlines(keepends=True):
        if line.strip() and not line.lstrip().startswith("#"):
            break
        lines.append(line)
    return "".join(lines)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: temp file in the same directory, fsync, rename.

    A new file gets mode 600; an existing one keeps its mode (and owner, when permitted).
    A symlink is followed, so the file it points to is replaced, not the link.
    """
    target = Path(os.path.realpath(path))
    try:
        current = os.stat(target)
    except FileNotFoundError:
        current = None
    mode = stat.S_IMODE(current.st_mode) if current else 0o600
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), mode)
            if current is not None:
                # Not root: the file becomes ours; its mode is still kept.
                with contextlib.suppress(PermissionError):
                    os.fchown(handle.fileno(), current.st_uid, current.st_gid)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
