"""Client certificates that Caddy verified and forwarded, verified once more here.

Caddy terminates TLS, checks the client certificate (``client_auth``) and passes it on in
``X-Client-Cert-Der-B64`` (``{http.request.tls.client.certificate_der_base64}``). Those headers
count only from a trusted proxy (the caller checks). The gateway does not take Caddy's word
for it: it parses the DER with ``cryptography`` and verifies it against the configured CA
bundle with :mod:`cryptography.x509.verification`, where *every* certificate in the bundle is
a trust anchor (Caddy before 2.6.3 used only the first one).

The verifier uses the RFC 5280 chain rules but not the Web PKI profile (which rejects many
private client PKIs, e.g. a critical subjectAltName next to a subject): an issuer must be a
CA (basicConstraints ``CA:TRUE``) and a leaf with extendedKeyUsage must allow clientAuth.

"No certificate" is: no header, an empty value, an unexpanded Caddy placeholder, or the
SHA-256 of nothing as fingerprint. It is never mistaken for a certificate.

Verification results are cached by the header value (bounded LRU), so a client presenting
the same certificate on every request is verified once; the validity window is still
checked against the clock on every request.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import fnmatch
import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from gateway.config.values import normalize_fingerprint
from gateway.errors import ConfigError, Rejected

if TYPE_CHECKING:
    from gateway.credentials.settings import ClientCertificateSettings

__all__ = [
    "CERT_HEADER",
    "EMPTY_SHA256",
    "FINGERPRINT_HEADER",
    "PLACEHOLDER_PREFIX",
    "CertificateConfigError",
    "CertificateIdentity",
    "CertificateRejected",
    "ClientCertificateVerifier",
    "check_patterns",
    "load_ca_bundle",
    "normalize_fingerprint",
]

CERT_HEADER = "x-client-cert-der-b64"
FINGERPRINT_HEADER = "x-client-cert-fingerprint"
PLACEHOLDER_PREFIX = "{http.request.tls.client."
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
"""SHA-256 of zero bytes: what a fingerprint placeholder yields when there is no certificate."""

_MAX_HEADER_CHARS = 16 * 1024
_NEGATIVE_TTL = 60.0

_SUBJECT_ATTRIBUTES: dict[str, x509.ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "C": NameOID.COUNTRY_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "DC": NameOID.DOMAIN_COMPONENT,
    "UID": NameOID.USER_ID,
    "SERIALNUMBER": NameOID.SERIAL_NUMBER,
    "EMAILADDRESS": NameOID.EMAIL_ADDRESS,
}
_SAN_KINDS: dict[str, type[x509.GeneralName]] = {
    "URI": x509.UniformResourceIdentifier,
    "DNS": x509.DNSName,
    "EMAIL": x509.RFC822Name,
}


class CertificateConfigError(ConfigError, ValueError):
    """The CA bundle or a matcher cannot be used; the message names the problem."""


class CertificateRejected(Rejected):
    """A certificate was presented but is not acceptable; the message is for logs only."""


@dataclass(frozen=True, slots=True)
class CertificateIdentity:
    """Who a verified certificate names."""

    username: str
    """The CN, or the SAN URI (``spiffe://example.org/ns/x/sa/y``)."""
    credential: str
    """``cert:CN=build-agent`` or ``cert:URI=spiffe://...``, for policy ``subject`` rules."""
    subject: str
    """The RFC 4514 subject, e.g. ``CN=build-agent,O=Example``."""
    fingerprint: str
    """SHA-256 of the DER, lowercase hex."""
    not_before: float
    not_after: float
    """The validity window common to the whole chain (POSIX seconds)."""


@dataclass(frozen=True, slots=True)
class _Rejection:
    reason: str
    until: float


def _absent(value: str | None) -> bool:
    """True for a header that says "no certificate" in any of the ways Caddy can."""
    if value is None:
        return True
    text = value.strip()
    return not text or PLACEHOLDER_PREFIX in text or text.lower() == EMPTY_SHA256


def load_ca_bundle(path: Path) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle; raises :class:`CertificateConfigError`."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CertificateConfigError(f"cannot read CA bundle {path}: {error.strerror}") from None
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CertificateConfigError(
            f"{path} is not a PEM bundle of certificates (-----BEGIN CERTIFICATE-----)"
        ) from None
    for certificate in certificates:
        try:
            constraints = certificate.extensions.get_extension_for_class(
                x509.BasicConstraints
            ).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise CertificateConfigError(
                f"{path}: {certificate.subject.rfc4514_string()} is not a CA certificate "
                "(basicConstraints CA:TRUE); a CA bundle holds the CAs that issue client "
                "certificates"
            )
    return certificates


class _SubjectPattern:
    """``CN=build-*,O=Example``: every named attribute must match its glob."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.parts: list[tuple[x509.ObjectIdentifier, re.Pattern[str]]] = []
        for item in pattern.split(","):
            name, sep, glob = item.partition("=")
            oid = _SUBJECT_ATTRIBUTES.get(name.strip().upper())
            if not sep or oid is None or not glob.strip():
                known = ", ".join(_SUBJECT_ATTRIBUTES)
                raise CertificateConfigError(
                    f"subject pattern '{pattern}': '{item.strip()}' is not ATTRIBUTE=glob "
                    f"(attributes: {known})"
                )
            self.parts.append((oid, re.compile(fnmatch.translate(glob.strip()))))

    def matches(self, subject: x509.Name) -> bool:
        for oid, regex in self.parts:
            values = [str(attribute.value) for attribute in subject.get_attributes_for_oid(oid)]
            if not any(regex.match(value) for value in values):
                return False
        return True


def check_patterns(subjects: Iterable[str], sans: Iterable[str]) -> None:
    """Raise :class:`CertificateConfigError` for a subject or SAN pattern that cannot compile."""
    for pattern in subjects:
        _SubjectPattern(pattern)
    for pattern in sans:
        _SanPattern(pattern)


def _san_glob(glob: str) -> re.Pattern[str]:
    # '*' stands for any run of characters except '/', so a SPIFFE path segment cannot widen.
    return re.compile("[^/]*".join(re.escape(part) for part in glob.split("*")), re.IGNORECASE)


class _SanPattern:
    """``URI:spiffe://example.org/ns/*/sa/*``, ``DNS:*.example.org``, ``EMAIL:*@example.org``."""

    def __init__(self, pattern: str) -> None:
        kind, sep, glob = pattern.partition(":")
        general = _SAN_KINDS.get(kind.strip().upper())
        if not sep or general is None or not glob.strip():
            raise CertificateConfigError(
                f"SAN pattern '{pattern}' must be URI:glob, DNS:glob or EMAIL:glob"
            )
        self.pattern = pattern
        self.kind = general
        self.regex = _san_glob(glob.strip())

    def matches_value(self, kind: type[x509.GeneralName], value: str) -> bool:
        return kind is self.kind and self.regex.fullmatch(value) is not None


def _check_ca(_policy: Policy, _cert: x509.Certificate, ext: x509.BasicConstraints) -> None:
    if not ext.ca:
        raise ValueError("issuer is not a CA")


def _check_client_usage(
    _policy: Policy, _cert: x509.Certificate, ext: x509.ExtendedKeyUsage | None
) -> None:
    if ext is None:
        return
    usages = list(ext)
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages and (
        ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in usages
    ):
        raise ValueError("extendedKeyUsage does not allow clientAuth")


def _timestamp(moment: datetime.datetime) -> float:
    return moment.timestamp()


class ClientCertificateVerifier:
    """Verify forwarded client certificates against a CA bundle, with matchers and pins."""

    def __init__(
        self,
        ca_certificates: Sequence[x509.Certificate],
        *,
        subjects: Iterable[str] = (),
        sans: Iterable[str] = (),
        pinned_fingerprints: Iterable[str] = (),
        identity: Literal["cn", "san_uri"] = "cn",
        groups: Iterable[str] = (),
        cache_size: int = 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not ca_certificates:
            raise CertificateConfigError("the CA bundle holds no certificate")
        self._store = Store(list(ca_certificates))
        self._ca_policy = ExtensionPolicy.permit_all().require_present(
            x509.BasicConstraints, Criticality.AGNOSTIC, _check_ca
        )
        self._ee_policy = ExtensionPolicy.permit_all().may_be_present(
            x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _check_client_usage
        )
        self._subjects = [_SubjectPattern(p) for p in subjects]
        self._sans = [_SanPattern(p) for p in sans]
        try:
            self._pins = frozenset(normalize_fingerprint(p) for p in pinned_fingerprints)
        except ValueError as error:
            raise CertificateConfigError(str(error)) from None
        self._identity = identity
        self.groups: tuple[str, ...] = tuple(groups)
        self._cache: OrderedDict[str, CertificateIdentity | _Rejection] = OrderedDict()
        self._cache_size = max(1, cache_size)
        self._clock = clock

    @classmethod
    def from_settings(
        cls, settings: ClientCertificateSettings, *, clock: Callable[[], float] = time.time
    ) -> ClientCertificateVerifier:
        """Load the CA bundle and compile the matchers of ``credentials.client_certificates``."""
        return cls(
            load_ca_bundle(settings.ca_bundle),
            subjects=settings.subjects,
            sans=settings.sans,
            pinned_fingerprints=settings.pinned_fingerprints,
            identity=settings.identity,
            groups=settings.groups,
            cache_size=settings.cache_size,
            clock=clock,
        )

    @staticmethod
    def presented(headers: Mapping[str, str]) -> bool:
        """Whether the headers carry a certificate at all (cheap; no parsing)."""
        return not _absent(headers.get(CERT_HEADER)) and not (
            (fp := headers.get(FINGERPRINT_HEADER)) is not None
            and fp.strip().lower() == EMPTY_SHA256
        )

    def verify(self, headers: Mapping[str, str]) -> CertificateIdentity | None:
        """The certificate's identity; None when no certificate was presented.

        Raises :class:`CertificateRejected` for a certificate that must not be accepted.
        """
        if not self.presented(headers):
            return None
        value = headers[CERT_HEADER].strip()
        claimed = headers.get(FINGERPRINT_HEADER)
        now = self._clock()
        cached = self._cache.get(value)
        if cached is None or (isinstance(cached, _Rejection) and cached.until <= now):
            cached = self._verify_new(value, now)
            if len(self._cache) >= self._cache_size:
                self._cache.popitem(last=False)
            self._cache[value] = cached
        else:
            self._cache.move_to_end(value)
        if isinstance(cached, _Rejection):
            raise CertificateRejected(cached.reason)
        if now < cached.not_before:
            raise CertificateRejected(f"certificate {cached.subject} is not valid yet")
        if now > cached.not_after:
            raise CertificateRejected(f"certificate {cached.subject} has expired")
        if claimed is not None and not _absent(claimed):
            claimed_hex = claimed.strip().lower().replace(":", "")
            if claimed_hex != cached.fingerprint:
                raise CertificateRejected("fingerprint header does not match the certificate")
        return cached

    def _verify_new(self, value: str, now: float) -> CertificateIdentity | _Rejection:
        """Full verification; time-dependent failures are not cached (see :meth:`verify`)."""
        until = now + _NEGATIVE_TTL
        if len(value) > _MAX_HEADER_CHARS:
            return _Rejection("certificate header is too large", until)
        try:
            der = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return _Rejection("certificate header is not base64", until)
        fingerprint = hashlib.sha256(der).hexdigest()
        if not der:
            return _Rejection("certificate header is empty", until)
        try:
            leaf = x509.load_der_x509_certificate(der)
        except ValueError:
            return _Rejection("certificate header is not a DER certificate", until)
        if self._pins and fingerprint not in self._pins:
            return _Rejection(f"certificate {fingerprint} is not pinned", until)
        subject = leaf.subject.rfc4514_string()
        not_before = _timestamp(leaf.not_valid_before_utc)
        not_after = _timestamp(leaf.not_valid_after_utc)
        if not not_before <= now <= not_after:
            # Rejected for this request only (until=now): a certificate that is not valid
            # *yet* will become valid, so this outcome must not stick in the cache.
            state = "has expired" if now > not_after else "is not valid yet"
            return _Rejection(f"certificate {subject} {state}", now)
        verifier = (
            PolicyBuilder()
            .store(self._store)
            .time(datetime.datetime.fromtimestamp(now, datetime.UTC))
            .extension_policies(ca_policy=self._ca_policy, ee_policy=self._ee_policy)
            .build_client_verifier()
        )
        try:
            verified = verifier.verify(leaf, [])
        except VerificationError as error:
            return _Rejection(f"certificate {subject} does not verify: {error}", until)
        sans = self._san_values(leaf)
        if self._subjects and not any(p.matches(leaf.subject) for p in self._subjects):
            return _Rejection(f"certificate {subject} matches no subject pattern", until)
        if self._sans and not any(
            pattern.matches_value(kind, san) for kind, san in sans for pattern in self._sans
        ):
            return _Rejection(f"certificate {subject} matches no SAN pattern", until)
        identity = self._identity_of(leaf, sans)
        if identity is None:
            return _Rejection(f"certificate {subject} has no {self._identity} identity", until)
        username, credential = identity
        window_start = max(_timestamp(c.not_valid_before_utc) for c in verified.chain)
        window_end = min(_timestamp(c.not_valid_after_utc) for c in verified.chain)
        return CertificateIdentity(
            username, credential, subject, fingerprint, window_start, window_end
        )

    @staticmethod
    def _san_values(leaf: x509.Certificate) -> list[tuple[type[x509.GeneralName], str]]:
        try:
            names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return []
        return [
            (type(name), str(name.value))
            for name in names
            if isinstance(name, x509.UniformResourceIdentifier | x509.DNSName | x509.RFC822Name)
        ]

    def _identity_of(
        self, leaf: x509.Certificate, sans: list[tuple[type[x509.GeneralName], str]]
    ) -> tuple[str, str] | None:
        if self._identity == "cn":
            names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            if not names:
                return None
            common_name = str(names[0].value)
            return common_name, f"cert:CN={common_name}"
        uri_patterns = [p for p in self._sans if p.kind is x509.UniformResourceIdentifier]
        for kind, value in sans:
            if kind is not x509.UniformResourceIdentifier:
                continue
            if uri_patterns and not any(p.matches_value(kind, value) for p in uri_patterns):
                continue
            return value, f"cert:URI={value}"
        return None
