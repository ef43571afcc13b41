"""Whatever Caddy version sits in front, an upstream never sees a Remote-* value that the
client made up: the shipped snippet strips them, and the gateway answers every 2xx with all
four headers so even a bare `copy_headers` replaces a client's value."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack import PASSWORD, Stack, render_caddyfile, stack, users_file_authentication
from tests.services import CADDY_BINARIES, CaddyFactory

SPOOFED = {
    "Remote-User": "admin",
    "Remote-Groups": "admins",
    "Remote-Email": "admin@example.com",
    "Remote-Name": "Admin",
    "Remote_User": "admin",
    "Remote_Groups": "admins",
}

# A Caddyfile as many people write it: forward_auth with copy_headers, no stripping.
BARE = """\
{
	auto_https disable_redirects
}

auth.example.com {
	tls internal
	reverse_proxy {$GATEWAY}
}

app.example.com, public.example.com {
	tls internal
	forward_auth {$GATEWAY} {
		uri /api/authz/forward-auth
		copy_headers Remote-User Remote-Groups Remote-Email Remote-Name
	}
	reverse_proxy {$UPSTREAM}
}
"""


@pytest.fixture(
    scope="module",
    params=[(b, f) for b in CADDY_BINARIES for f in ("shipped", "bare")],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def front(
    request: pytest.FixtureRequest, caddy: CaddyFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, str]]:
    binary, flavour = request.param
    directory = tmp_path_factory.mktemp(f"headers-{binary}-{flavour}")
    caddyfile = render_caddyfile() if flavour == "shipped" else BARE
    with stack(
        caddy,
        directory,
        authentication=users_file_authentication(directory),
        binary=binary,
        caddyfile=caddyfile,
    ) as running:
        yield running, flavour


def test_anonymous_bypass_cannot_smuggle_identity(front: tuple[Stack, str]) -> None:
    running, flavour = front
    with running.client() as client:
        response = client.get(running.url("public.example.com", "/"), headers=SPOOFED)
    assert response.status_code == 200
    seen = response.json()["headers"]
    assert seen.get("remote-user", "") == ""
    assert seen.get("remote-groups", "") == ""
    assert seen.get("remote-email", "") == ""
    assert seen.get("remote-name", "") == ""
    if flavour == "shipped":
        # The underscore spellings are stripped too (CGI/WSGI fold them into REMOTE_USER).
        assert "remote_user" not in seen and "remote_groups" not in seen


def test_signed_in_user_cannot_claim_other_groups(front: tuple[Stack, str]) -> None:
    running, _ = front
    with running.client() as client:
        login = client.get(running.url("auth.example.com", "/"))
        csrf_cookie = login.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]
        field = login.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        signed_in = client.post(
            running.url("auth.example.com", "/login"),
            data={"csrf": field, "username": "harry", "password": PASSWORD},
            headers={"Origin": f"https://auth.example.com:{running.https_port}"},
            cookies={"gateway_csrf": csrf_cookie},
        )
        assert signed_in.status_code == 303, signed_in.text[:500]
        set_cookie = next(
            value
            for value in signed_in.headers.get_list("set-cookie")
            if value.startswith("gateway_session=")
        )
        assert "Domain=example.com" in set_cookie
        session = set_cookie.split(";", 1)[0].split("=", 1)[1]
        response = client.get(
            running.url("app.example.com", "/"),
            headers={**SPOOFED, "Cookie": f"gateway_session={session}", "Accept": "text/html"},
        )
    assert response.status_code == 200
    seen = response.json()["headers"]
    assert seen["remote-user"] == "harry"
    assert seen["remote-groups"] == "dev"
    assert seen["remote-email"] == "harry@example.com"


@pytest.mark.parametrize("binary", CADDY_BINARIES)
def test_shipped_caddyfile_keeps_operator_endpoints_private(
    caddy: CaddyFactory, tmp_path: Path, binary: str
) -> None:
    with (
        stack(
            caddy, tmp_path, authentication=users_file_authentication(tmp_path), binary=binary
        ) as running,
        running.client() as client,
    ):
        assert client.get(running.url("auth.example.com", "/metrics")).status_code == 404
        assert client.get(running.url("auth.example.com", "/api/ready")).status_code == 404
        assert client.get(running.url("auth.example.com", "/api/health")).status_code == 200
