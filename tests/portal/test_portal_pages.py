"""What every page has: security headers, no scripts, labelled fields, stable ids."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from gateway.portal.headers import CONTENT_SECURITY_POLICY
from tests.portal.support import Gateway

EXPECTED_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self' https:; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
}


class _Page(HTMLParser):
    """Collects the elements the accessibility checks look at."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[dict[str, str | None]] = []
        self.labels: set[str] = set()
        self.ids: list[str] = []
        self.scripts = 0
        self.inline_styles = 0
        self.external: list[str] = []
        self.tags: list[str] = []
        self.html_lang: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append(tag)
        if tag == "html":
            self.html_lang = attributes.get("lang")
        if attributes.get("id"):
            self.ids.append(str(attributes["id"]))
        if "style" in attributes:
            self.inline_styles += 1
        if any(name.startswith("on") for name in attributes):
            self.scripts += 1
        if tag == "script" or tag == "style":
            self.scripts += 1
        if tag in ("input", "select", "textarea"):
            self.inputs.append(attributes)
        if tag == "label" and attributes.get("for"):
            self.labels.add(str(attributes["for"]))
        for name in ("href", "src", "action"):
            value = attributes.get(name) or ""
            if re.match(r"(?i)^(https?:)?//", value):
                self.external.append(value)


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def _assert_good_page(html: str) -> _Page:
    page = parse(html)
    assert page.html_lang == "en"
    assert page.scripts == 0, "pages work without JavaScript"
    assert page.inline_styles == 0, "the CSP forbids inline styles"
    assert page.external == [], "no external assets"
    assert len(page.ids) == len(set(page.ids)), "ids are unique"
    for field in page.inputs:
        if field.get("type") in ("hidden",):
            continue
        assert field.get("id") in page.labels, f"input {field} has a <label for>"
    assert '<meta name="viewport"' in html
    return page


def _assert_headers(response) -> None:  # type: ignore[no-untyped-def]
    for name, value in EXPECTED_HEADERS.items():
        assert response.headers.get(name) == value, name


def test_the_policy_constant_is_the_documented_one() -> None:
    assert EXPECTED_HEADERS["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_login_page(gateway: Gateway) -> None:
    response = gateway.client.get("/")
    _assert_headers(response)
    page = _assert_good_page(response.text)
    by_id = {str(field.get("id")): field for field in page.inputs if field.get("id")}
    assert by_id["username"]["autocomplete"] == "username"
    assert by_id["password"]["autocomplete"] == "current-password"
    assert by_id["password"]["type"] == "password"
    assert by_id["remember"]["type"] == "checkbox"
    assert 'id="sign-in"' in response.text


def test_error_page_points_fields_at_the_error(gateway: Gateway) -> None:
    response = gateway.login("alice", "wrong")
    page = _assert_good_page(response.text)
    for field in page.inputs:
        if field.get("id") in ("username", "password"):
            assert field.get("aria-describedby") == "form-error"
            assert field.get("aria-invalid") == "true"
    assert "form-error" in page.ids


def test_signed_in_page(gateway: Gateway) -> None:
    gateway.login()
    response = gateway.client.get("/")
    _assert_headers(response)
    page = _assert_good_page(response.text)
    for element_id in ("logout", "logout-everywhere", "totp-setup"):
        assert element_id in page.ids


def test_second_factor_and_enroll_pages(gateway: Gateway) -> None:
    gateway.login()
    response = gateway.client.get("/2fa/enroll")
    _assert_headers(response)
    page = _assert_good_page(response.text)
    code = next(field for field in page.inputs if field.get("id") == "code")
    assert code["autocomplete"] == "one-time-code"
    assert code["inputmode"] == "numeric"
    assert {"totp-secret", "confirm"} <= set(page.ids)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/no/such/page"),
        ("POST", "/login"),
        ("GET", "/login"),
        ("GET", "/2fa"),
        ("GET", "/2fa/enroll"),
        ("POST", "/logout"),
    ],
)
def test_every_answer_has_the_security_headers(gateway: Gateway, method: str, path: str) -> None:
    response = gateway.client.request(method, path)
    _assert_headers(response)


def test_redirects_have_the_security_headers(gateway: Gateway) -> None:
    response = gateway.login()
    assert response.status_code == 303
    _assert_headers(response)


def test_not_found_is_a_page(gateway: Gateway) -> None:
    response = gateway.client.get("/wp-login.php?x=<script>")
    assert response.status_code == 404
    assert "Page not found" in response.text
    assert "<script>" not in response.text
    assert "wp-login" not in response.text
    _assert_good_page(response.text)


def test_wrong_method_is_refused(gateway: Gateway) -> None:
    assert gateway.client.get("/login").status_code == 405
    assert gateway.client.put("/").status_code == 405


def test_static_files_are_served_with_headers(gateway: Gateway) -> None:
    html = gateway.client.get("/").text
    href = re.search(r'href="(/static/portal\.css\?v=[0-9a-f]+)"', html)
    assert href is not None
    response = gateway.client.get(href.group(1))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "max-age" in response.headers["cache-control"]
    assert "prefers-color-scheme: dark" in response.text
    assert ":focus-visible" in response.text
    assert "@import" not in response.text and "url(" not in response.text
    icon = gateway.client.get("/static/favicon.svg")
    assert icon.status_code == 200
    assert gateway.client.get("/static/../app.py").status_code == 404


def test_head_requests_work(gateway: Gateway) -> None:
    response = gateway.client.head("/")
    assert response.status_code == 200
    _assert_headers(response)
