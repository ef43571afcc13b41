"""Open-redirect protection: one row per target, the expected answer."""

from __future__ import annotations

import pytest

from gateway.security.redirects import is_within_domain, safe_redirect

DOMAINS = ("example.com", "example.org")

ACCEPTED = [
    ("https://example.com", "https://example.com/"),
    ("https://example.com/", "https://example.com/"),
    ("https://app.example.com/path?q=1#frag", "https://app.example.com/path?q=1#frag"),
    ("https://a.b.example.com:8443/x", "https://a.b.example.com:8443/x"),
    ("HTTPS://App.Example.COM/Case", "https://app.example.com/Case"),
    ("https://example.org/other-domain", "https://example.org/other-domain"),
    ("https://app.example.com/%2F%2Fevil.com", "https://app.example.com/%2F%2Fevil.com"),
    (
        "https://app.example.com/?next=https://evil.com",
        "https://app.example.com/?next=https://evil.com",
    ),
    ("https://app.example.com/caf\u00e9?q=\u00e4", "https://app.example.com/caf%C3%A9?q=%C3%A4"),
    ("https://b\u00fccher.example.com/", "https://xn--bcher-kva.example.com/"),
    ("https://xn--bcher-kva.example.com/", "https://xn--bcher-kva.example.com/"),
    ("https://example.com:/", "https://example.com/"),
]

REFUSED = [
    None,
    "",
    "/relative/path",
    "relative",
    "//evil.com",
    "//example.com",
    "///example.com",
    "http://example.com/",  # not https
    "ftp://example.com/",
    "javascript:alert(1)",
    "JavaScript://example.com/%0aalert(1)",
    "data:text/html,<script>alert(1)</script>",
    "https:evil.com",
    "https:example.com",
    "https:/example.com",
    "https:///evil.com",
    "https://example.com.evil.com/",
    "https://evilexample.com/",
    "https://evil.com/.example.com",
    "https://evil.com?.example.com",
    "https://evil.com#.example.com",
    "https://evil.com\\@example.com",
    "https://evil.com%5c@example.com",
    "https://evil.com%5C@example.com",
    "https://example.com%2f@evil.com",
    "https://example.com%2eevil.com/",
    "https:\\\\evil.com",
    "https:/\\evil.com",
    "https://example.com\\.evil.com",
    "https://user@evil.com",
    "https://user@example.com/",
    "https://user:pass@example.com/",
    "https://example.com@evil.com",
    "https://example.com:443@evil.com",
    "https://@example.com/",
    "https://exa\tmple.com/",
    "https://example.com/\t",
    "https://example.com/a\nb",
    "https://example.com/\r\nSet-Cookie:x=y",
    "\thttps://example.com/",
    " https://example.com/",
    "https://example.com/ ",
    "https://example.com/a b",
    "https://example.com/\x00",
    "https://example.com/\u2028",
    "https://evil.com\u3002example.com/",  # ideographic full stop
    "https://\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com/",  # full-width letters
    "https://ex\u0430mple.com/",  # Cyrillic a
    "https://example.c\u03bfm/",  # Greek omicron
    "https://app.ex\u0430mple.com/",
    "https://xn--exmple-cua.com/",
    "https://example.com\u2044evil.com/",  # fraction slash
    "https://example.com\uff0fevil.com/",  # full-width solidus
    "https://example.com\uff03.evil.com/",  # full-width number sign
    "https://example.com./",  # trailing dot: another cookie host
    "https://.example.com/",
    "https://app..example.com/",
    "https://[::1]/",
    "https://127.0.0.1/",
    "https://example.com:99999/",
    "https://example.com:abc/",
    "https://com/",
    "https://" + "a" * 8200 + ".example.com/",
]


@pytest.mark.parametrize(("target", "expected"), ACCEPTED)
def test_accepted(target: str, expected: str) -> None:
    assert safe_redirect(target, DOMAINS) == expected


@pytest.mark.parametrize("target", REFUSED)
def test_refused(target: str | None) -> None:
    assert safe_redirect(target, DOMAINS) is None


def test_no_domains_refuses_everything() -> None:
    assert safe_redirect("https://example.com/", ()) is None


def test_configured_domains_are_normalised() -> None:
    assert safe_redirect("https://app.example.com/", [" .Example.COM "]) == (
        "https://app.example.com/"
    )


@pytest.mark.parametrize(
    ("host", "domain", "expected"),
    [
        ("example.com", "example.com", True),
        ("a.example.com", "example.com", True),
        ("aexample.com", "example.com", False),
        ("example.com.evil", "example.com", False),
    ],
)
def test_is_within_domain(host: str, domain: str, expected: bool) -> None:
    assert is_within_domain(host, domain) is expected
