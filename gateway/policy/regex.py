"""Policy regular expressions, compiled with RE2: the engine and syntax of Go's ``regexp``.

Authelia is written in Go, so a policy written for it means what Go's ``regexp`` says. Go's
package implements RE2's design and syntax, so RE2 gives the same two guarantees:

* **Linear time.** Matching never backtracks, so no pattern and no request path, however
  chosen, can make one match take more than time proportional to the path.
* **The same syntax.** ``\\pL``, ``[[:alpha:]]``, ``(?<Name>...)``, ``\\z``, ``(?U)`` work;
  ``$`` without ``(?m)`` means end of text (not "before a final newline" as in Python).
  What Go refuses is refused at load, among it what RE2 leaves out to stay linear:
  look-ahead and look-behind, back-references, atomic groups, possessive quantifiers.

Two checks go beyond what RE2 itself refuses (see :func:`_check`): ``\\C`` (one byte, which
Go refuses and which could split a character), and a ``User`` or ``Group`` group named twice.

Patterns are searched, not anchored, like Go's ``MatchString``. Texts are encoded to UTF-8
for RE2; groups are cut from the bytes and decoded, so positions never need converting.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Protocol, cast

import re2

# The compiled core of the binding. ``re2.compile(...).search`` wraps each call in a
# generator, converts every offset back to str positions and builds a Match object: 1.5-5 µs
# a call against 0.5-0.9 µs for the core's single ``Match`` on the development machine.
from re2 import _re2

from gateway.memo import BoundedMemo

__all__ = ["IDENTITY_GROUPS", "Pattern", "compile_pattern"]

IDENTITY_GROUPS = ("User", "Group")
"""Named groups whose match must equal the user's name or one of their groups."""

_UNANCHORED: object = _re2.RE2.Anchor.UNANCHORED
_NO_MATCH = -1

# Recent answers of Pattern.search, by (pattern slot, text). A call into the binding costs
# about 0.6 µs against 0.06 µs for a hit, and traffic repeats its paths. Bounded in entries
# and in text length (at most ~10 MB), shared by every pattern so that a large policy
# cannot multiply it.
_MEMO_ENTRIES = 8192
_MEMO_TEXT = 256
_memo: BoundedMemo[tuple[int, str], bool] = BoundedMemo(_MEMO_ENTRIES, _MEMO_ENTRIES * _MEMO_TEXT)
_slots = itertools.count()

# Constructs left out of RE2 (and Go) on purpose: RE2's reason, the fragment it quotes.
_LEFT_OUT = (
    ("invalid perl operator", "(?=", "look-ahead assertions"),
    ("invalid perl operator", "(?!", "look-ahead assertions"),
    ("invalid perl operator", "(?<=", "look-behind assertions"),
    ("invalid perl operator", "(?<!", "look-behind assertions"),
    ("invalid perl operator", "(?>", "atomic groups"),
    ("invalid escape sequence", "\\k", "back-references"),
)


class _Program(Protocol):
    """The part of ``re2._re2.RE2`` used here (with the binding's C++ method names); the
    binding ships no type information.
    """

    def ok(self) -> bool: ...

    def error(self) -> bytes: ...

    def NumberOfCapturingGroups(self) -> int: ...

    def NamedCapturingGroups(self) -> list[tuple[bytes, int]]: ...

    def Match(
        self, anchor: object, text: bytes, pos: int, endpos: int
    ) -> list[tuple[int, int]]: ...


def _utf8(text: str) -> bytes:
    """``text`` as UTF-8. A lone surrogate (only in a str built in code, never one decoded
    from a request) has no UTF-8 form; it becomes U+FFFD, as Go reads an invalid byte.
    """
    try:
        return text.encode()
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text).encode()


class Pattern:
    """A compiled pattern: :meth:`search` for a yes/no answer, :meth:`find` for groups.

    Thread-safe and immutable; equal when compiled from the same text and case option.
    Raises :class:`ValueError` with the reason for a pattern that is refused.
    """

    __slots__ = ("_capturing", "_match", "_slot", "groupindex", "ignore_case", "source")

    def __init__(self, source: str, *, ignore_case: bool) -> None:
        self.source = source
        self.ignore_case = ignore_case
        capturing = _program(source, ignore_case=ignore_case, capture=True)
        problem = _check(source) if capturing.ok() else _reason(capturing, source)
        if problem is not None:
            raise ValueError(f"invalid regular expression '{source}': {problem}")
        self.groupindex: Mapping[str, int] = MappingProxyType(
            {name.decode(): index for name, index in capturing.NamedCapturingGroups()}
        )
        self._capturing = capturing
        # Without groups to report RE2 can answer from its DFA alone; with them it needs a
        # slower engine even when the caller only wants yes or no.
        searching = (
            _program(source, ignore_case=ignore_case, capture=False)
            if capturing.NumberOfCapturingGroups()
            else capturing
        )
        self._match = searching.Match
        self._slot = next(_slots)

    def search(self, text: str) -> bool:
        """Does the pattern match anywhere in ``text``? Recent answers are remembered."""
        key = (self._slot, text)
        found = _memo.get(key)
        if found is not None:
            return found
        try:
            data = text.encode()  # inlined _utf8: this is the per-request path
        except UnicodeEncodeError:
            data = _utf8(text)
        found = self._match(_UNANCHORED, data, 0, len(data))[0][0] != _NO_MATCH
        if len(text) <= _MEMO_TEXT:
            _memo.put(key, found, len(text))
        return found

    def find(self, text: str) -> tuple[str | None, ...] | None:
        """The groups of the leftmost match (``[0]`` is the whole match), ``None`` for a
        group that took no part; ``None`` when there is no match.
        """
        data = _utf8(text)
        spans = self._capturing.Match(_UNANCHORED, data, 0, len(data))
        if spans[0][0] == _NO_MATCH:
            return None
        # RE2 works on UTF-8 characters (and \C is refused), so a span never cuts one.
        return tuple(
            None if start == _NO_MATCH else data[start:end].decode() for start, end in spans
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Pattern):
            return NotImplemented
        return self.source == other.source and self.ignore_case == other.ignore_case

    def __hash__(self) -> int:
        return hash((self.source, self.ignore_case))

    def __repr__(self) -> str:
        return f"Pattern({self.source!r}{', ignore_case=True' if self.ignore_case else ''})"


