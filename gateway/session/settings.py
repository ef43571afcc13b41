"""``session:`` in ``gateway.yml``: lifetimes, one cookie per root domain, the store.

The schema only; :mod:`gateway.session.manager` and the stores read it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, field_validator, model_validator

from gateway.config.values import Duration, HttpsUrl, Section, SqliteSettings, parse_duration

__all__ = ["CookieDomain", "RedisSettings", "SessionSettings"]


class CookieDomain(Section):
    """One root domain with its own session cookie, portal and default landing page."""

    domain: str
    portal_url: HttpsUrl
    default_redirect_url: HttpsUrl | None = None
    name: str | None = None
    expiration: Annotated[float, BeforeValidator(parse_duration), Field(gt=0)] | None = None
    inactivity: Duration | None = None
    remember_me: Duration | None = None

    @field_validator("domain")
    @classmethod
    def _domain_shape(cls, value: str) -> str:
        domain = value.strip().lower().lstrip(".")
        if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)*", domain):
            raise ValueError(f"'{value}' is not a domain name (write e.g. example.com)")
        if "." not in domain and domain != "localhost":
            raise ValueError(
                f"'{value}' is a top-level name; browsers refuse cookies for it "
                "(use a registrable domain such as example.com)"
            )
        return domain

    @model_validator(mode="after")
    def _portal_inside_domain(self) -> CookieDomain:
        for label, url in (
            ("portal_url", self.portal_url),
            ("default_redirect_url", self.default_redirect_url),
        ):
            if url is None:
                continue
            host = (urlsplit(url).hostname or "").lower()
            if host != self.domain and not host.endswith("." + self.domain):
                raise ValueError(f"{label} {url} is not inside the cookie domain {self.domain}")
        return self


class RedisSettings(Section):
    url: str = "redis://127.0.0.1:6379/0"
    password: str | None = None
    key_prefix: str = "gateway:"
    timeout: Duration = Field(2.0, gt=0)
    """The longest one Redis operation may take, connecting and waiting for the pool included."""
    pool_size: int = Field(32, ge=1, le=1024)
    """Connections per process (per client: sessions, rate limits)."""


class SessionSettings(Section):
    cookie_name: str = "gateway_session"
    same_site: Literal["lax", "strict"] = "lax"
    expiration: Duration = Field(3600.0, gt=0)
    """Absolute lifetime of a session."""
    inactivity: Duration = 300.0
    """Idle time after which a session ends; 0 disables the check."""
    remember_me: Duration = 30 * 86400.0
    """Lifetime of a "keep me signed in" session; 0 disables remember-me."""
    cookies: tuple[CookieDomain, ...] = Field(min_length=1)
    store: Literal["memory", "sqlite", "redis"] = "sqlite"
    sqlite: SqliteSettings = SqliteSettings(path=Path("data/sessions.sqlite3"))
    redis: RedisSettings = RedisSettings()
    cache_ttl: Duration = 1.0
    """How long a process may reuse a session it read while it cannot hear of changes made
    elsewhere (the store's change feed is down); while it can, until the session expires.
    0 reads the store on every request."""
    cache_size: int = Field(100_000, ge=1)
    """Sessions each process keeps in memory (and as many identities built from them)."""
    cache_max_bytes: int = Field(64 * 1024 * 1024, ge=1024 * 1024)
    """About how much memory they may take; the oldest are dropped first."""

    @model_validator(mode="after")
    def _unique_domains(self) -> SessionSettings:
        seen: set[str] = set()
        for cookie in self.cookies:
            if cookie.domain in seen:
                raise ValueError(f"cookie domain {cookie.domain} is configured twice")
            seen.add(cookie.domain)
        return self
