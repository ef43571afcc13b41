"""Machine clients with client certificates, through a real Caddy doing mTLS: the gateway
believes only what Caddy verified, and checks the certificate again itself."""

from __future__ import annotations

import base64
import datetime
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.credentials.certs import Authority, make_ca
from tests.e2e.stack import ROOT, Stack, loopback_client, stack, users_file_authentication
from tests.services import CADDY_BINARIES, CaddyFactory

NOW = datetime.datetime.now(datetime.UTC)

CADDYFILE = """\
{
	auto_https disable_redirects
}

import snippets.caddy

auth.example.com {
	tls internal
	import gateway_portal
}

# Caddy refuses any certificate that does not chain to the client CA.
api.example.com {
	tls internal {
		client_auth {
			mode require_and_verify
			trusted_ca_cert_file {$CLIENT_CA}
		}
	}
	import gateway_machine
	reverse_proxy {$UPSTREAM}
}

# Caddy asks for a certificate but verifies nothing: only the gateway's own check stands.
api.lax.example.com {
	tls internal {
		client_auth {
			mode request
		}
	}
	import gateway_machine
	reverse_proxy {$UPSTREAM}
}
"""

POLICY = """\
access_control:
  default_policy: deny
  rules:
    - domain: auth.example.com
      policy: bypass
    - domain: ["api.example.com", "api.lax.example.com"]
      subject: "cert:CN=build-agent"
      policy: one_factor
"""


def issue(
    ca: Authority, common_name: str, directory: Path, *, expired: bool = False
) -> tuple[Path, Path, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = NOW - datetime.timedelta(days=1) if expired else NOW + datetime.timedelta(days=30)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=10))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    name = f"{common_name}-{ca.name}-{'expired' if expired else 'valid'}".replace(" ", "_")
    cert_path = directory / f"{name}.crt"
    key_path = directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path, certificate


class Certificates:
    def __init__(self, directory: Path) -> None:
        self.ca = make_ca("Client CA")
        self.other_ca = make_ca("Other CA")
        self.bundle = directory / "client-ca.pem"
        self.bundle.write_bytes(self.ca.pem())
        self.valid = issue(self.ca, "build-agent", directory)
        self.other = issue(self.other_ca, "build-agent", directory)
        self.expired = issue(self.ca, "build-agent", directory, expired=True)
        self.stranger = issue(self.ca, "someone-else", directory)


@pytest.fixture(scope="module", params=CADDY_BINARIES)
def mtls(
    request: pytest.FixtureRequest, caddy: CaddyFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, Certificates]]:
    directory = tmp_path_factory.mktemp(f"mtls-{request.param}")
    certificates = Certificates(directory)
    authentication = users_file_authentication(directory) + (
        f"credentials:\n  client_certificates:\n    ca_bundle: {certificates.bundle}\n"
    )
    with stack(
        caddy,
        directory,
        authentication=authentication,
        binary=request.param,
        policy=POLICY,
        caddyfile=render_caddyfile_text(CADDYFILE),
        extra_env={"CLIENT_CA": str(certificates.bundle)},
    ) as running:
        yield running, certificates


def render_caddyfile_text(text: str) -> str:
    return text.replace("import snippets.caddy", (ROOT / "caddy" / "snippets.caddy").read_text())


def client(running: Stack, cert: tuple[Path, Path, x509.Certificate] | None) -> httpx.Client:
    return loopback_client((cert[0], cert[1]) if cert else None)


def test_valid_certificate_reaches_upstream_with_identity(mtls: tuple[Stack, Certificates]) -> None:
    running, certificates = mtls
    with client(running, certificates.valid) as http:
        response = http.get(running.url("api.example.com", "/v1/jobs"))
    assert response.status_code == 200
    seen = response.json()["headers"]
    assert seen["remote-user"] == "build-agent"
    # The upstream gets the identity, not the certificate headers.
    assert "x-client-cert-der-b64" not in seen


def test_caddy_refuses_certificates_it_cannot_verify(mtls: tuple[Stack, Certificates]) -> None:
    running, certificates = mtls
    for cert in (None, certificates.other, certificates.expired):
        with client(running, cert) as http, pytest.raises(httpx.TransportError):
            http.get(running.url("api.example.com", "/v1/jobs"))


def test_gateway_checks_the_certificate_again(mtls: tuple[Stack, Certificates]) -> None:
    running, certificates = mtls
    for cert in (certificates.other, certificates.expired):
        with client(running, cert) as http:
            response = http.get(running.url("api.lax.example.com", "/v1/jobs"))
        assert response.status_code == 401, cert[0].name
        assert response.json() == {"error": "invalid_token"}
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_no_certificate_is_401_never_a_redirect(mtls: tuple[Stack, Certificates]) -> None:
    running, _ = mtls
    with client(running, None) as http:
        response = http.get(
            running.url("api.lax.example.com", "/"), headers={"Accept": "text/html"}
        )
    assert response.status_code == 401
    assert "location" not in response.headers
    assert set(response.json()) == {"error"}


def test_certificate_of_someone_not_in_the_rule_is_403(mtls: tuple[Stack, Certificates]) -> None:
    running, certificates = mtls
    with client(running, certificates.stranger) as http:
        response = http.get(running.url("api.example.com", "/"))
    assert response.status_code == 403
    assert response.json() == {"error": "forbidden"}


def test_forged_certificate_header_is_replaced_by_caddy(mtls: tuple[Stack, Certificates]) -> None:
    running, certificates = mtls
    # A client without the private key sends the public certificate of build-agent.
    der = certificates.valid[2].public_bytes(serialization.Encoding.DER)
    forged = {"X-Client-Cert-Der-B64": base64.b64encode(der).decode()}
    with client(running, None) as http:
        response = http.get(running.url("api.lax.example.com", "/"), headers=forged)
    assert response.status_code == 401
