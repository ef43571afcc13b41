"""Shared helpers for identity tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.identity.passwords import hash_password
from tests.identity.support import FAST


@pytest.fixture(scope="session")
def fast_hash() -> Callable[[str], str]:
    cache: dict[str, str] = {}

    def make(password: str) -> str:
        if password not in cache:
            cache[password] = hash_password(password, parameters=FAST)
        return cache[password]

    return make
