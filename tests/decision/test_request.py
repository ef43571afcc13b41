"""Normalising forward-auth / auth-request headers, and whom to trust."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.decision.request import (
    TARGET_CACHE_BYTES,
    BadRequest,
    ProxyTrust,
    from_auth_request,
    from_forward_auth,
    read_headers,
)

TRUST = ProxyTrust([ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.0.0.0/24")])


def forward(**overrides: str) -> dict[str, str]:
    headers = {
        "x-forwarded-proto": "https",
        "x-forwarded-host": "app.example.com",
        "x-forwarded-uri": "/path?q=1",
        "x-forwarded-method": "GET",
        "x-forwarded-for": "203.0.113.9",
    }
    headers.update(overrides)
    return {k: v for k, v in headers.items() if v != "<absent>"}


def test_forward_auth_target_from_headers() -> None:
    access = from_forward_auth(forward(), "127.0.0.1", TRUST)
    assert access.url == "https://app.example.com/path?q=1"
    assert access.host == "app.example.com"
    assert access.method == "GET"
    assert str(access.client_ip) == "203.0.113.9"
    assert access.target.host == "app.example.com"


def test_host_is_lowercased_and_port_dropped_for_matching() -> None:
    access = from_forward_auth(
        forward(**{"x-forwarded-host": "App.Example.COM:8443"}), "127.0.0.1", TRUST
    )
    assert access.host == "app.example.com"
    assert access.url == "https://app.example.com:8443/path?q=1"


@pytest.mark.parametrize(
    ("xff", "client"),
    [
        ("203.0.113.9", "203.0.113.9"),
        # A client-supplied entry on the left cannot win over the address Caddy appended.
        ("1.2.3.4, 203.0.113.9", "203.0.113.9"),
        # Trusted proxies on the right are skipped.
        ("203.0.113.9, 10.0.0.5, 127.0.0.1", "203.0.113.9"),
        # Only trusted hops: the leftmost.
        ("10.0.0.7, 127.0.0.1", "10.0.0.7"),
        ("2001:db8::1", "2001:db8::1"),
    ],
)
def test_client_is_rightmost_untrusted_forwarded_for_entry(xff: str, client: str) -> None:
    access = from_forward_auth(forward(**{"x-forwarded-for": xff}), "127.0.0.1", TRUST)
    assert str(access.client_ip) == client


def test_without_forwarded_for_the_peer_is_the_client() -> None:
    access = from_forward_auth(forward(**{"x-forwarded-for": "<absent>"}), "127.0.0.1", TRUST)
    assert str(access.client_ip) == "127.0.0.1"


def test_untrusted_peer_cannot_choose_target_or_address() -> None:
    with pytest.raises(BadRequest, match="trusted proxies"):
        from_forward_auth(forward(), "198.51.100.7", TRUST)
    with pytest.raises(BadRequest, match="trusted proxies"):
        from_auth_request({"x-original-url": "https://app.example.com/"}, "198.51.100.7", TRUST)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"x-forwarded-host": "<absent>"}, "missing X-Forwarded-Host"),
        ({"x-forwarded-host": "bad host"}, "malformed X-Forwarded-Host"),
        ({"x-forwarded-host": "[::1]"}, "must be a name"),
        ({"x-forwarded-host": "a.example.com:abc"}, "malformed X-Forwarded-Host"),
        ({"x-forwarded-method": "G3T"}, "malformed X-Forwarded-Method"),
        ({"x-forwarded-method": "GET /x"}, "malformed X-Forwarded-Method"),
        ({"x-forwarded-proto": "http"}, "must be https"),
        ({"x-forwarded-proto": "<absent>"}, "must be https"),
        ({"x-forwarded-uri": "relative"}, "malformed X-Forwarded-Uri"),
        ({"x-forwarded-uri": "//evil.com/x"}, "malformed X-Forwarded-Uri"),
        ({"x-forwarded-uri": "/a b"}, "malformed X-Forwarded-Uri"),
        ({"x-forwarded-for": "not-an-ip"}, "malformed client address"),
        ({"x-forwarded-for": "1.2.3.4,,"}, "malformed X-Forwarded-For"),
    ],
)
def test_malformed_requests_are_bad_requests(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        from_forward_auth(forward(**overrides), "127.0.0.1", TRUST)


def test_method_is_taken_exactly() -> None:
    for method in ("GET", "DELETE", "PROPFIND", "M-SEARCH"):
        access = from_forward_auth(forward(**{"x-forwarded-method": method}), "127.0.0.1", TRUST)
        assert access.method == method == access.target.method


@pytest.mark.parametrize(
    ("method", "message"),
    [
        # A missing method was decided as GET: a `methods: [GET]` bypass then let a request
        # of unknown method through.
        ("<absent>", "missing X-Forwarded-Method"),
        ("", "missing X-Forwarded-Method"),
        ("get", "malformed X-Forwarded-Method"),
        ("Get", "malformed X-Forwarded-Method"),
        ("GET ", "malformed X-Forwarded-Method"),
        (" GET", "malformed X-Forwarded-Method"),
        ("\tGET", "malformed X-Forwarded-Method"),
        ("GET,POST", "malformed X-Forwarded-Method"),
        ("G" * 33, "malformed X-Forwarded-Method"),
    ],
)
def test_missing_or_inexact_methods_are_refused(method: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        from_forward_auth(forward(**{"x-forwarded-method": method}), "127.0.0.1", TRUST)
    original = {"x-original-url": "https://app.example.com/", "x-original-method": method}
    with pytest.raises(BadRequest, match=message.replace("Forwarded", "Original")):
        from_auth_request(
            {k: v for k, v in original.items() if v != "<absent>"}, "127.0.0.1", TRUST
        )


def test_auth_request_reads_original_url_and_method() -> None:
    access = from_auth_request(
        {
            "x-original-url": "https://App.example.com/a/../admin",
            "x-original-method": "DELETE",
            "x-forwarded-for": "192.0.2.1",
        },
        "127.0.0.1",
        ProxyTrust([ipaddress.ip_network("127.0.0.0/8")], paths="normalize"),
    )
    assert access.host == "app.example.com"
    assert access.method == "DELETE"
    assert access.target.path == "/admin"
    assert str(access.client_ip) == "192.0.2.1"


@pytest.mark.parametrize(
    "uri",
    ["/public/..;/admin", "/public/%252e%252e/admin", "/admin%2F..%2Fpublic", "/admin/%2e%2e/x"],
)
def test_ambiguous_paths_are_bad_requests_on_both_endpoints(uri: str) -> None:
    with pytest.raises(BadRequest, match="ambiguous path"):
        from_forward_auth(forward(**{"x-forwarded-uri": uri}), "127.0.0.1", TRUST)
    with pytest.raises(BadRequest, match="ambiguous path"):
        from_auth_request(
            {"x-original-url": f"https://app.example.com{uri}", "x-original-method": "GET"},
            "127.0.0.1",
            TRUST,
        )


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-forwarded-host", " app.example.com"),
        ("x-forwarded-host", "app.example.com "),
        ("x-forwarded-proto", "https "),
        ("x-forwarded-uri", " /path"),
    ],
)
def test_padded_values_are_refused_not_trimmed(header: str, value: str) -> None:
    with pytest.raises(BadRequest):
        from_forward_auth(forward(**{header: value}), "127.0.0.1", TRUST)


@pytest.mark.parametrize(
    "name",
    [
        b"x-forwarded-host",
        b"x-forwarded-uri",
        b"x-forwarded-proto",
        b"x-forwarded-method",
        b"x-original-url",
        b"x-original-method",
        b"authorization",
        b"x-api-key",
    ],
)
def test_a_duplicated_header_is_refused(name: bytes) -> None:
    with pytest.raises(BadRequest, match="appears more than once"):
        read_headers([(name, b"a"), (b"cookie", b"x=1"), (name, b"b")])


def test_list_headers_are_joined_in_order() -> None:
    headers = read_headers(
        [
            (b"cookie", b"a=1"),
            (b"x-forwarded-for", b"192.0.2.1"),
            (b"user-agent", b"ignored"),
            (b"cookie", b"b=2"),
            (b"x-forwarded-for", b"203.0.113.9"),
        ]
    )
    assert headers == {"cookie": "a=1; b=2", "x-forwarded-for": "192.0.2.1, 203.0.113.9"}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "missing X-Original-URL"),
        ("http://app.example.com/", "must be https"),
        ("https://user:pw@app.example.com/", "malformed X-Original-URL"),
        ("https:///path", "malformed X-Original-URL"),
        ("https://app.example.com/a b", "malformed X-Original-URL"),
    ],
)
def test_auth_request_rejects_bad_urls(url: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        from_auth_request({"x-original-url": url}, "127.0.0.1", TRUST)


def test_trust_answers_are_memoised_and_bounded() -> None:
    trust = ProxyTrust([ipaddress.ip_network("127.0.0.0/8")])
    assert trust.is_trusted("127.0.0.1")
    assert not trust.is_trusted("::1")
    assert not trust.is_trusted("garbage")
    for index in range(5000):
        trust.is_trusted(f"10.0.{index // 256}.{index % 256}")
    assert trust.is_trusted("127.0.0.2")


@pytest.mark.parametrize(
    "url",
    [
        # nginx builds X-Original-URL from $http_host, which a client controls: two URL
        # parsers must never be able to disagree about which host is being authorised.
        "https://blocked.example.com:#@public.example.com/admin",
        "https://app.example.com#@public.example.com/",
        "https://public.example.com@app.example.com/",
        "https://app.example.com\\@public.example.com/",
        "https://app.example.com/x#frag",
    ],
)
def test_auth_request_refuses_ambiguous_authorities(url: str) -> None:
    with pytest.raises(BadRequest, match="malformed X-Original-URL"):
        from_auth_request({"x-original-url": url}, "127.0.0.1", TRUST)


def test_forward_auth_refuses_ambiguous_host_header() -> None:
    headers = forward(**{"x-forwarded-host": "app.example.com:#@public.example.com"})
    with pytest.raises(BadRequest, match="malformed X-Forwarded-Host"):
        from_forward_auth(headers, "127.0.0.1", TRUST)


def test_oversized_targets_are_refused_before_anything_is_cached() -> None:
    trust = ProxyTrust([ipaddress.ip_network("127.0.0.0/8")])
    huge = "/" + "a" * (64 * 1024)
    with pytest.raises(BadRequest, match="too long"):
        from_forward_auth(forward(**{"x-forwarded-uri": huge}), "127.0.0.1", trust)
    with pytest.raises(BadRequest, match="too long"):
        from_auth_request({"x-original-url": "https://app.example.com" + huge}, "127.0.0.1", trust)
    assert len(trust.forwarded) == 0


def test_distinct_long_targets_stay_within_the_memo_budget() -> None:
    trust = ProxyTrust([ipaddress.ip_network("127.0.0.0/8")])
    for index in range(3000):
        uri = f"/{index}/" + "a" * 15_000
        from_forward_auth(forward(**{"x-forwarded-uri": uri}), "127.0.0.1", trust)
    assert trust.forwarded.bytes <= TARGET_CACHE_BYTES
    assert 0 < len(trust.forwarded) < 3000


def test_ipv4_mapped_addresses_are_judged_as_ipv4() -> None:
    # A dual-stack listener sees Caddy as ::ffff:127.0.0.1; a proxy hop may be written mapped.
    access = from_forward_auth(
        forward(**{"x-forwarded-for": "203.0.113.9, ::ffff:10.0.0.5"}), "::ffff:127.0.0.1", TRUST
    )
    assert str(access.client_ip) == "203.0.113.9"
    assert str(access.target.ip) == "203.0.113.9"


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        ("app.example.com", "app.example.com"),
        ("App.Example.COM:8443", "app.example.com"),
        ("app.example.com.", "app.example.com"),
        ("APP.example.com.:443", "app.example.com"),
        ("10.0.0.1", "10.0.0.1"),
    ],
)
def test_the_host_is_canonical_once_and_the_target_agrees(raw: str, host: str) -> None:
    forwarded = from_forward_auth(forward(**{"x-forwarded-host": raw}), "127.0.0.1", TRUST)
    original = from_auth_request(
        {"x-original-url": f"https://{raw}/path", "x-original-method": "GET"}, "127.0.0.1", TRUST
    )
    for access in (forwarded, original):
        assert access.host == access.target.host == host


@pytest.mark.parametrize(
    "raw",
    [
        "a_b.example.com",
        "bücher.example",
        "app.example.com..",
        "app.example.com:",
        "app.example.com:99999",
        "app.example.com:²",
        "-app.example.com",
        "x" * 64 + ".example.com",
    ],
)
def test_hosts_the_policy_could_not_name_are_malformed(raw: str) -> None:
    with pytest.raises(BadRequest, match="malformed X-Forwarded-Host"):
        from_forward_auth(forward(**{"x-forwarded-host": raw}), "127.0.0.1", TRUST)
