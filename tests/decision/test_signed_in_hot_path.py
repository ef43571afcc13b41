"""Signed-in decisions on the real app (SQLite sessions, users file): no store writes on the
read path, one identity per session version, no backend call when nothing can change."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from gateway.decision import authenticate
from gateway.identity.refresh import UserRefresher
from tests.decision.conftest import Gateway
from tests.decision.test_endpoints import ask


def count_calls(monkeypatch: pytest.MonkeyPatch, owner: Any, names: list[str]) -> Counter[str]:
    """Count the calls of ``owner``'s async methods ``names`` (still calling them)."""
    calls: Counter[str] = Counter()
    for name in names:
        original = getattr(owner, name)

        def wrapper(*args: Any, __name: str = name, __original: Any = original) -> Any:
            calls[__name] += 1
            return __original(*args)

        monkeypatch.setattr(owner, name, wrapper)
    return calls


def test_a_thousand_decisions_write_nothing_to_the_store(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = gateway.app.runtime
    assert runtime is not None
    cookie = gateway.cookie(gateway.login("john"))
    calls = count_calls(monkeypatch, runtime.sessions.store, ["save", "delete", "delete_user"])
    for _ in range(1000):
        answer = ask(gateway, "https://app.example.com/", cookie=cookie)
        assert answer.status_code == 200
        assert answer.headers["remote-user"] == "john"
    assert calls == Counter()


def test_the_identity_is_built_once_and_the_user_not_asked_again(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    original = authenticate.Authenticated.of.__func__  # type: ignore[attr-defined]

    def counting_of(cls: type, username: str, *args: Any) -> Any:
        built.append(username)
        return original(cls, username, *args)

    monkeypatch.setattr(authenticate.Authenticated, "of", classmethod(counting_of))
    refreshes: Counter[str] = Counter()
    original_refresh = UserRefresher.refresh

    async def counting_refresh(self: UserRefresher, *args: Any) -> Any:
        refreshes["refresh"] += 1
        return await original_refresh(self, *args)

    monkeypatch.setattr(UserRefresher, "refresh", counting_refresh)
    cookies = [gateway.cookie(gateway.login("john")) for _ in range(2)]  # two browsers
    for _ in range(100):
        for cookie in cookies:
            answer = ask(gateway, "https://app.example.com/", cookie=cookie)
            assert answer.headers["remote-user"] == "john"
    assert built == ["john", "john"]  # once per session
    # The users file did not change: nothing to ask it after the first check of each.
    assert refreshes["refresh"] == 2
