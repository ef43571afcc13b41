"""Issue 4 end to end: a real Chromium through a real Caddy to the gateway backed by a real
OpenLDAP. Sign in with the directory password, enrol TOTP by reading the key shown with the
QR code, sign out, sign in again with password and code, and reach a two_factor host with
the groups the directory knows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pyotp
import pytest
from playwright.sync_api import BrowserContext, Page

from tests.e2e.stack import Stack, echoed, stack
from tests.services import CaddyFactory, LdapServer


def ldap_authentication(server: LdapServer) -> str:
    active = f"(!(memberOf={server.disabled_group_dn}))"
    return f"""\
authentication:
  backend: ldap
  ldap:
    implementation: openldap
    urls: [{server.url}]
    base_dn: {server.base_dn}
    additional_users_dn: ou=people
    additional_groups_dn: ou=groups
    users_filter: "(&({{username_attribute}}={{input}})(objectClass=person){active})"
    user: {server.bind_dn}
    password: {server.bind_password}
    connect_timeout: 2s
    read_timeout: 2s
"""


@pytest.fixture(scope="module")
def directory_stack(
    caddy: CaddyFactory, ldap_server: LdapServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("ldap")
    with stack(caddy, directory, authentication=ldap_authentication(ldap_server)) as running:
        yield running


def sign_in(page: Page, username: str, password: str) -> None:
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#sign-in")


def test_ldap_login_totp_enrolment_and_two_factor_host(
    directory_stack: Stack, browser_context: BrowserContext
) -> None:
    running = directory_stack
    admin = running.url("admin.example.com", "/dashboard")
    page = browser_context.new_page()
    page.goto(admin)
    assert urlsplit(page.url).hostname == "auth.example.com"

    # The password is checked by binding to slapd; admin.example.com wants two factors
    # and john has no authenticator yet, so the portal leads him to enrol one.
    sign_in(page, "john", "password")
    page.wait_for_selector("#totp-secret")
    assert page.locator("svg").count() >= 1  # the QR code, drawn locally as SVG
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    totp = pyotp.TOTP(secret)
    page.fill("#code", totp.now())
    page.click("#confirm")

    # Recovery codes are shown once; then on to the page he asked for.
    codes = page.locator("#recovery-codes li")
    assert codes.count() == 10
    page.click("#continue")
    page.wait_for_url(admin)
    headers = echoed(page.content())
    assert headers["remote-user"] == "john"
    assert headers["remote-groups"] == "admins,dev"
    assert headers["remote-email"] == "john@example.com"
    assert headers["remote-name"] == "John Doe"

    # Sign out, then come back: password and a code this time.
    page.goto(running.url("auth.example.com", "/"))
    page.click("#logout")
    page.goto(admin)
    sign_in(page, "john", "password")
    page.wait_for_selector("#code")
    # The enrolment code's time step is spent (replay protection); the next step's code is
    # within the allowed window and has not been used.
    page.fill("#code", totp.at(time.time() + 30))
    page.click("#verify")
    page.wait_for_url(admin)
    assert echoed(page.content())["remote-groups"] == "admins,dev"


def test_directory_rejects_wrong_password_and_disabled_user(
    directory_stack: Stack, browser_context: BrowserContext
) -> None:
    page = browser_context.new_page()
    page.goto(directory_stack.url("app.example.com", "/"))
    sign_in(page, "harry", "wrong")
    wrong = page.locator("#form-error").inner_text()
    sign_in(page, "dave", "password")  # dave is in the disabled group
    disabled = page.locator("#form-error").inner_text()
    assert wrong == disabled
    assert urlsplit(page.url).hostname == "auth.example.com"


def test_one_factor_host_needs_only_the_directory_password(
    directory_stack: Stack, browser_context: BrowserContext
) -> None:
    page = browser_context.new_page()
    target = directory_stack.url("app.example.com", "/")
    page.goto(target)
    sign_in(page, "harry", "password")
    page.wait_for_url(target)
    headers = echoed(page.content())
    assert headers["remote-user"] == "harry"
    assert headers["remote-groups"] == "dev"
