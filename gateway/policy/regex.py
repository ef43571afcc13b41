"""Regular expressions written for Authelia (Go RE2 syntax), compiled with Python's ``re``.

The two dialects agree on everything policy files normally use. Where they differ in a way
that would change a decision, the pattern is rewritten before compiling:

* ``$`` (without the ``m`` flag) means end of text in Go, but "end or before a final newline"
  in Python; it becomes ``\\Z`` so ``^/admin$`` does not match ``/admin%0A``.
* ``\\z`` (Go's end of text) becomes Python's ``\\Z``.
* ``(?<Name>...)`` named groups become ``(?P<Name>...)``.
* ``[[:alpha:]]``-style ASCII classes are expanded.

Patterns are searched, not anchored, like Go's ``MatchString``.
"""

from __future__ import annotations

import re

__all__ = ["IDENTITY_GROUPS", "compile_pattern", "translate"]

IDENTITY_GROUPS = ("User", "Group")
"""Named groups whose match must equal the user's name or one of their groups."""

_MULTILINE_FLAG = re.compile(r"\(\?[a-zA-Z]*m[a-zA-Z]*(?:-[a-zA-Z]*)?[:)]")
_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7F",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1F\\x7F",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}


def translate(pattern: str) -> str:
    """Rewrite Go-only regex syntax into its Python equivalent (see the module docstring)."""
    end_of_text = _MULTILINE_FLAG.search(pattern) is None
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        char = pattern[i]
        if char == "\\" and i + 1 < n:
            escaped = pattern[i + 1]
            out.append("\\Z" if escaped == "z" and not in_class else pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if char == "[" and pattern.startswith("[:", i):
                end = pattern.find(":]", i + 2)
                name = pattern[i + 2 : end] if end != -1 else ""
                if name in _POSIX_CLASSES:
                    out.append(_POSIX_CLASSES[name])
                    i = end + 2
                    continue
            if char == "]":
                in_class = False
            out.append(char)
            i += 1
            continue
        if char == "[":
            in_class = True
            out.append(char)
            i += 1
            if i < n and pattern[i] == "^":
                out.append("^")
                i += 1
            if i < n and pattern[i] == "]":  # a leading ']' is a literal
                out.append("]")
                i += 1
            continue
        if char == "$" and end_of_text:
            out.append("\\Z")
            i += 1
            continue
        if pattern.startswith("(?<", i) and i + 3 < n and pattern[i + 3] not in "=!":
            out.append("(?P<")
            i += 3
            continue
        out.append(char)
        i += 1
    return "".join(out)


def compile_pattern(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    """Compile an Authelia-style pattern; raises :class:`ValueError` with a readable reason."""
    translated = translate(pattern)
    try:
        return re.compile(translated, re.IGNORECASE if ignore_case else 0)
    except re.error as error:
        # A position only helps when it points into the text the user wrote.
        where = (
            f" at position {error.pos}" if error.pos is not None and translated == pattern else ""
        )
        raise ValueError(f"invalid regular expression '{pattern}': {error.msg}{where}") from None
