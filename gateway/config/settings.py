"""The typed configuration model, loaded from one YAML file (``gateway.yml``).

* ``${VAR}`` / ``${VAR:-default}`` anywhere in a value is replaced from the environment
  (``$$`` writes a literal ``$``).
* Any key ``NAME_file: /path`` reads the value of ``NAME`` from that file (trailing newline
  stripped), for secrets mounted by systemd, Docker or Kubernetes. A list-valued ``NAME``
  takes one entry per non-empty line. A secret file readable by group or others is a warning.
* Relative paths are resolved against the directory of the configuration file.
* Every error names ``file:line:column`` and says what is expected.

The root model holds the sections that belong to no feature (server, log, secrets, policy)
and imports the others from the feature packages' ``settings`` modules, which import only
:mod:`gateway.config`. Loading checks the file's shape and values; what needs the features'
code (do the files it names load? do the LDAP filters parse?) is
:func:`gateway.validation.validate`.
"""

from __future__ import annotations

import ipaddress
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, ValidationError, field_validator

from gateway.config.schema import is_list_option, validation_issues
from gateway.config.values import ConfigPath, Duration, Network, Section
from gateway.config.yaml import (
    ConfigError,
    Document,
    Issue,
    Position,
    YamlPath,
    default_environ,
    load_file,
)
from gateway.credentials.settings import CredentialsSettings
from gateway.identity.settings import AuthenticationSettings, TotpSettings, UsersFileSettings
from gateway.security.crypto import InvalidKeyError, parse_key
from gateway.security.settings import RegulationSettings
from gateway.session.settings import SessionSettings
from gateway.storage.settings import StorageSettings

__all__ = [
    "LogSettings",
    "PolicySettings",
    "SecretsSettings",
    "ServerSettings",
    "Settings",
    "load_settings",
    "load_settings_with_warnings",
]


