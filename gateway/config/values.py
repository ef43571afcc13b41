"""Value types of the configuration: durations, rates, paths, networks, URLs, fingerprints.

Each is an ``Annotated`` type whose validator turns what a person writes (``"1h30m"``,
``"600/m"``, ``"10.0.0.0/8 192.168.0.0/16"``) into a plain value, or raises ValueError with a
message that says what to write instead. Nothing here imports the rest of the gateway but the
bottom modules (`gateway.errors`, `gateway.net`):
feature packages build their section models from these, and their runtime code may use the
same parsers (:func:`parse_networks`, :func:`normalize_fingerprint`) so that a value means
the same everywhere.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from gateway.errors import ConfigError
from gateway.net import IPNetwork, parse_network

__all__ = [
    "PRIVATE_NETWORKS",
    "ConfigPath",
    "Duration",
    "HttpsOrLoopbackUrl",
    "HttpsUrl",
    "IPNetwork",
    "Network",
    "NetworkError",
    "NetworkList",
    "Rate",
    "Section",
    "SqliteSettings",
    "networks_from_env",
    "normalize_fingerprint",
    "parse_duration",
    "parse_networks",
    "parse_rate",
    "private_networks",
]


class Section(BaseModel):
    """A section of ``gateway.yml``: unknown options are errors, values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------
# Durations
# --------------------------------------------------------------------------------------------

