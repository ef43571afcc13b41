"""Forwarded client certificates, verified again against the CA bundle."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from gateway.credentials.client_cert import (
    EMPTY_SHA256,
    CertificateConfigError,
    CertificateRejected,
    ClientCertificateVerifier,
    load_ca_bundle,
)
from tests.credentials.certs import (
    NOW,
    Authority,
    fingerprint,
    headers_for,
    issue,
    make_ca,
    write_bundle,
)
from tests.support.clock import FakeClock


@pytest.fixture(scope="module")
def ca() -> Authority:
    return make_ca("Client CA")


@pytest.fixture(scope="module")
def other_ca() -> Authority:
    return make_ca("Other CA")


def verifier_for(*authorities: Authority, **options: object) -> ClientCertificateVerifier:
    return ClientCertificateVerifier(
        [authority.certificate for authority in authorities],
        **options,  # type: ignore[arg-type]
    )


def test_valid_certificate_gives_its_common_name(ca: Authority) -> None:
    certificate = issue(ca, "build-agent")
    identity = verifier_for(ca).verify(headers_for(certificate))
    assert identity is not None
    assert identity.username == "build-agent"
    assert identity.credential == "cert:CN=build-agent"
    assert identity.fingerprint == fingerprint(certificate)
    assert identity.subject == "CN=build-agent,O=Example"


def test_certificate_from_another_ca_is_rejected(ca: Authority, other_ca: Authority) -> None:
    with pytest.raises(CertificateRejected, match="does not verify"):
        verifier_for(ca).verify(headers_for(issue(other_ca)))


def test_issuing_ca_second_in_the_bundle_is_trusted(
    ca: Authority, other_ca: Authority, tmp_path: Path
) -> None:
    bundle = write_bundle(tmp_path / "bundle.pem", other_ca, ca)
    certificates = load_ca_bundle(bundle)
    assert [c.subject for c in certificates] == [
        other_ca.certificate.subject,
        ca.certificate.subject,
    ]
    verifier = ClientCertificateVerifier(certificates)
    assert verifier.verify(headers_for(issue(ca))) is not None
    assert verifier.verify(headers_for(issue(other_ca))) is not None


def test_expired_certificate_is_rejected(ca: Authority) -> None:
    old = issue(
        ca,
        not_before=NOW - datetime.timedelta(days=30),
        not_after=NOW - datetime.timedelta(days=1),
    )
    with pytest.raises(CertificateRejected, match="has expired"):
        verifier_for(ca).verify(headers_for(old))


def test_not_yet_valid_certificate_is_rejected_then_accepted(ca: Authority) -> None:
    start = NOW + datetime.timedelta(days=1)
    future = issue(ca, not_before=start, not_after=start + datetime.timedelta(days=10))
    clock = FakeClock(NOW.timestamp())
    verifier = verifier_for(ca, clock=clock)
    with pytest.raises(CertificateRejected, match="not valid yet"):
        verifier.verify(headers_for(future))
    clock.now = start.timestamp() + 60  # the rejection was not cached
    assert verifier.verify(headers_for(future)) is not None


def test_cached_certificate_is_rechecked_against_the_clock(ca: Authority) -> None:
    certificate = issue(ca, not_after=NOW + datetime.timedelta(hours=1))
    clock = FakeClock(NOW.timestamp())
    verifier = verifier_for(ca, clock=clock)
    assert verifier.verify(headers_for(certificate)) is not None
    clock.advance(2 * 3600)
    with pytest.raises(CertificateRejected, match="has expired"):
        verifier.verify(headers_for(certificate))


def test_verification_is_cached_by_certificate(
    ca: Authority, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = verifier_for(ca)
    headers = headers_for(issue(ca))
    calls = 0
    original = verifier._verify_new

    def counting(value: str, now: float) -> object:
        nonlocal calls
        calls += 1
        return original(value, now)

    monkeypatch.setattr(verifier, "_verify_new", counting)
    for _ in range(5):
        assert verifier.verify(headers) is not None
    assert calls == 1


def test_cache_is_bounded(ca: Authority) -> None:
    verifier = verifier_for(ca, cache_size=2)
    for _ in range(4):
        verifier.verify(headers_for(issue(ca)))
    assert len(verifier._cache) == 2


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-client-cert-der-b64": ""},
        {"x-client-cert-der-b64": "   "},
        {"x-client-cert-der-b64": "{http.request.tls.client.certificate_der_base64}"},
        {
            "x-client-cert-der-b64": "{http.request.tls.client.certificate_der_base64}",
            "x-client-cert-fingerprint": "{http.request.tls.client.fingerprint}",
        },
        {"x-client-cert-fingerprint": EMPTY_SHA256},
    ],
)
def test_placeholders_and_empty_values_mean_no_certificate(
    ca: Authority, headers: dict[str, str]
) -> None:
    verifier = verifier_for(ca)
    assert not verifier.presented(headers)
    assert verifier.verify(headers) is None


def test_empty_hash_fingerprint_never_validates_a_certificate(ca: Authority) -> None:
    headers = headers_for(issue(ca))
    headers["x-client-cert-fingerprint"] = EMPTY_SHA256
    assert verifier_for(ca).verify(headers) is None


def test_fingerprint_header_must_match_the_certificate(ca: Authority) -> None:
    headers = headers_for(issue(ca))
    headers["x-client-cert-fingerprint"] = fingerprint(issue(ca))
    with pytest.raises(CertificateRejected, match="fingerprint header does not match"):
        verifier_for(ca).verify(headers)


def test_garbage_is_rejected(ca: Authority) -> None:
    verifier = verifier_for(ca)
    with pytest.raises(CertificateRejected, match="not base64"):
        verifier.verify({"x-client-cert-der-b64": "!!!"})
    with pytest.raises(CertificateRejected, match="not a DER certificate"):
        verifier.verify({"x-client-cert-der-b64": "aGVsbG8="})
    with pytest.raises(CertificateRejected, match="too large"):
        verifier.verify({"x-client-cert-der-b64": "A" * 20000})


def test_pinned_fingerprints(ca: Authority) -> None:
    pinned = issue(ca, "pinned")
    colon_form = ":".join(fingerprint(pinned).upper()[i : i + 2] for i in range(0, 64, 2))
    verifier = verifier_for(ca, pinned_fingerprints=[colon_form])
    assert verifier.verify(headers_for(pinned)) is not None
    with pytest.raises(CertificateRejected, match="is not pinned"):
        verifier.verify(headers_for(issue(ca, "pinned")))


def test_spiffe_identity_from_san_uri(ca: Authority) -> None:
    spiffe = "spiffe://example.org/ns/build/sa/agent"
    certificate = issue(ca, None, uris=[spiffe], dns=["agent.example.org"])
    verifier = verifier_for(ca, identity="san_uri", sans=["URI:spiffe://example.org/ns/*/sa/*"])
    identity = verifier.verify(headers_for(certificate))
    assert identity is not None
    assert identity.username == spiffe
    assert identity.credential == f"cert:URI={spiffe}"
    deeper = issue(ca, None, uris=["spiffe://example.org/ns/a/b/sa/agent"])
    with pytest.raises(CertificateRejected, match="matches no SAN pattern"):
        verifier.verify(headers_for(deeper))
    with pytest.raises(CertificateRejected, match="no san_uri identity"):
        verifier_for(ca, identity="san_uri").verify(headers_for(issue(ca, "cn-only")))


def test_subject_patterns(ca: Authority) -> None:
    verifier = verifier_for(ca, subjects=["CN=build-*,O=Example", "CN=deploy"])
    assert verifier.verify(headers_for(issue(ca, "build-7"))) is not None
    assert verifier.verify(headers_for(issue(ca, "deploy", organization="Other"))) is not None
    with pytest.raises(CertificateRejected, match="matches no subject pattern"):
        verifier.verify(headers_for(issue(ca, "build-7", organization="Other")))


def test_server_only_certificate_is_not_a_client_certificate(ca: Authority) -> None:
    with pytest.raises(CertificateRejected, match="does not verify"):
        verifier_for(ca).verify(headers_for(issue(ca, client_auth=False)))


def test_bad_configuration_is_reported(tmp_path: Path, ca: Authority) -> None:
    with pytest.raises(CertificateConfigError, match="cannot read CA bundle"):
        load_ca_bundle(tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("hello")
    with pytest.raises(CertificateConfigError, match="not a PEM bundle"):
        load_ca_bundle(tmp_path / "junk.pem")
    leaf_bundle = tmp_path / "leaf.pem"
    from cryptography.hazmat.primitives import serialization

    leaf_bundle.write_bytes(issue(ca).public_bytes(serialization.Encoding.PEM))
    with pytest.raises(CertificateConfigError, match="is not a CA certificate"):
        load_ca_bundle(leaf_bundle)
    with pytest.raises(CertificateConfigError, match="ATTRIBUTE=glob"):
        verifier_for(ca, subjects=["XYZ=foo"])
    with pytest.raises(CertificateConfigError, match="URI:glob"):
        verifier_for(ca, sans=["spiffe://x"])
    with pytest.raises(CertificateConfigError, match="not a SHA-256 fingerprint"):
        verifier_for(ca, pinned_fingerprints=["abc"])


def test_non_ca_in_store_cannot_issue(ca: Authority) -> None:
    pretender = make_ca("Pretender", ca=False)
    with pytest.raises(CertificateRejected, match="does not verify"):
        ClientCertificateVerifier([pretender.certificate]).verify(headers_for(issue(pretender)))
