"""JWT signature algorithms and the PEM public keys that verify them.

The one table of algorithms an issuer may allow (:data:`JWT_ALGORITHMS`) and the key types
each needs. The settings refuse anything else when they load (``none`` and the HMAC
algorithms by name: an issuer signs with a private key, so an RSA public key can never serve
as an HMAC secret); :mod:`gateway.credentials.jwt` verifies tokens with the same table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import BeforeValidator

__all__ = [
    "JWT_ALGORITHMS",
    "JwtAlgorithm",
    "PublicKey",
    "check_key_fits",
    "key_kind",
    "parse_public_key",
]

PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
"""A public key of a type some JWT algorithm can use."""

JWT_ALGORITHMS: Mapping[str, tuple[type[Any], ...]] = {
    "RS256": (rsa.RSAPublicKey,),
    "RS384": (rsa.RSAPublicKey,),
    "RS512": (rsa.RSAPublicKey,),
    "PS256": (rsa.RSAPublicKey,),
    "PS384": (rsa.RSAPublicKey,),
    "PS512": (rsa.RSAPublicKey,),
    "ES256": (ec.EllipticCurvePublicKey,),
    "ES384": (ec.EllipticCurvePublicKey,),
    "ES512": (ec.EllipticCurvePublicKey,),
    "EdDSA": (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey),
}
"""The algorithms an issuer may allow, and the key types each needs."""


def _jwt_algorithm(value: Any) -> str:
    text = str(value).strip()
    if text.lower() == "none":
        raise ValueError("'none' means an unsigned token and is never accepted")
    if text.upper().startswith("HS"):
        raise ValueError(
            f"'{text}' is an HMAC algorithm (a shared secret); issuers must sign with a "
            f"private key: use one of {', '.join(JWT_ALGORITHMS)}"
        )
    if text not in JWT_ALGORITHMS:
        raise ValueError(f"'{text}' is not supported (use one of {', '.join(JWT_ALGORITHMS)})")
    return text


JwtAlgorithm = Annotated[str, BeforeValidator(_jwt_algorithm)]
"""One of :data:`JWT_ALGORITHMS`; ``none`` and HMAC are refused by name."""


def parse_public_key(pem: str | bytes, label: str) -> PublicKeyTypes:
    """The key in PEM text; raises ValueError naming ``label`` when it is not one."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        return load_pem_public_key(data)
    except (ValueError, TypeError):
        raise ValueError(f"{label} is not a PEM public key (-----BEGIN PUBLIC KEY-----)") from None


def key_kind(key: object) -> str:
    """``RSA``, ``EC``, ``Ed25519`` or ``Ed448``, for messages."""
    for kind, name in (
        (rsa.RSAPublicKey, "RSA"),
        (ec.EllipticCurvePublicKey, "EC"),
        (ed25519.Ed25519PublicKey, "Ed25519"),
        (ed448.Ed448PublicKey, "Ed448"),
    ):
        if isinstance(key, kind):
            return name
    return type(key).__name__


def check_key_fits(key: object, algorithms: Iterable[str], label: str) -> None:
    """Raise ValueError (naming ``label``) unless one of ``algorithms`` can use ``key``."""
    algorithms = list(algorithms)
    if not any(isinstance(key, JWT_ALGORITHMS[algorithm]) for algorithm in algorithms):
        raise ValueError(
            f"{label} is an {key_kind(key)} key, which none of the "
            f"algorithms {', '.join(algorithms)} can use"
        )
