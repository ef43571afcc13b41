"""Time-based one-time passwords (RFC 6238, HMAC-SHA1 as every authenticator app supports)
and recovery codes.

:func:`verify` returns the time step a code belongs to, so the caller can record it as used
and refuse the same code a second time (RFC 6238 section 5.2).
"""

from __future__ import annotations

import secrets
import time

import pyotp
import segno

from gateway.security.crypto import equal, keyed_hash

__all__ = [
    "RECOVERY_ALPHABET",
    "code_at",
    "generate_recovery_codes",
    "hash_recovery_code",
    "new_secret",
    "normalise_recovery_code",
    "provisioning_uri",
    "qr_svg",
    "verify",
]

SECRET_LENGTH = 32  # base32 characters: 160 bits, the HMAC-SHA1 key size RFC 4226 recommends

# Crockford's base32 (no i, l, o, u): 5 bits a character, readable aloud, no 0/O or 1/l mix-ups.
RECOVERY_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_RECOVERY_GROUPS = 3
_RECOVERY_GROUP_LENGTH = 4  # 3 x 4 characters x 5 bits = 60 bits per code
_RECOVERY_LENGTH = _RECOVERY_GROUPS * _RECOVERY_GROUP_LENGTH
_LOOKALIKES = str.maketrans({"i": "1", "l": "1", "o": "0"})
_RECOVERY_PURPOSE = "totp-recovery-code"


def new_secret() -> str:
    """A new random TOTP seed, base32 (what authenticator apps expect)."""
    return pyotp.random_base32(SECRET_LENGTH)


def provisioning_uri(
    secret: str, username: str, issuer: str, *, period: int = 30, digits: int = 6
) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app reads from the QR code."""
    totp = pyotp.TOTP(secret, digits=digits, interval=period)
    return totp.provisioning_uri(name=username, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The URI as a QR code: an inline ``<svg>`` element, made locally (the seed never leaves)."""
    qr = segno.make_qr(uri, error="m")
    svg: str = qr.svg_inline(scale=4, border=4, title="QR code for your authenticator app")
    return svg


def code_at(secret: str, step: int, *, digits: int = 6) -> str:
    """The code of time step ``step`` (``unix time // period``)."""
    # pyotp computes the step from a time; the start of the step is exact for any period.
    totp = pyotp.TOTP(secret, digits=digits, interval=1)
    return totp.at(step)


def verify(
    secret: str,
    code: str,
    *,
    now: float | None = None,
    skew: int = 1,
    period: int = 30,
    digits: int = 6,
) -> int | None:
    """The time step ``code`` is valid for (current step ± ``skew``), or None.

    Spaces in the code are ignored. Every candidate is compared in constant time, and all of
    them are computed, so the answer takes the same time whichever step matched.
    """
    typed = "".join(code.split())
    if len(typed) != digits or not typed.isascii() or not typed.isdigit():
        return None
    current = int((time.time() if now is None else now) // period)
    matched: int | None = None
    for step in range(current - skew, current + skew + 1):
        if equal(code_at(secret, step, digits=digits), typed) and matched is None:
            matched = step
    return matched


def generate_recovery_codes(n: int = 10) -> list[str]:
    """``n`` single-use codes like ``7k2m-q9xh-4tfa`` (60 random bits each)."""
    codes = []
    for _ in range(n):
        characters = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
        groups = [
            characters[i : i + _RECOVERY_GROUP_LENGTH]
            for i in range(0, _RECOVERY_LENGTH, _RECOVERY_GROUP_LENGTH)
        ]
        codes.append("-".join(groups))
    return codes


def normalise_recovery_code(code: str) -> str | None:
    """The canonical form of a typed recovery code, or None if it cannot be one.

    Case, spaces and hyphens do not matter; ``i``/``l`` read as ``1`` and ``o`` as ``0``.
    """
    text = "".join(code.split()).replace("-", "").lower().translate(_LOOKALIKES)
    if len(text) != _RECOVERY_LENGTH or any(char not in RECOVERY_ALPHABET for char in text):
        return None
    return text


def hash_recovery_code(code: str, hash_key: bytes | str) -> bytes:
    """The keyed hash stored for a recovery code (of its normalised form)."""
    normalised = normalise_recovery_code(code)
    if normalised is None:
        raise ValueError("not a recovery code")
    key = hash_key.encode() if isinstance(hash_key, str) else hash_key
    return keyed_hash(key, normalised, purpose=_RECOVERY_PURPOSE)
