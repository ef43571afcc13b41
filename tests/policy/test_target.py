"""Requests are normalised once, so a rule cannot be dodged by spelling the URL differently."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.policy import BadTarget, Level, Subject, Target
from gateway.policy.normalize import clean_path, parse_query


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("https://a.example.com", "/"),
        ("https://a.example.com/", "/"),
        ("https://a.example.com/a/../admin", "/admin"),
        ("https://a.example.com/%61dmin", "/admin"),
        ("https://a.example.com/%2e%2e/admin", "/admin"),
        ("https://a.example.com//admin//x", "/admin/x"),
        ("https://a.example.com/./admin/.", "/admin"),
        ("https://a.example.com/dir/", "/dir/"),
        ("https://a.example.com/dir//", "/dir/"),
        ("https://a.example.com/dir/./", "/dir/"),
        ("https://a.example.com/dir/..", "/"),
        ("https://a.example.com/../../etc/passwd", "/etc/passwd"),
        ("https://a.example.com/a%2Fb", "/a/b"),
        ("https://a.example.com/a%20b", "/a b"),
        # The query is appended raw, and only when it is not empty.
        ("https://a.example.com/x?q=%2e%2e/..", "/x?q=%2e%2e/.."),
        ("https://a.example.com/x?", "/x"),
        ("https://a.example.com?x=1", "/?x=1"),
        ("https://a.example.com/a/../b/?x=1", "/b/?x=1"),
    ],
)
def test_path_is_decoded_and_cleaned(url: str, path: str) -> None:
    assert Target.from_url(url, paths="normalize").path == path


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("https://a.example.com/", "/"),
        ("https://a.example.com/%61dmin", "/admin"),
        ("https://a.example.com//admin//x", "/admin/x"),
        ("https://a.example.com/a%20b", "/a b"),
        ("https://a.example.com/file.txt", "/file.txt"),
        ("https://a.example.com/.well-known/x", "/.well-known/x"),
        ("https://a.example.com/...", "/..."),
        ("https://a.example.com/a..b/c.", "/a..b/c."),
        ("https://a.example.com/x;jsessionid=1", "/x;jsessionid=1"),
        ("https://a.example.com/x?q=%2e%2e/..%2F%25", "/x?q=%2e%2e/..%2F%25"),
        ("https://a.example.com/caf%C3%A9", "/café"),
    ],
)
def test_unambiguous_paths_pass_by_default(url: str, path: str) -> None:
    assert Target.from_url(url).path == path


@pytest.mark.parametrize(
    ("raw_path", "reason"),
    [
        ("/public/../admin", "'.' or '..' segment"),
        ("/public/..", "'.' or '..' segment"),
        ("/./admin", "'.' or '..' segment"),
        ("/public/..;/admin", "'.' or '..' segment"),
        ("/public/.;x=1/admin", "'.' or '..' segment"),
        ("/admin/%2e%2e/public", "'.' or '..' segment"),
        ("/admin/%2E./public", "'.' or '..' segment"),
        ("/admin/.%2e;/public", "'.' or '..' segment"),
        ("/public/%252e%252e/admin", "the escape '%25'"),
        ("/admin%2F..%2Fpublic", "the escape '%2F'"),
        ("/admin%2fx", "the escape '%2f'"),
        ("/admin%5Cx", "the escape '%5C'"),
        ("/public\\..\\admin", "a backslash"),
        ("/a\\b", "a backslash"),
        ("/a%00b", "the escape '%00'"),
        ("/a%0Ab", "the escape '%0A'"),
        ("/a%1fb", "the escape '%1f'"),
        ("/a%7Fb", "the escape '%7F'"),
    ],
)
def test_ambiguous_paths_are_refused_by_default(raw_path: str, reason: str) -> None:
    with pytest.raises(BadTarget, match=f"^ambiguous path: it contains (a |an |the )?{reason}"):
        Target.from_request("a.example.com", raw_path)
    # The opt-in mode judges them cleaned instead.
    assert Target.from_request("a.example.com", raw_path, paths="normalize").path.startswith("/")


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("", "/"),
        ("/", "/"),
        ("//", "/"),
        ("/a/b/../../..", "/"),
        ("/a/./b/", "/a/b/"),
        ("/a/b/c/../../d", "/a/d"),
        ("/...", "/..."),
    ],
)
def test_clean_path_like_go_path_clean(raw: str, cleaned: str) -> None:
    assert clean_path(raw) == cleaned


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("HTTPS://App.Example.COM/", "app.example.com"),
        ("https://app.example.com:8443/", "app.example.com"),
        ("https://app.example.com./", "app.example.com"),
        ("https://user:secret@app.example.com/", "app.example.com"),
        ("https://[2001:DB8::1]:443/", "2001:db8::1"),
        ("https://10.0.0.1/", "10.0.0.1"),
        ("https://bücher.example/", "xn--bcher-kva.example"),
    ],
)
def test_host_is_normalised(url: str, host: str) -> None:
    assert Target.from_url(url).host == host


def test_method_query_and_address() -> None:
    target = Target.from_url(
        "https://a.example.com/p?a=1&a=2&b=x+y&c=%zz&d&e=%41", "POST", "::ffff:10.0.0.1"
    )
    assert target.method == "POST"
    assert target.ip == ipaddress.IPv4Address("10.0.0.1")
    # Like Go's ParseQuery: repeated keys keep order, '+' is a space, a bad escape drops the pair.
    assert target.query == {"a": ("1", "2"), "b": ("x y",), "d": ("",), "e": ("A",)}


def test_query_pairs_with_semicolons_in_the_key_are_dropped_like_go() -> None:
    assert parse_query("a;b=1&c=2") == {"c": ("2",)}


def test_from_request_takes_forward_auth_headers() -> None:
    target = Target.from_request(
        "App.example.com:443", "/a/../b?x=1", "GET", "192.0.2.1", paths="normalize"
    )
    assert (target.host, target.path, target.query) == ("app.example.com", "/b?x=1", {"x": ("1",)})


@pytest.mark.parametrize(
    ("url", "method", "ip", "message"),
    [
        (
            "app.example.com/x",
            "GET",
            None,
            "URL must start with http:// or https:// (got 'app.example.com/x')",
        ),
        (
            "ftp://app.example.com/",
            "GET",
            None,
            "URL must start with http:// or https:// (got 'ftp://app.example.com/')",
        ),
        ("https:///path", "GET", None, "the host is empty"),
        ("https://a b.example.com/", "GET", None, "URL contains a space or control character"),
        ("https://a.example.com/a\nb", "GET", None, "URL contains a space or control character"),
        ("https://a.example.com/%zz", "GET", None, "invalid percent-escape '%zz' in path"),
        ("https://a.example.com/%4", "GET", None, "invalid percent-escape '%4' in path"),
        (
            "https://a.example.com:99999/",
            "GET",
            None,
            "invalid host 'a.example.com:99999': bad port '99999'",
        ),
        ("https://exa!mple.com/", "GET", None, "invalid host 'exa!mple.com'"),
        ("https://[::1/", "GET", None, "invalid host '[::1': missing ']'"),
        ("https://::1/", "GET", None, "invalid host '::1': IPv6 addresses must be in brackets"),
        ("https://a.example.com/", "GE T", None, "invalid method 'GE T'"),
        ("https://a.example.com/", "", None, "the method is empty"),
        ("https://a.example.com/", "get", None, "invalid method 'get': methods are upper-case"),
        ("https://a.example.com/", "Post", None, "invalid method 'Post': methods are upper-case"),
        ("https://a.example.com/", "GET ", None, "invalid method 'GET '"),
        ("https://a.example.com/", " GET", None, "invalid method ' GET'"),
        ("https://a.example.com/", "GET", "300.1.1.1", "invalid IP address '300.1.1.1'"),
    ],
)
def test_bad_targets_are_refused_with_a_clear_message(
    url: str, method: str, ip: str | None, message: str
) -> None:
    with pytest.raises(BadTarget) as refused:
        Target.from_url(url, method, ip)
    assert str(refused.value) == message
    assert isinstance(refused.value, ValueError)


def test_request_uri_must_be_a_path() -> None:
    with pytest.raises(BadTarget, match="request URI must start with '/' \\(got 'admin'\\)"):
        Target.from_request("a.example.com", "admin")


@pytest.mark.parametrize(
    ("subject", "anonymous"),
    [
        (Subject(), True),
        (Subject("bob"), False),
        (Subject(groups=frozenset({"dev"})), False),
        (Subject(credentials=frozenset({"key:ci"})), False),
    ],
)
def test_anonymous_means_nothing_identifies_the_caller(subject: Subject, anonymous: bool) -> None:
    assert subject.is_anonymous is anonymous


def test_levels() -> None:
    assert Level.from_policy("two_factor") is Level.TWO_FACTOR
    assert str(Level.ONE_FACTOR) == "one_factor"
    assert Level.BYPASS < Level.ONE_FACTOR < Level.TWO_FACTOR < Level.DENY
    with pytest.raises(ValueError, match="unknown policy 'allow'"):
        Level.from_policy("allow")
