"""The server `gateway serve` does not choose by default still serves a whole deployment:
a browser signs in through Caddy and is let through by a forward-auth decision.

The default server is exercised by every other end-to-end test; the whole suite can be run
under the other one with `GATEWAY_SERVER=<name> pytest tests/e2e`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.settings import ServerSettings
from gateway.serve import SERVER_ENV, SERVERS
from tests.e2e.stack import PASSWORD, stack, users_file_authentication
from tests.services import CaddyFactory

DEFAULT = ServerSettings().implementation
OTHER = next(name for name in SERVERS if name != DEFAULT)


def test_a_decision_through_caddy_on_the_other_server(
    caddy: CaddyFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SERVER_ENV, OTHER)
    with (
        stack(caddy, tmp_path, authentication=users_file_authentication(tmp_path)) as running,
        running.client() as client,
    ):
        anonymous = client.get(running.url("app.example.com", "/"), headers={"Accept": "text/html"})
        assert anonymous.status_code == 302
        assert anonymous.headers["location"].startswith(
            f"https://auth.example.com:{running.https_port}/"
        )
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
        session = next(
            value.split(";", 1)[0].split("=", 1)[1]
            for value in signed_in.headers.get_list("set-cookie")
            if value.startswith("gateway_session=")
        )
        response = client.get(
            running.url("app.example.com", "/reports"),
            headers={"Cookie": f"gateway_session={session}", "Accept": "text/html"},
        )
        assert response.status_code == 200
        seen = response.json()["headers"]
        assert seen["remote-user"] == "harry"
        assert seen["remote-groups"] == "dev"
    log = (tmp_path / "gateway.log").read_text()
    assert f"(server {OTHER})" in log, log[-2000:]
