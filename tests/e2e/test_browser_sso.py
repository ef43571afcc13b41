"""A person in a real browser, through a real Caddy, signs in once and reaches every
protected subdomain with the right identity headers; signing out ends access."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import BrowserContext, Page

from tests.e2e.stack import PASSWORD, Stack, echoed, stack, users_file_authentication
from tests.services import CaddyFactory


@pytest.fixture(scope="module")
def sso(caddy: CaddyFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("sso")
    with stack(caddy, directory, authentication=users_file_authentication(directory)) as running:
        yield running


def sign_in(page: Page, username: str, password: str) -> None:
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#sign-in")


def test_sign_in_once_then_every_subdomain(sso: Stack, browser_context: BrowserContext) -> None:
    page = browser_context.new_page()
    target = sso.url("app.example.com", "/reports/q3?format=html")
    page.goto(target)

    # No session: Caddy passed the gateway's redirect on to the portal's login form.
    portal = urlsplit(page.url)
    assert portal.hostname == "auth.example.com"
    assert parse_qs(portal.query)["rd"] == [target]
    assert page.locator("label[for=username]").is_visible()
    assert page.locator("label[for=password]").is_visible()

    sign_in(page, "john", PASSWORD)
    page.wait_for_url(target)
    headers = echoed(page.content())
    assert headers["remote-user"] == "john"
    assert headers["remote-groups"] == "admins,dev"
    assert headers["remote-email"] == "john@example.com"
    assert headers["remote-name"] == "John Doe"

    # One cookie on the parent domain: a second subdomain needs no new sign-in.
    cookies = {c["name"]: c for c in browser_context.cookies()}
    session_cookie = cookies["gateway_session"]
    assert session_cookie["domain"] in (".example.com", "example.com")
    assert session_cookie["httpOnly"] and session_cookie["secure"]
    assert session_cookie["sameSite"] == "Lax"

    page.goto(sso.url("secure.example.com", "/"))
    assert urlsplit(page.url).hostname == "secure.example.com"
    assert echoed(page.content())["remote-user"] == "john"

    # Sign out on the portal: the session ends server-side, protected pages need login again.
    page.goto(sso.url("auth.example.com", "/"))
    page.click("#logout")
    page.goto(sso.url("app.example.com", "/"))
    assert urlsplit(page.url).hostname == "auth.example.com"
    assert page.locator("#sign-in").is_visible()


def test_stolen_cookie_stops_working_after_sign_out(
    sso: Stack, browser_context: BrowserContext
) -> None:
    page = browser_context.new_page()
    page.goto(sso.url("app.example.com", "/"))
    sign_in(page, "harry", PASSWORD)
    page.wait_for_url(sso.url("app.example.com", "/"))
    cookie = next(c for c in browser_context.cookies() if c["name"] == "gateway_session")

    with sso.client() as client:
        copied = {"Cookie": f"gateway_session={cookie['value']}", "Accept": "text/html"}
        response = client.get(sso.url("app.example.com", "/"), headers=copied)
        assert response.status_code == 200
        assert response.json()["headers"]["remote-user"] == "harry"

        page.goto(sso.url("auth.example.com", "/"))
        page.click("#logout")
        response = client.get(sso.url("app.example.com", "/"), headers=copied)
        assert response.status_code == 302
        assert urlsplit(response.headers["location"]).hostname == "auth.example.com"


def test_wrong_password_shows_a_message_that_reveals_nothing(
    sso: Stack, browser_context: BrowserContext
) -> None:
    page = browser_context.new_page()
    page.goto(sso.url("app.example.com", "/"))
    sign_in(page, "john", "not the password")
    wrong_password = page.locator("#form-error").inner_text()
    sign_in(page, "nobody-by-this-name", "not the password")
    unknown_user = page.locator("#form-error").inner_text()
    assert wrong_password == unknown_user
    assert "john" not in wrong_password


def test_public_host_passes_without_login(sso: Stack, browser_context: BrowserContext) -> None:
    page = browser_context.new_page()
    page.goto(sso.url("public.example.com", "/"))
    assert urlsplit(page.url).hostname == "public.example.com"
    assert echoed(page.content()).get("remote-user", "") == ""


def test_portal_page_in_browser_has_no_script_and_strict_csp(
    sso: Stack, browser_context: BrowserContext, tmp_path: Path
) -> None:
    page = browser_context.new_page()
    response = page.goto(sso.url("auth.example.com", "/"))
    assert response is not None
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert page.locator("script").count() == 0
    page.screenshot(path=str(tmp_path / "portal.png"))
    assert (tmp_path / "portal.png").stat().st_size > 1000
