"""Bearer JWTs against a JWKS served over real HTTP by the test suite, and static PEM keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from gateway.credentials.jwks import JwksClient, JwksError, parse_jwks
from gateway.credentials.jwt import JwtIdentity, JwtIssuer, JwtVerifier, TokenRejected
from tests.credentials.conftest import JwksServer
from tests.support.clock import FakeClock

pytestmark = pytest.mark.anyio

ISSUER = "https://login.example.com/realms/machines"
AUDIENCE = "https://api.reports.example.com"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_key_2() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_jwk(key: Any, kid: str, alg: str | None = "RS256") -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        data = json.loads(RSAAlgorithm.to_jwk(public))
    else:
        data = json.loads(ECAlgorithm.to_jwk(public))
    data.update({"kid": kid, "use": "sig"})
    if alg:
        data["alg"] = alg
    return dict(data)


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "reporting-service",
        "iat": now,
        "exp": now + 300,
        "groups": ["reporters", "readers"],
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: Any, kid: str | None = "k1", alg: str = "RS256", **changes: Any) -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(claims(**changes), key, algorithm=alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
async def jwks(
    jwks_server: JwksServer, rsa_key: rsa.RSAPrivateKey, clock: FakeClock
) -> AsyncIterator[JwksClient]:
    jwks_server.set_keys(public_jwk(rsa_key, "k1"))
    client = JwksClient(
        jwks_server.url, min_refetch_interval=60, max_stale=3600, timeout=2, clock=clock
    )
    yield client
    await client.close()


def make_verifier(jwks: JwksClient, **options: Any) -> JwtVerifier:
    settings: dict[str, Any] = {
        "audiences": [AUDIENCE],
        "algorithms": ["RS256", "ES256"],
        "groups_claim": "groups",
    }
    settings.update(options)
    return JwtVerifier([JwtIssuer("machines", ISSUER, jwks=jwks, **settings)])


# -- accepted -----------------------------------------------------------------------------


async def test_valid_token(jwks: JwksClient, rsa_key: rsa.RSAPrivateKey) -> None:
    identity = await make_verifier(jwks).verify(sign(rsa_key))
    assert identity.username == "reporting-service"
    assert identity.credential == "client:machines/reporting-service"
    assert identity.groups == ("reporters", "readers")
    assert identity.issuer == "machines"


async def test_scope_claim_becomes_groups_and_client_id_the_username(
    jwks: JwksClient, rsa_key: rsa.RSAPrivateKey
) -> None:
    verifier = make_verifier(jwks, groups_claim="scope", username_claim="client_id")
    token = sign(rsa_key, client_id="reports-cron", scope="reports:read reports:write")
    identity = await verifier.verify(token)
    assert identity.username == "reports-cron"
    assert identity.groups == ("reports:read", "reports:write")


async def test_small_clock_skew_is_tolerated(jwks: JwksClient, rsa_key: rsa.RSAPrivateKey) -> None:
    now = int(time.time())
    token = sign(rsa_key, exp=now - 10, nbf=now + 10, iat=now + 10)
    assert (await make_verifier(jwks).verify(token)).username == "reporting-service"


async def test_verified_tokens_are_cached_until_exp(
    jwks: JwksClient, rsa_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = make_verifier(jwks)
    expires = int(time.time()) + 20
    token = sign(rsa_key, exp=expires)
    await verifier.verify(token)
    cached = verifier._cache.get(token)
    assert cached is not None and cached.valid_until <= expires + 30

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("decoded again")

    monkeypatch.setattr(jwt, "decode", fail)
    assert (await verifier.verify(token)).username == "reporting-service"


async def test_cache_never_outlives_exp(
    jwks: JwksClient, rsa_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The leeway is for clock skew when checking a token, not extra life for a cached one.
    clock = FakeClock(float(int(time.time())))
    verifier = JwtVerifier(
        [JwtIssuer("machines", ISSUER, jwks=jwks, audiences=[AUDIENCE], algorithms=["RS256"])],
        clock=clock,
    )
    expires = int(clock.now) + 20
    token = sign(rsa_key, exp=expires)
    await verifier.verify(token)
    cached = verifier._cache.get(token)
    assert cached is not None and cached.valid_until <= expires
    decoded: list[str] = []
    original = jwt.decode

    def counting(*args: Any, **kwargs: Any) -> Any:
        decoded.append("decode")
        return original(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    await verifier.verify(token)
    assert decoded == []  # before exp: from the cache
    clock.now = expires  # PyJWT's own clock still accepts it; the cache must not
    await verifier.verify(token)
    assert decoded  # checked again, not answered from the cache


async def test_cache_of_a_token_in_its_leeway_is_not_kept(
    jwks: JwksClient, rsa_key: rsa.RSAPrivateKey
) -> None:
    verifier = JwtVerifier(
        [JwtIssuer("machines", ISSUER, jwks=jwks, audiences=[AUDIENCE], algorithms=["RS256"])],
        clock=FakeClock(float(int(time.time()))),
    )
    token = sign(rsa_key, exp=int(time.time()) - 5)  # accepted only thanks to the leeway
    assert (await verifier.verify(token)).username == "reporting-service"
    assert token not in verifier._cache


async def test_fractional_numeric_dates_are_accepted(
    jwks: JwksClient, rsa_key: rsa.RSAPrivateKey
) -> None:
    now = time.time()
    token = sign(rsa_key, exp=now + 300.5, iat=now - 0.25, nbf=now - 1.5)
    assert (await make_verifier(jwks).verify(token)).username == "reporting-service"


# -- rejected -----------------------------------------------------------------------------


async def test_bad_signature(jwks: JwksClient, rsa_key_2: rsa.RSAPrivateKey) -> None:
    with pytest.raises(TokenRejected, match="signature verification failed"):
        await make_verifier(jwks).verify(sign(rsa_key_2))  # right kid, wrong key


async def test_tampered_payload(jwks: JwksClient, rsa_key: rsa.RSAPrivateKey) -> None:
    header, _, signature = sign(rsa_key).split(".")
    forged = b64(json.dumps(claims(sub="admin")).encode())
    with pytest.raises(TokenRejected, match="signature"):
        await make_verifier(jwks).verify(f"{header}.{forged}.{signature}")


async def test_wrong_audience(jwks: JwksClient, rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(TokenRejected, match="InvalidAudienceError"):
        await make_verifier(jwks).verify(sign(rsa_key, aud="https://api.billing.example.com"))


async def test_missing_audience(jwks: JwksClient, rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(TokenRejected, match="aud"):
        await make_verifier(jwks).verify(sign(rsa_key, aud=None))


async def test_wrong_issuer(jwks: JwksClient, rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(TokenRejected, match="unknown issuer"):
        await make_verifier(jwks).verify(sign(rsa_key, iss="https://evil.example.net"))


async def test_expired(jwks: JwksClient, rsa_key: rsa.RSAPrivateKey) -> None:
    token = sign(rsa_key, exp=int(time.time()) - 120)
    with pytest.raises(TokenRejected, match="ExpiredSignatureError"):
        await make_verifier(jwks).verify(token)


async def test_not_before_in_the_future(jwks: JwksClient, rsa_key: rsa.RSAPrivateKey) -> None:
    token = sign(rsa_key, nbf=int(time.time()) + 600)
    with pytest.raises(TokenRejected, match="ImmatureSignatureError"):
        await make_verifier(jwks).verify(token)


def _numeric_date_cases() -> list[tuple[str, Any]]:
    soon, past = int(time.time()) + 300, int(time.time()) - 60
    return [
        ("exp", str(soon)),  # PyJWT would take int("...") and accept it
        ("exp", f"{soon}.0"),
        ("exp", True),  # bool is an int in Python, not a number in JSON
        ("exp", [soon]),
        ("exp", {"value": soon}),
        ("nbf", str(past)),
        ("nbf", False),
        ("iat", str(past)),
        ("iat", True),
    ]


@pytest.mark.parametrize(("claim", "value"), _numeric_date_cases())
async def test_time_claims_must_be_json_numbers(
    jwks: JwksClient, rsa_key: rsa.RSAPrivateKey, claim: str, value: Any
) -> None:
    # RFC 7519 section 2: exp, nbf and iat are NumericDate, a JSON number.
    with pytest.raises(TokenRejected, match=f"'{claim}' is not a NumericDate"):
        await make_verifier(jwks).verify(sign(rsa_key, **{claim: value}))


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_time_claims_must_be_finite(
    jwks: JwksClient, rsa_key: rsa.RSAPrivateKey, literal: str
) -> None:
    # Python's json module reads NaN and Infinity, which JSON itself does not have.
    payload = json.dumps(claims(exp=0)).replace('"exp": 0', f'"exp": {literal}').encode()
    token = jwt.PyJWS().encode(payload, rsa_key, algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(TokenRejected, match="'exp' is not a NumericDate"):
        await make_verifier(jwks).verify(token)


@pytest.mark.parametrize("pad", [" ", "\t", "\n", "\xa0"])
async def test_token_is_taken_byte_for_byte(
    jwks: JwksClient, rsa_key: rsa.RSAPrivateKey, pad: str
) -> None:
    # Lenient base64 decoding would skip a stray character and let the token pass as if it
    # were not there; refused before any decoding (PyJWT 2.15 is strict too: a guard).
    token = sign(rsa_key)
    verifier = make_verifier(jwks)
    for padded in (pad + token, token + pad, token.replace(".", "." + pad, 1)):
        with pytest.raises(TokenRejected, match="malformed"):
            await verifier.verify(padded)
    assert (await verifier.verify(token)).username == "reporting-service"


async def test_alg_none(jwks: JwksClient) -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": "k1"}).encode())
    body = b64(json.dumps(claims()).encode())
    with pytest.raises(TokenRejected, match="algorithm 'none' is not allowed"):
        await make_verifier(jwks).verify(f"{header}.{body}.")


async def test_hs256_signed_with_the_rsa_public_key_pem(
    jwks: JwksClient, rsa_key: rsa.RSAPrivateKey
) -> None:
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    body = b64(json.dumps(claims()).encode())
    signature = hmac.new(pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    token = f"{header}.{body}.{b64(signature)}"
    with pytest.raises(TokenRejected, match="algorithm 'HS256' is not allowed"):
        await make_verifier(jwks).verify(token)
    # Even handed straight to PyJWT with HS256 allowed, the asymmetric key is refused: as a
    # key object (TypeError, which the verifier also turns into a rejection) or as PEM text.
    with pytest.raises(TypeError):
        jwt.decode(token, rsa_key.public_key(), algorithms=["HS256"], audience=AUDIENCE)
    with pytest.raises(jwt.InvalidKeyError):
        jwt.decode(token, pem, algorithms=["HS256"], audience=AUDIENCE)


async def test_issuer_refuses_hmac_and_none_algorithms(jwks: JwksClient) -> None:
    for algorithm in ("HS256", "none"):
        with pytest.raises(ValueError, match="algorithms must be chosen from"):
            JwtIssuer("x", ISSUER, audiences=[AUDIENCE], algorithms=[algorithm], jwks=jwks)


async def test_key_type_must_fit_the_algorithm(
    jwks_server: JwksServer, jwks: JwksClient, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    jwks_server.set_keys(public_jwk(ec_key, "ec1", alg=None))
    token = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "ec1"})
    assert (await make_verifier(jwks).verify(token)).username == "reporting-service"
    # A header claiming RS256 for the EC key finds no usable key.
    header = b64(json.dumps({"alg": "RS256", "kid": "ec1"}).encode())
    forged = ".".join([header, *token.split(".")[1:]])
    with pytest.raises(TokenRejected, match="no key of machines"):
        await make_verifier(jwks).verify(forged)
    # And an algorithm the issuer does not allow is refused before any key lookup.
    with pytest.raises(TokenRejected, match="'ES256' is not allowed"):
        await make_verifier(jwks, algorithms=["RS256"]).verify(token)


async def test_declared_jwk_alg_must_match(
    jwks_server: JwksServer, jwks: JwksClient, rsa_key: rsa.RSAPrivateKey
) -> None:
    jwks_server.set_keys(public_jwk(rsa_key, "k1", alg="RS512"))
    with pytest.raises(TokenRejected, match="no key of machines"):
        await make_verifier(jwks).verify(sign(rsa_key))


async def test_unknown_kid(jwks: JwksClient, rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(TokenRejected, match="kid 'nope'"):
        await make_verifier(jwks).verify(sign(rsa_key, kid="nope"))


async def test_missing_required_claim(jwks: JwksClient, rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = make_verifier(jwks, required_claims=["exp", "jti"])
    with pytest.raises(TokenRejected, match=r"MissingRequiredClaimError.*jti"):
        await verifier.verify(sign(rsa_key))
    assert (await verifier.verify(sign(rsa_key, jti="abc"))).username == "reporting-service"
    with pytest.raises(TokenRejected, match="exp"):
        await make_verifier(jwks).verify(sign(rsa_key, exp=None))


async def test_missing_username_claim(jwks: JwksClient, rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(TokenRejected, match="client_id"):
        await make_verifier(jwks, username_claim="client_id").verify(sign(rsa_key))


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "x" * 20000])
async def test_malformed_tokens(jwks: JwksClient, token: str) -> None:
    with pytest.raises(TokenRejected):
        await make_verifier(jwks).verify(token)


# -- key rotation, refetch limits, outages ------------------------------------------------


async def test_kid_rotation_refetches_once(
    jwks_server: JwksServer,
    jwks: JwksClient,
    rsa_key: rsa.RSAPrivateKey,
    rsa_key_2: rsa.RSAPrivateKey,
    clock: FakeClock,
) -> None:
    verifier = make_verifier(jwks)
    await verifier.verify(sign(rsa_key))
    assert jwks_server.requests == 1
    clock.advance(61)
    jwks_server.set_keys(public_jwk(rsa_key, "k1"), public_jwk(rsa_key_2, "k2"))
    identity = await verifier.verify(sign(rsa_key_2, kid="k2"))
    assert identity.username == "reporting-service"
    assert jwks_server.requests == 2
    await verifier.verify(sign(rsa_key_2, kid="k2", jti="another"))
    assert jwks_server.requests == 2


async def test_unknown_kids_refetch_at_most_once_a_minute(
    jwks_server: JwksServer, jwks: JwksClient, rsa_key: rsa.RSAPrivateKey, clock: FakeClock
) -> None:
    verifier = make_verifier(jwks)
    await verifier.verify(sign(rsa_key))
    for index in range(10):
        with pytest.raises(TokenRejected):
            await verifier.verify(sign(rsa_key, kid=f"unknown-{index}"))
        clock.advance(5)
    assert jwks_server.requests == 1  # 10 unknown kids within 50 s of the fetch: no refetch
    clock.advance(15)
    for index in range(5):
        with pytest.raises(TokenRejected):
            await verifier.verify(sign(rsa_key, kid=f"again-{index}"))
    assert jwks_server.requests == 2  # a minute has passed: one refetch, shared by all


async def test_outage_keeps_cached_keys_until_they_expire(
    jwks_server: JwksServer, jwks: JwksClient, rsa_key: rsa.RSAPrivateKey, clock: FakeClock
) -> None:
    verifier = make_verifier(jwks)
    await jwks.refresh()
    jwks_server.status = 503
    clock.advance(120)
    with pytest.raises(JwksError, match="HTTP 503"):
        await jwks.refresh()
    assert (await verifier.verify(sign(rsa_key, jti="1"))).username == "reporting-service"
    jwks_server.status = 200
    jwks_server.body_override = b"{not json"
    with pytest.raises(JwksError, match="not JSON"):
        await jwks.refresh()
    assert (await verifier.verify(sign(rsa_key, jti="2"))).username == "reporting-service"
    clock.advance(3600)  # max_stale after the last successful fetch
    with pytest.raises(TokenRejected, match="no key"):
        await verifier.verify(sign(rsa_key, jti="3"))


async def test_server_down_keeps_cached_keys(
    jwks_server: JwksServer, rsa_key: rsa.RSAPrivateKey, clock: FakeClock
) -> None:
    jwks_server.set_keys(public_jwk(rsa_key, "k1"))
    client = JwksClient(jwks_server.url, timeout=1, clock=clock)
    await client.refresh()
    client.url = "http://127.0.0.1:9/unreachable"  # nothing listens on the discard port
    with pytest.raises(JwksError, match="ConnectError"):
        await client.refresh()
    assert client.get("k1") is not None
    await client.close()


async def test_withdrawn_key_is_dropped_on_a_successful_fetch(
    jwks_server: JwksServer, jwks: JwksClient, rsa_key_2: rsa.RSAPrivateKey
) -> None:
    await jwks.refresh()
    assert jwks.get("k1") is not None
    jwks_server.set_keys(public_jwk(rsa_key_2, "k2"))
    await jwks.refresh()
    assert jwks.get("k1") is None
    assert jwks.get("k2") is not None


async def test_oversized_key_set_is_refused(
    jwks_server: JwksServer, rsa_key: rsa.RSAPrivateKey, clock: FakeClock
) -> None:
    jwks_server.set_keys(*(public_jwk(rsa_key, f"k{i}") for i in range(20)))
    client = JwksClient(jwks_server.url, max_bytes=2048, clock=clock)
    with pytest.raises(JwksError, match="larger than 2048 bytes"):
        await client.refresh()
    await client.close()


async def test_background_refresh(jwks_server: JwksServer, rsa_key: rsa.RSAPrivateKey) -> None:
    import asyncio

    jwks_server.set_keys(public_jwk(rsa_key, "k1"))
    client = JwksClient(jwks_server.url, refresh_interval=0.05, min_refetch_interval=0.05)
    await client.start()
    try:
        assert client.get("k1") is not None
        for _ in range(100):
            if jwks_server.requests >= 3:
                break
            await asyncio.sleep(0.02)
        assert jwks_server.requests >= 3
    finally:
        await client.close()


async def test_background_refresh_waits_the_refresh_interval(
    jwks_server: JwksServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    # A healthy key set is refetched every refresh_interval, not every min_refetch_interval.
    import asyncio

    jwks_server.set_keys(public_jwk(rsa_key, "k1"))
    client = JwksClient(jwks_server.url, refresh_interval=0.3, min_refetch_interval=0.01)
    started = time.monotonic()
    await client.start()
    try:
        for _ in range(1500):
            if jwks_server.requests >= 3:
                break
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - started
        assert jwks_server.requests >= 3
        assert elapsed >= 0.55  # the first fetch, then two full refresh intervals
    finally:
        await client.close()


async def test_background_refresh_retries_sooner_after_a_failure(
    jwks_server: JwksServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    import asyncio

    jwks_server.status = 503
    client = JwksClient(jwks_server.url, refresh_interval=60, min_refetch_interval=0.02)
    await client.start()
    try:
        for _ in range(500):
            if jwks_server.requests >= 3:
                break
            await asyncio.sleep(0.01)
        assert jwks_server.requests >= 3  # retried after min_refetch_interval, not 60 s
        jwks_server.status = 200
        jwks_server.set_keys(public_jwk(rsa_key, "k1"))
        for _ in range(500):
            if client.get("k1") is not None:
                break
            await asyncio.sleep(0.01)
        assert client.get("k1") is not None
        await asyncio.sleep(0.1)
        settled = jwks_server.requests
        await asyncio.sleep(0.2)
        assert jwks_server.requests == settled  # healthy again: back to refresh_interval
    finally:
        await client.close()


def test_parse_jwks_skips_unusable_keys(rsa_key: rsa.RSAPrivateKey) -> None:
    good = public_jwk(rsa_key, "good")
    keys = parse_jwks(
        {
            "keys": [
                good,
                {**good, "kid": "enc", "use": "enc"},
                {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
                {"kty": "weird", "kid": "weird"},
                "junk",
            ]
        }
    )
    assert [key.kid for key in keys] == ["good"]
    with pytest.raises(JwksError, match="not a JWK set"):
        parse_jwks({"nokeys": []})


# -- static PEM keys ----------------------------------------------------------------------


async def test_static_public_keys(
    rsa_key: rsa.RSAPrivateKey, rsa_key_2: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    issuer = JwtIssuer(
        "static",
        ISSUER,
        audiences=[AUDIENCE],
        algorithms=["RS256", "ES256"],
        public_keys=[rsa_key_2.public_key(), ec_key.public_key()],
    )
    verifier = JwtVerifier([issuer])
    token = jwt.encode(claims(), ec_key, algorithm="ES256")  # no kid: every fitting key tried
    assert (await verifier.verify(token)).username == "reporting-service"
    assert (await verifier.verify(sign(rsa_key_2, kid="anything"))).username == (
        "reporting-service"
    )
    with pytest.raises(TokenRejected, match="signature verification failed"):
        await verifier.verify(sign(rsa_key))


async def test_non_string_issuer_is_rejected(jwks: JwksClient, rsa_key: rsa.RSAPrivateKey) -> None:
    payload = json.dumps(claims(iss=[ISSUER])).encode()  # PyJWT itself refuses to make one
    token = jwt.PyJWS().encode(payload, rsa_key, algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(TokenRejected, match="unknown issuer"):
        await make_verifier(jwks).verify(token)


def test_same_subject_from_another_issuer_does_not_match_the_rule() -> None:
    # Two configured issuers can both mint sub=reporting; a rule for one's client must not
    # be satisfied by the other's token.
    from gateway.config.yaml import load_text
    from gateway.policy import Level, Subject, Target
    from gateway.policy.loader import compile_documents

    engine = compile_documents(
        [
            load_text(
                "access_control:\n  default_policy: deny\n  rules:\n"
                "    - domain: api.example.com\n      subject: 'client:internal/reporting'\n"
                "      policy: one_factor\n",
                "policy.yml",
            )
        ]
    )
    target = Target.from_url("https://api.example.com/v1", "GET", "10.0.0.1")
    for issuer, expected in (("internal", Level.ONE_FACTOR), ("partner", Level.DENY)):
        identity = JwtIdentity(username="reporting", groups=(), issuer=issuer)
        subject = Subject(None, frozenset(), frozenset({identity.credential}))
        assert engine.decide(target, subject).level == expected