def _program(source: str, *, ignore_case: bool, capture: bool) -> _Program:
    options = re2.Options()
    options.log_errors = False  # a refusal is reported once, as a policy error
    options.case_sensitive = not ignore_case
    options.never_capture = not capture
    return cast(_Program, _re2.RE2(source.encode(), options))


def _reason(program: _Program, pattern: str) -> str:
    """RE2's reason for refusing, quoting the fragment as Go does, and why for what is left
    out on purpose.
    """
    code, _, fragment = program.error().decode(errors="replace").partition(": ")
    reason = f"{code}: `{fragment}`" if fragment else code
    if code == "invalid escape sequence" and fragment == "\\Z":
        return f"{reason} (use \\z or $ for the end of the text)"
    what = next(
        (what for c, start, what in _LEFT_OUT if code == c and fragment.startswith(start)), None
    )
    if code == "invalid escape sequence" and fragment[1:].isdigit():
        what = "back-references"
    elif code == "invalid perl operator" and fragment == "(?P" and "(?P=" in pattern:
        what = "back-references"  # RE2 quotes only "(?P" here
    elif code == "bad repetition operator" and fragment.endswith("+"):
        what = "possessive quantifiers"
    if what is None:
        return reason
    return f"{reason} ({what} are left out of RE2 to keep matching linear; Go refuses them too)"


def _check(pattern: str) -> str | None:
    """What RE2 accepts but Go (or the engine) must not: a reason, or ``None``.

    Runs on a pattern RE2 has accepted, so it only has to skip what can hide a ``\\`` or a
    ``(``: escapes, ``\\Q...\\E`` literals and character classes.
    """
    seen: dict[str, int] = dict.fromkeys(IDENTITY_GROUPS, 0)
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "\\":
            escaped = pattern[i + 1 : i + 2]
            if escaped == "Q":
                end = pattern.find("\\E", i + 2)
                i = n if end == -1 else end + 2
                continue
            if escaped == "C":
                return "invalid escape sequence: `\\C` (it matches one byte, not a character)"
            i += 2
        elif char == "[":
            i = _class_end(pattern, i + 1)
        elif char == "(" and pattern.startswith(("(?P<", "(?<"), i):
            start = pattern.index("<", i) + 1
            end = pattern.find(">", start)
            name = pattern[start:end] if end != -1 else ""
            if name in seen:
                seen[name] += 1
                if seen[name] > 1:
                    # Authelia checks the last copy, RE2 reports the first: do not guess.
                    return f"the named group '{name}' may appear only once"
            i = start
        else:
            i += 1
    return None


def _class_end(pattern: str, i: int) -> int:
    """The index after the ``]`` closing the class whose content starts at ``i``."""
    n = len(pattern)
    if pattern.startswith("^", i):
        i += 1
    if pattern.startswith("]", i):  # a leading ']' is a literal
        i += 1
    while i < n:
        char = pattern[i]
        if char == "\\":
            i += 2
        elif char == "[" and pattern.startswith("[:", i):
            end = pattern.find(":]", i + 2)
            i = i + 1 if end == -1 else end + 2
        elif char == "]":
            return i + 1
        else:
            i += 1
    return n


@functools.lru_cache(maxsize=4096)
def _compile(pattern: str, ignore_case: bool) -> Pattern:
    return Pattern(pattern, ignore_case=ignore_case)


def compile_pattern(pattern: str, *, ignore_case: bool = False) -> Pattern:
    """Compile an Authelia (Go, RE2) pattern; raises :class:`ValueError` with the reason.

    Compiled patterns are shared (policies repeat the same few, and a reload recompiles
    them), which also shares RE2's per-pattern automaton cache between rules.
    """
    return _compile(pattern, ignore_case)