class ServerSettings(Section):
    paths: Literal["reject", "normalize"] = "reject"
    """Raw paths servers could read differently: refuse with 400, or judge them cleaned."""
    address: str = "127.0.0.1"
    port: int = Field(9091, ge=1, le=65535)
    trusted_proxies: tuple[Network, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    """Peers allowed to set X-Forwarded-* / X-Original-* and client-certificate headers."""
    max_header_size: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    """Bytes of request line and headers accepted; a larger request is answered 431."""
    request_timeout: Duration = Field(10.0, gt=0)
    """A request must arrive whole (line, headers, body) within this of its first byte."""
    idle_timeout: Duration = Field(5.0, gt=0)
    """A connection with no request under way is closed after this (keep-alive)."""
    limit_concurrency: int | None = Field(None, ge=1)
    """Client connections at once; default: what the open-files limit allows, at most 10,000."""
    implementation: Literal["uvicorn", "granian"] = "uvicorn"
    """The HTTP server that runs the gateway (docs/performance.md); `serve --server` overrides."""


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


class SecretsSettings(Section):
    encryption_keys: tuple[str, ...] = Field(min_length=1)
    """AES-256-GCM keys for secrets at rest; the first encrypts, all decrypt (rotation)."""
    hash_key: str = Field(min_length=32)
    """Server secret for keyed hashes (API keys, CSRF tokens); at least 32 characters."""

    @field_validator("encryption_keys")
    @classmethod
    def _keys_parse(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        # The key format is security/crypto.py's, the one module that handles keys (a leaf:
        # it imports nothing else of the gateway).
        for key in keys:
            try:
                parse_key(key)
            except InvalidKeyError as error:
                raise ValueError(str(error)) from None
        return keys


class PolicySettings(Section):
    files: tuple[ConfigPath, ...] = Field(min_length=1)
    reload_interval: Duration = 2.0


class Settings(Section):
    """The whole gateway configuration."""

    server: ServerSettings = ServerSettings()
    log: LogSettings = LogSettings()
    secrets: SecretsSettings
    policy: PolicySettings
    session: SessionSettings
    authentication: AuthenticationSettings = AuthenticationSettings(
        backend="file", file=UsersFileSettings(path=Path("users.yml"))
    )
    regulation: RegulationSettings = RegulationSettings()
    totp: TotpSettings = TotpSettings()
    storage: StorageSettings = StorageSettings()
    credentials: CredentialsSettings = CredentialsSettings()
    source: Path | None = Field(default=None, exclude=True)
    """The file this configuration was read from (set by the loader)."""
    _document: Document | None = PrivateAttr(default=None)

    def position(self, option: YamlPath) -> Position | None:
        """Where ``option`` (``("policy", "files", 0)``) is written in the file, or its
        nearest written ancestor (the file's start for a default); None when these settings
        were not loaded from a file. Lets checks that run after loading (does the users
        file exist? does the LDAP filter parse?) point at the line to fix.
        """
        return self._document.position(option) if self._document is not None else None


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _read_secret_files(
    document: Document, node: Any, path: YamlPath, warnings: list[Issue], issues: list[Issue]
) -> Any:
    """Replace every ``NAME_file: /path`` with ``NAME: <file contents>``."""
    if isinstance(node, list):
        return [
            _read_secret_files(document, item, (*path, index), warnings, issues)
            for index, item in enumerate(node)
        ]
    if not isinstance(node, dict):
        return node
    result: dict[str, Any] = {}
    for key, value in node.items():
        child = (*path, key)
        if not key.endswith("_file"):
            result[key] = _read_secret_files(document, value, child, warnings, issues)
            continue
        name = key[: -len("_file")]
        if name in node:
            issues.append(document.issue(child, f"set either '{name}' or '{key}', not both"))
            continue
        if not isinstance(value, str) or not value:
            issues.append(document.issue(child, f"'{key}' must be the path of a file"))
            continue
        if "\0" in value:
            issues.append(document.issue(child, f"'{key}': a path cannot contain a NUL byte"))
            continue
        secret_path = Path(value)
        if not secret_path.is_absolute() and document.file:
            secret_path = Path(document.file).resolve().parent / secret_path
        try:
            mode = secret_path.stat().st_mode
            content = secret_path.read_text(encoding="utf-8")
        except OSError as error:
            reason = error.strerror or str(error)
            issues.append(document.issue(child, f"cannot read secret file {value}: {reason}"))
            continue
        except UnicodeDecodeError:
            issues.append(document.issue(child, f"secret file {value} is not UTF-8 text"))
            continue
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.append(
                document.issue(
                    child,
                    f"secret file {value} is readable by other users "
                    f"(mode {stat.S_IMODE(mode):o}); run: chmod 600 {value}",
                )
            )
        lines = [line.strip() for line in content.splitlines() if line.strip()]
        is_list = is_list_option(Settings, (*path, name))
        result[name] = lines if is_list else content.rstrip("\r\n")
        # Problems with the value read point at the NAME_file line that supplied it.
        document.positions[(*path, name)] = document.position(child)
        document.key_positions[(*path, name)] = document.key_position(child)
    return result


def _resolve_paths(model: BaseModel, base_dir: Path) -> Any:
    """Copy of ``model`` with every relative :class:`Path` (defaults too) made absolute."""

    def resolve(value: Any) -> Any:
        if isinstance(value, Path):
            return value if value.is_absolute() else base_dir / value
        if isinstance(value, BaseModel):
            return _resolve_paths(value, base_dir)
        if isinstance(value, tuple):
            return tuple(resolve(item) for item in value)
        return value

    updates = {name: resolve(getattr(model, name)) for name in type(model).model_fields}
    return model.model_copy(update=updates)


def load_settings_with_warnings(
    path: str | Path, *, environ: Mapping[str, str] | None = None
) -> tuple[Settings, list[Issue]]:
    """Load and validate ``gateway.yml``; raises :class:`ConfigError` listing every problem."""
    env = environ if environ is not None else default_environ()
    document = load_file(path, environ=env)
    if not isinstance(document.data, dict):
        raise ConfigError([document.issue((), "the configuration must be a YAML mapping")])
    warnings: list[Issue] = []
    issues: list[Issue] = []
    data = _read_secret_files(document, document.data, (), warnings, issues)
    if issues:
        raise ConfigError(issues, warnings=warnings)
    base_dir = Path(path).resolve().parent
    try:
        settings = Settings.model_validate(data, context={"environ": env})
    except ValidationError as error:
        issues = validation_issues(document, error, model=Settings)
        raise ConfigError(issues, warnings=warnings) from None
    settings = _resolve_paths(settings, base_dir).model_copy(
        update={"source": Path(path).resolve()}
    )
    settings._document = document
    return settings, warnings


def load_settings(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Settings:
    """Like :func:`load_settings_with_warnings`, dropping the warnings."""
    return load_settings_with_warnings(path, environ=environ)[0]
