"""The configuration schema imports no feature code: no cycles, and no feature runtime
module (ldap3, the policy engine, the credential verifiers) loaded to read gateway.yml."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PACKAGES = {"gateway", "gateway.credentials", "gateway.identity", "gateway.identity.ldap"}
PACKAGES |= {"gateway.security", "gateway.session", "gateway.storage", "gateway.config"}
LEAVES = {"gateway.lazy", "gateway.security.crypto", "gateway.errors", "gateway.net"}
"""Imported by the schema although outside it: the lazy re-export helper, the module that
owns the encryption key format, and the two modules at the bottom of the tree (the error
hierarchy; addresses, networks and hosts), which import nothing of the gateway."""


def imported_by(module: str) -> tuple[set[str], set[str]]:
    """The gateway modules and the third-party packages that importing ``module`` loads."""
    code = (
        f"import json, sys, {module}; "
        "print(json.dumps(sorted({name.split('.')[0] if not name.startswith('gateway') "
        "else name for name in sys.modules})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    names = set(json.loads(result.stdout))
    return {name for name in names if name.startswith("gateway")}, names


def is_schema(name: str) -> bool:
    return name.startswith("gateway.config.") or name.endswith(".settings")


@pytest.mark.parametrize(
    "module",
    [
        "gateway.config.settings",
        "gateway.credentials.settings",
        "gateway.identity.settings",
        "gateway.identity.ldap.settings",
        "gateway.security.settings",
        "gateway.session.settings",
        "gateway.storage.settings",
    ],
)
def test_the_schema_imports_no_feature_code(module: str) -> None:
    modules, packages = imported_by(module)
    outside = sorted(name for name in modules - PACKAGES - LEAVES if not is_schema(name))
    assert outside == []
    assert "ldap3" not in packages and "jwt" not in packages


def test_the_config_package_imports_nothing() -> None:
    modules, _ = imported_by("gateway.config")
    assert modules == {"gateway", "gateway.config"}
