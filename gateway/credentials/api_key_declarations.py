"""API keys declared by hash in policy files (GitOps): such keys live only in memory.

A declaration is what ``gateway keys create NAME --static`` prints; :func:`load_static_api_keys`
compiles a list of them into :class:`~gateway.credentials.api_keys.ApiKey` objects, or raises
:class:`StaticKeyError` listing every problem with its path.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gateway.config.suggest import did_you_mean
from gateway.config.yaml import YamlPath
from gateway.credentials.api_keys import ApiKey, is_valid_key_name
from gateway.credentials.networks import NetworkError
from gateway.errors import ConfigError

__all__ = ["DECLARATION_FIELDS", "StaticKeyError", "load_static_api_keys", "parse_timestamp"]

_HEX_HASH = re.compile(r"[0-9a-f]{64}")


class StaticKeyError(ConfigError, ValueError):
    """Declared keys cannot be used; ``problems`` pairs each with its path in the document.

    ``unknown`` holds the paths of options that are not declaration fields: a loader shows
    those at the key, like every other unknown option (see ``Document.issue``).
    """

    def __init__(
        self, problems: Sequence[tuple[YamlPath, str]], *, unknown: Iterable[YamlPath] = ()
    ) -> None:
        self.problems = list(problems)
        self.unknown = frozenset(unknown)
        super().__init__(
            "\n".join(
                f"{'.'.join(str(part) for part in path)}: {message}"
                for path, message in self.problems
            )
        )


def parse_timestamp(value: Any) -> float:
    """``2026-06-30``, ``2026-06-30T12:00:00Z``, a YAML date/datetime, or POSIX seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a date such as 2026-06-30")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime.datetime):
        moment = value
    elif isinstance(value, datetime.date):
        moment = datetime.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"'{value}' is not a date (write e.g. 2026-06-30)") from None
    else:
        raise ValueError("expected a date such as 2026-06-30")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def _text_list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise ValueError("expected a list of text values")


DECLARATION_FIELDS: tuple[str, ...] = (
    "name",
    "id",
    "hash",
    "owner",
    "groups",
    "scopes",
    "networks",
    "expires",
    "disabled",
    "previous_hash",
    "previous_valid_until",
)
"""The fields of a GitOps key declaration (an entry of a policy file's ``api_keys:``)."""


def load_static_api_keys(entries: Sequence[Any], *, path: YamlPath = ("api_keys",)) -> list[ApiKey]:
    """Compile GitOps declarations ``{name, id, hash, groups, scopes, networks, expires}``.

    ``hash`` is the hex of ``keyed_hash(hash_key, secret, purpose="api-key")`` as printed by
    ``gateway keys create NAME --static``. Raises :class:`StaticKeyError` listing every
    problem with its path (for ``file:line`` messages).
    """
    problems: list[tuple[YamlPath, str]] = []
    unknown: list[YamlPath] = []
    keys: list[ApiKey] = []
    names: set[str] = set()
    ids: set[str] = set()
    if not isinstance(entries, list | tuple):
        raise StaticKeyError([(path, "expected a list of API key declarations")])
    for index, entry in enumerate(entries):
        here = (*path, index)
        if not isinstance(entry, Mapping):
            problems.append((here, "expected a mapping with name, id and hash"))
            continue
        for name in sorted(set(entry) - set(DECLARATION_FIELDS)):
            hint = did_you_mean(str(name), DECLARATION_FIELDS)
            unknown.append((*here, name))
            problems.append(((*here, name), f"unknown option '{name}'{hint}"))
        before = len(problems)
        name = entry.get("name")
        if not isinstance(name, str) or not is_valid_key_name(name):
            problems.append(((*here, "name"), "a name is required (letters, digits, . _ @ -)"))
        key_id = entry.get("id")
        if not isinstance(key_id, str) or not re.fullmatch(r"[a-z2-7]{12}", key_id):
            problems.append(((*here, "id"), "id must be 12 characters of a-z and 2-7"))
        hashes: dict[str, bytes | None] = {}
        for field_name in ("hash", "previous_hash"):
            raw = entry.get(field_name)
            if raw is None and field_name == "previous_hash":
                hashes[field_name] = None
                continue
            if not isinstance(raw, str) or not _HEX_HASH.fullmatch(raw.strip().lower()):
                problems.append(
                    ((*here, field_name), f"{field_name} must be 64 hex digits (a keyed hash)")
                )
                continue
            hashes[field_name] = bytes.fromhex(raw.strip().lower())
        values: dict[str, Any] = {}
        for field_name, convert in (
            ("groups", _text_list),
            ("scopes", _text_list),
            ("networks", _text_list),
            ("expires", parse_timestamp),
            ("previous_valid_until", parse_timestamp),
        ):
            raw = entry.get(field_name)
            if raw is None:
                continue
            try:
                values[field_name] = convert(raw)
            except ValueError as error:
                problems.append(((*here, field_name), str(error)))
        disabled = entry.get("disabled", False)
        if not isinstance(disabled, bool):
            problems.append(((*here, "disabled"), "disabled must be true or false"))
        owner = entry.get("owner", "")
        if not isinstance(owner, str):
            problems.append(((*here, "owner"), "owner must be text"))
        if len(problems) > before:
            continue
        assert isinstance(name, str) and isinstance(key_id, str) and isinstance(owner, str)
        if name in names:
            problems.append(((*here, "name"), f"API key name '{name}' is declared twice"))
            continue
        if key_id in ids:
            problems.append(((*here, "id"), f"API key id '{key_id}' is declared twice"))
            continue
        names.add(name)
        ids.add(key_id)
        secret_hash = hashes["hash"]
        assert secret_hash is not None
        try:
            keys.append(
                ApiKey.compile(
                    key_id,
                    name,
                    owner,
                    secret_hash,
                    previous_secret_hash=hashes.get("previous_hash"),
                    previous_valid_until=values.get("previous_valid_until"),
                    groups=values.get("groups", ()),
                    scopes=values.get("scopes", ()),
                    networks=values.get("networks", ()),
                    expires_at=values.get("expires"),
                    disabled=disabled,
                    static=True,
                )
            )
        except NetworkError as error:
            problems.append(((*here, "networks"), str(error)))
        except ValueError as error:
            problems.append(((*here, "scopes"), str(error)))
    if problems:
        raise StaticKeyError(problems, unknown=unknown)
    return keys
