"""Shared helpers for identity tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.passwords import password_hash


@pytest.fixture(scope="session")
def fast_hash() -> Callable[[str], str]:
    """Hash a password with cheap argon2id parameters (once per password)."""
    return lambda password: password_hash(password, fast=True)
