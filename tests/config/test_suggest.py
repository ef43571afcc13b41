"""One "did you mean" for every loader."""

from __future__ import annotations

import pytest

from gateway.config.suggest import closest, did_you_mean, suggestion


@pytest.mark.parametrize(
    ("word", "choices", "expected"),
    [
        ("cache_tll", ["cache_ttl", "cache_size"], " (did you mean 'cache_ttl'?)"),
        ("polcy", ("domain", "policy"), " (did you mean 'policy'?)"),
        ("zzz", ["domain", "policy"], ""),
        ("anything", [], ""),
    ],
)
def test_did_you_mean(word: str, choices: list[str], expected: str) -> None:
    assert did_you_mean(word, choices) == expected


def test_closest_and_suggestion_compose() -> None:
    assert closest("grup", ["user", "group"]) == "group"
    assert closest("xyz", ["user", "group"]) is None
    assert suggestion("group:admins") == " (did you mean 'group:admins'?)"
