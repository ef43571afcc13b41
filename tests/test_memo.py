"""The bounded memo: entries and bytes both capped, oldest dropped first."""

from __future__ import annotations

import pytest

from gateway.memo import ENTRY_OVERHEAD, BoundedMemo


def test_a_hit_returns_what_was_put() -> None:
    memo: BoundedMemo[str, int] = BoundedMemo(10, 10_000)
    assert memo.get("a") is None
    assert memo.put("a", 1, 5) == 1
    assert memo.get("a") == 1
    assert "a" in memo and len(memo) == 1
    assert memo.bytes == 5 + ENTRY_OVERHEAD


def test_the_entry_limit_drops_the_oldest_first() -> None:
    memo: BoundedMemo[int, int] = BoundedMemo(3, 1 << 20)
    for key in range(5):
        memo.put(key, key)
    assert [key in memo for key in range(5)] == [False, False, True, True, True]


def test_the_byte_budget_drops_the_oldest_until_the_new_entry_fits() -> None:
    unit = 1000 + ENTRY_OVERHEAD
    memo: BoundedMemo[int, str] = BoundedMemo(100, 3 * unit)
    for key in range(3):
        memo.put(key, "x", 1000)
    assert len(memo) == 3 and memo.bytes == 3 * unit
    memo.put(3, "y", 2000)  # needs the room of two old entries
    assert [key in memo for key in range(4)] == [False, False, True, True]
    assert memo.bytes == unit + 2000 + ENTRY_OVERHEAD <= memo.max_bytes


def test_an_entry_larger_than_the_budget_is_not_kept_and_evicts_nothing() -> None:
    memo: BoundedMemo[str, str] = BoundedMemo(10, 1000)
    memo.put("small", "s", 10)
    assert memo.put("huge", "h", 5000) == "h"
    assert "huge" not in memo and "small" in memo


def test_replacing_a_key_recharges_it() -> None:
    memo: BoundedMemo[str, str] = BoundedMemo(10, 10_000)
    memo.put("a", "old", 100)
    memo.put("a", "new", 300)
    assert memo.get("a") == "new" and len(memo) == 1
    assert memo.bytes == 300 + ENTRY_OVERHEAD


def test_pop_and_clear_release_their_bytes() -> None:
    memo: BoundedMemo[str, str] = BoundedMemo(10, 10_000)
    memo.put("a", "1", 100)
    memo.put("b", "2", 100)
    assert memo.pop("a") == "1" and memo.pop("a") is None
    assert memo.bytes == 100 + ENTRY_OVERHEAD
    memo.clear()
    assert len(memo) == 0 and memo.bytes == 0 and memo.get("b") is None


def test_many_distinct_large_keys_stay_within_the_budget() -> None:
    memo: BoundedMemo[str, str] = BoundedMemo(8192, 1 << 20)
    for index in range(2000):
        key = f"/{index}/" + "a" * 16_000
        memo.put(key, key, 2 * len(key))
        assert memo.bytes <= memo.max_bytes
    assert len(memo) < 40


def test_an_empty_memo_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one entry"):
        BoundedMemo(0, 100)
