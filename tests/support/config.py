"""One builder for the configuration files that tests and bench/ write.

``GatewayConfig`` holds the parts of gateway.yml that vary (and the texts of policy.yml and
users.yml); ``write(directory)`` writes them, ``text()`` is gateway.yml alone, and
``dataclasses.replace`` makes a variant. A section is YAML text, written verbatim (header
line included, as it appears in the file), or a mapping: the section's value, dumped in
block style. ``session`` and ``server`` are the keys inside those sections: text indented by
two spaces, or a mapping.

gateway.yml always has this layout, so a test may count lines in it (tests/test_check.py
does)::

    server:            only with address, port, trusted_proxies or server, in that order
    secrets:           encryption_keys: [...] and hash_key: ..., one line each (or secrets)
    policy:            files: [...] on one line
    session:           store: (when given), then session, then cookies: and two lines per
                       cookie (three with default_redirect_url)
    authentication     when given
    storage            when given
    extra              verbatim, or one section per key of a mapping
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.security.crypto import generate_key

Section = str | Mapping[str, Any]

USERS_FILE = "authentication:\n  backend: file\n  file:\n    path: users.yml\n"
"""The authentication section for a users file beside gateway.yml."""


@dataclass(frozen=True)
class Cookie:
    """One entry of session.cookies."""

    domain: str = "example.com"
    portal_url: str = "https://auth.example.com"
    default_redirect_url: str | None = None

    def text(self) -> str:
        text = f"    - domain: {self.domain}\n      portal_url: {self.portal_url}\n"
        if self.default_redirect_url is not None:
            text += f"      default_redirect_url: {self.default_redirect_url}\n"
        return text


@dataclass(frozen=True)
class User:
    """One entry of a users file (all of them share the password hash given to users_yml)."""

    displayname: str
    email: str | None = None
    groups: Sequence[str] | None = None
    disabled: bool | None = None


def users_yml(password_hash: str, **users: User) -> str:
    """A users file: one entry per keyword (the username), every key on its own line."""
    text = "users:\n"
    for name, user in users.items():
        text += f"  {name}:\n    displayname: {user.displayname}\n"
        if user.email is not None:
            text += f"    email: {user.email}\n"
        if user.groups is not None:
            text += f"    groups: [{', '.join(user.groups)}]\n"
        text += f'    password: "{password_hash}"\n'
        if user.disabled is not None:
            text += f"    disabled: {'true' if user.disabled else 'false'}\n"
    return text


@dataclass(frozen=True)
class GatewayConfig:
    """gateway.yml from the parts that vary, plus the policy and users files beside it."""

    store: str | None = None
    session: Section = ""
    cookies: Sequence[Cookie] = (Cookie(),)
    authentication: Section | None = None
    storage: Section | None = None
    address: str | None = None
    port: int | None = None
    trusted_proxies: Sequence[str] | None = None
    server: Section = ""
    encryption_keys: Sequence[str] = ()  # none: a new key each time the text is made
    hash_key: str = "k" * 40
    secrets: Section | None = None  # instead of encryption_keys and hash_key
    policy_files: Sequence[str] = ("policy.yml",)
    extra: Section = ""
    policy: str | None = None  # the text of the first policy file, when write() is to write it
    users: str | None = None  # the text of users.yml, when write() is to write it

    def text(self) -> str:
        text = ""
        server = ""
        if self.address is not None:
            server += f"  address: {self.address}\n"
        if self.port is not None:
            server += f"  port: {self.port}\n"
        if self.trusted_proxies is not None:
            server += f"  trusted_proxies: [{', '.join(self.trusted_proxies)}]\n"
        server += _keys(self.server)
        if server:
            text += "server:\n" + server
        if self.secrets is not None:
            text += _section("secrets", self.secrets)
        else:
            keys = ", ".join(self.encryption_keys or [generate_key()])
            text += f"secrets:\n  encryption_keys: [{keys}]\n  hash_key: {self.hash_key}\n"
        text += f"policy:\n  files: [{', '.join(self.policy_files)}]\n"
        text += "session:\n"
        if self.store is not None:
            text += f"  store: {self.store}\n"
        text += _keys(self.session)
        text += "  cookies:\n" + "".join(cookie.text() for cookie in self.cookies)
        if self.authentication is not None:
            text += _section("authentication", self.authentication)
        if self.storage is not None:
            text += _section("storage", self.storage)
        if isinstance(self.extra, str):
            return text + self.extra
        return text + "".join(_section(name, value) for name, value in self.extra.items())

    def write(self, directory: Path, name: str = "gateway.yml") -> Path:
        """Write gateway.yml as ``name`` (and policy.yml, users.yml when given); its path."""
        if self.policy is not None:
            policy = directory / self.policy_files[0]
            policy.parent.mkdir(parents=True, exist_ok=True)
            policy.write_text(self.policy)
        if self.users is not None:
            users = directory / "users.yml"
            users.write_text(self.users)
            users.chmod(0o600)
        path = directory / name
        path.write_text(self.text())
        return path


def _section(name: str, value: Section) -> str:
    if isinstance(value, str):
        return value if value.endswith("\n") else value + "\n"
    return _dump({name: dict(value)})


def _keys(value: Section) -> str:
    if isinstance(value, str):
        return value
    return textwrap.indent(_dump(dict(value)), "  ") if value else ""


class _Dumper(yaml.SafeDumper):
    """Block style throughout; a text of several lines as a literal block (a PEM key)."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value.rstrip("\n") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _dump(value: dict[str, Any]) -> str:
    return yaml.dump(
        value, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False
    )
