"""The second factor of a login: TOTP enrollment and verification, recovery codes, reset.

Enrollment is stateless on the server: :meth:`SecondFactor.begin_enrollment` returns the new
seed sealed in a ``token`` (AES-GCM, bound to the username, valid ``enrollment_ttl``
seconds) that the portal carries in its form or session; nothing is stored until
:meth:`SecondFactor.confirm_enrollment` has seen a valid code from the user's app.

Storage is the caller's (:mod:`gateway.storage`); this module needs only the methods of
:class:`SecondFactorStore`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from gateway.errors import Rejected
from gateway.identity import totp
from gateway.security.crypto import DecryptionError, Keyring

if TYPE_CHECKING:
    from gateway.config.settings import Settings

__all__ = [
    "Enrollment",
    "EnrollmentExpired",
    "SecondFactor",
    "SecondFactorMethod",
    "SecondFactorStore",
    "StoredTotp",
]

SecondFactorMethod = Literal["totp", "recovery_code"]
RECOVERY_CODES = 10
_TOKEN_CONTEXT = b"gateway/totp-enrollment\x00"


class StoredTotp(Protocol):
    """What the store keeps of an enrollment (``gateway.storage.TotpRecord``)."""

    @property
    def secret(self) -> str: ...

    @property
    def digits(self) -> int: ...

    @property
    def period(self) -> int: ...


class SecondFactorStore(Protocol):
    """The storage methods the second factor uses (``Storage.second_factor`` has them)."""

    async def save_totp(
        self, username: str, secret: str, *, digits: int = 6, period: int = 30
    ) -> object: ...

    async def get_totp(self, username: str) -> StoredTotp | None: ...

    async def delete_totp(self, username: str) -> bool: ...

    async def mark_totp_used(self, username: str, step: int, *, keep_for: float) -> bool:
        """True the first time a step is marked for the user, False on a replay."""
        ...

    async def set_recovery_codes(self, username: str, code_hashes: Sequence[bytes]) -> None: ...

    async def use_recovery_code(self, username: str, code_hash: bytes) -> bool:
        """True exactly once per stored code."""
        ...

    async def count_recovery_codes(self, username: str) -> int: ...


@dataclass(frozen=True, slots=True)
class Enrollment:
    """A started enrollment: show ``qr_svg`` (and ``secret`` for typing), keep ``token``."""

    secret: str = field(repr=False)
    uri: str = field(repr=False)
    qr_svg: str = field(repr=False)
    token: str = field(repr=False)


class EnrollmentExpired(Rejected):
    """The enrollment token is too old, damaged, or was made for another user: start again."""


class SecondFactor:
    """TOTP and recovery codes for users, over a :class:`SecondFactorStore`."""

    def __init__(
        self,
        store: SecondFactorStore,
        *,
        keyring: Keyring,
        hash_key: bytes,
        issuer: str = "gateway",
        period: int = 30,
        digits: int = 6,
        skew: int = 1,
        enrollment_ttl: float = 900.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._hash_key = hash_key
        self.issuer = issuer
        self.period = period
        self.digits = digits
        self.skew = skew
        self.enrollment_ttl = enrollment_ttl
        self._clock = clock

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        store: SecondFactorStore,
        hash_key: bytes,
        *,
        keyring: Keyring | None = None,
        clock: Callable[[], float] = time.time,
    ) -> SecondFactor:
        """Configured by ``settings.totp``; the keyring defaults to the configured keys."""
        totp_settings = settings.totp
        return cls(
            store,
            keyring=keyring or Keyring.from_texts(settings.secrets.encryption_keys),
            hash_key=hash_key,
            issuer=totp_settings.issuer,
            period=totp_settings.period,
            digits=totp_settings.digits,
            skew=totp_settings.skew,
            clock=clock,
        )

    # -- enrollment ----------------------------------------------------------------------

    def begin_enrollment(self, username: str) -> Enrollment:
        """A new seed, its QR code, and the token :meth:`confirm_enrollment` needs."""
        secret = totp.new_secret()
        uri = totp.provisioning_uri(
            secret, username, self.issuer, period=self.period, digits=self.digits
        )
        issued = int(self._clock())
        token = self._keyring.seal_text(f"{issued}:{secret}", context=_token_context(username))
        return Enrollment(secret=secret, uri=uri, qr_svg=totp.qr_svg(uri), token=token)

    async def confirm_enrollment(
        self, username: str, token: str, code: str, *, now: float | None = None
    ) -> list[str] | None:
        """Save the seed if ``code`` is valid for it; returns the new recovery codes.

        The codes are shown to the user once and never again (only keyed hashes are kept).
        None: the code is wrong (let the user try again). Raises :class:`EnrollmentExpired`.
        Enrolling again replaces the previous seed and recovery codes: the caller makes
        sure the user proved their current second factor first.
        """
        now = self._clock() if now is None else now
        secret = self._secret_from_token(username, token, now)
        step = totp.verify(
            secret, code, now=now, skew=self.skew, period=self.period, digits=self.digits
        )
        if step is None:
            return None
        await self._store.save_totp(username, secret, digits=self.digits, period=self.period)
        # The code that confirmed the enrollment cannot be replayed for a login.
        await self._store.mark_totp_used(username, step, keep_for=self._keep_used_for(self.period))
        return await self.regenerate_recovery_codes(username)

    # -- verification --------------------------------------------------------------------

    async def verify(
        self, username: str, code: str, *, now: float | None = None
    ) -> SecondFactorMethod | None:
        """Which method ``code`` passed (a TOTP code or a recovery code), or None.

        A TOTP code is accepted once: the same code again (a replay) fails, on every replica
        sharing the store. A recovery code is consumed. Raises
        :class:`~gateway.security.crypto.DecryptionError` if the stored seed cannot be
        decrypted (an encryption key was removed): failing closed is deliberate.
        """
        typed = "".join(code.split())
        if typed.isascii() and typed.isdigit() and len(typed) in (6, 8):
            return "totp" if await self._verify_totp(username, typed, now) else None
        normalised = totp.normalise_recovery_code(typed)
        if normalised is None:
            return None
        code_hash = totp.hash_recovery_code(normalised, self._hash_key)
        return "recovery_code" if await self._store.use_recovery_code(username, code_hash) else None

    async def has_totp(self, username: str) -> bool:
        return await self._store.get_totp(username) is not None

    async def recovery_codes_left(self, username: str) -> int:
        return await self._store.count_recovery_codes(username)

    async def regenerate_recovery_codes(self, username: str) -> list[str]:
        """Replace the user's recovery codes with :data:`RECOVERY_CODES` new ones."""
        codes = totp.generate_recovery_codes(RECOVERY_CODES)
        hashes = [totp.hash_recovery_code(code, self._hash_key) for code in codes]
        await self._store.set_recovery_codes(username, hashes)
        return codes

    async def reset(self, username: str) -> bool:
        """Forget the user's seed and recovery codes; True if they had a TOTP enrollment."""
        had_totp = await self._store.delete_totp(username)
        await self._store.set_recovery_codes(username, [])
        return had_totp

    # -- internals -----------------------------------------------------------------------

    async def _verify_totp(self, username: str, code: str, now: float | None) -> bool:
        record = await self._store.get_totp(username)
        if record is None:
            return False
        step = totp.verify(
            record.secret,
            code,
            now=self._clock() if now is None else now,
            skew=self.skew,
            period=record.period,
            digits=record.digits,
        )
        if step is None:
            return False
        keep_for = self._keep_used_for(record.period)
        return await self._store.mark_totp_used(username, step, keep_for=keep_for)

    def _keep_used_for(self, period: int) -> float:
        # A step stays acceptable while the clock is within `skew` steps of it: at most
        # (2 * skew + 1) periods from now. One more period covers clock jitter.
        return float((2 * self.skew + 2) * period)

    def _secret_from_token(self, username: str, token: str, now: float) -> str:
        try:
            text = self._keyring.open_text(token, context=_token_context(username))
            issued, secret = text.split(":", 1)
            age = now - int(issued)
        except (DecryptionError, ValueError):
            raise EnrollmentExpired("the enrollment is not valid; start again") from None
        if not 0 <= age <= self.enrollment_ttl:
            raise EnrollmentExpired("the enrollment has expired; start again")
        return secret


def _token_context(username: str) -> bytes:
    return _TOKEN_CONTEXT + username.encode()