_DURATION_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 7 * 86400,
    "week": 7 * 86400,
    "weeks": 7 * 86400,
    "M": 30 * 86400,
    "month": 30 * 86400,
    "months": 30 * 86400,
    "y": 365 * 86400,
    "year": 365 * 86400,
    "years": 365 * 86400,
}
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*")


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``"90s"``, ``"5m"``, ``"1h30m"``, ``"1 month"`` (Authelia's units)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 1h or 1M")
    if isinstance(value, int | float):
        seconds = float(value) if isinstance(value, float) or abs(value) < 2**63 else math.inf
        if not math.isfinite(seconds):  # .inf / .nan would overflow cookie ages and timers
            raise ValueError("a duration must be a finite number of seconds")
        if seconds < 0:
            raise ValueError("a duration cannot be negative")
        return seconds
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a duration such as 30s, 5m, 1h or 1M")
    text = value.strip()
    if text.isascii() and text.isdigit():
        total = float(text)
        if not math.isfinite(total):
            raise ValueError(f"'{text[:40]}' is too large for a duration")
        return total
    total = 0.0
    position = 0
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        unit = match.group(2) if match else ""
        if not match or (unit not in _DURATION_UNITS and unit.lower() not in _DURATION_UNITS):
            raise ValueError(
                f"'{value}' is not a duration (use a number with a unit: s, m, h, d, w, M, y)"
            )
        factor = _DURATION_UNITS.get(unit, _DURATION_UNITS.get(unit.lower(), 1))
        total += float(match.group(1)) * factor
        position = match.end()
    if not math.isfinite(total):
        raise ValueError(f"'{text[:40]}' is too large for a duration")
    return total


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written as a number or with units (``30s``, ``5m``, ``1h30m``, ``1M``)."""


# --------------------------------------------------------------------------------------------
# Rates
# --------------------------------------------------------------------------------------------

_RATE_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}


def parse_rate(value: Any) -> float:
    """Requests per second from ``10/s``, ``600/m``, ``5000/h``, ``10000/d`` or a number."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    text = str(value).strip().lower()
    count, _, unit = text.partition("/")
    try:
        amount = float(count)
    except ValueError:
        amount = -1.0
    factor = _RATE_UNITS.get(unit.strip() or "s")
    if amount <= 0 or factor is None:
        raise ValueError(f"'{value}' is not a rate (write e.g. 10/s, 600/m or 5000/h)")
    return amount / factor


Rate = Annotated[float, BeforeValidator(parse_rate)]
"""Requests per second, written ``10/s``, ``600/m``, ``5000/h`` or as a number."""


# --------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------


def _config_path(path: Path) -> Path:
    # open() and stat() raise ValueError, not OSError, for a NUL byte: refuse it here, where
    # the error can still name the line.
    if "\0" in str(path):
        raise ValueError("a path cannot contain a NUL byte")
    return path.expanduser()


ConfigPath = Annotated[Path, AfterValidator(_config_path)]
"""A path; relative ones are resolved against the configuration file's directory on load."""


class SqliteSettings(Section):
    """A SQLite database file (the session store's, or the records')."""

    path: ConfigPath


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------

PRIVATE_NETWORKS: tuple[str, ...] = (
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::1/128",
    "fc00::/7",
)
"""Loopback and private ranges: the allowlist of an API host that declares none."""


class NetworkError(ConfigError, ValueError):
    """A network list cannot be used; the message names where it came from."""


def parse_networks(values: Iterable[str], *, source: str = "networks") -> tuple[IPNetwork, ...]:
    """Parse CIDRs (or single addresses) with :func:`gateway.net.parse_network`; host bits are
    allowed and masked off, IPv4-mapped networks become IPv4."""
    networks: list[IPNetwork] = []
    for value in values:
        text = str(value).strip()
        try:
            networks.append(parse_network(text))
        except ValueError:
            raise NetworkError(
                f"{source}: '{text}' is not an IP address or CIDR network "
                "(write e.g. 10.0.0.0/8 or 2001:db8::/32)"
            ) from None
    return tuple(networks)


def networks_from_env(name: str, environ: Mapping[str, str] | None = None) -> tuple[IPNetwork, ...]:
    """The space- (or comma-) separated CIDRs in environment variable ``name``."""
    env = os.environ if environ is None else environ
    raw = env.get(name)
    if raw is None:
        raise NetworkError(
            f"environment variable {name} is not set "
            "(it must hold space-separated CIDR networks, e.g. '203.0.113.0/24 10.0.0.0/8')"
        )
    entries = raw.replace(",", " ").split()
    if not entries:
        raise NetworkError(f"environment variable {name} is empty (expected CIDR networks)")
    return parse_networks(entries, source=f"environment variable {name}")


def private_networks() -> tuple[IPNetwork, ...]:
    """:data:`PRIVATE_NETWORKS`, parsed."""
    return tuple(parse_network(cidr) for cidr in PRIVATE_NETWORKS)


def _network(value: Any) -> IPNetwork:
    try:
        return parse_network(str(value))
    except ValueError:
        raise ValueError(f"'{value}' is not an IP address or CIDR network") from None


Network = Annotated[IPNetwork, BeforeValidator(_network)]
"""An IP address or CIDR network; host bits are masked off."""


def _network_list(value: Any) -> Any:
    """Networks as a YAML list, or as one space- or comma-separated string."""
    if isinstance(value, str):
        return value.replace(",", " ").split()
    return value


NetworkList = Annotated[tuple[Network, ...], BeforeValidator(_network_list)]
"""Networks as a YAML list, or as one space- or comma-separated string."""


# --------------------------------------------------------------------------------------------
# URLs
# --------------------------------------------------------------------------------------------


def _https_url(value: Any) -> str:
    text = str(value).strip()
    parts = urlsplit(text)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"'{text}' must be an absolute https:// URL")
    return text.rstrip("/")


HttpsUrl = Annotated[str, BeforeValidator(_https_url)]
"""An absolute ``https://`` URL, without a trailing slash."""


def _https_or_loopback_url(value: Any) -> str:
    text = str(value).strip()
    parts = urlsplit(text)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
        raise ValueError(
            f"'{text}' must be an https:// URL (plain http only for localhost / 127.0.0.1)"
        )
    return text


HttpsOrLoopbackUrl = Annotated[str, BeforeValidator(_https_or_loopback_url)]
"""An ``https://`` URL, or ``http://`` to this machine (a sidecar, a test server)."""


# --------------------------------------------------------------------------------------------
# Fingerprints
# --------------------------------------------------------------------------------------------

_HEX64 = re.compile(r"[0-9a-f]{64}")


def normalize_fingerprint(value: str) -> str:
    """``AB:CD:...`` or ``abcd...`` → 64 lowercase hex digits; raises ValueError otherwise."""
    text = value.strip().lower().replace(":", "")
    if not _HEX64.fullmatch(text):
        raise ValueError(f"'{value}' is not a SHA-256 fingerprint (64 hex digits)")
    return text
