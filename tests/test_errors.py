"""Every failure type derives from the base that says what a caller does about it."""

from __future__ import annotations

import pytest

from gateway import errors
from gateway.config.yaml import ConfigError
from gateway.credentials.api_key_declarations import StaticKeyError
from gateway.credentials.api_keys import ApiKeyRejected, ApiKeyUnavailable
from gateway.credentials.authenticator import CredentialsConfigError
from gateway.credentials.client_cert import CertificateConfigError, CertificateRejected
from gateway.credentials.commands import CommandError as KeysCommandError
from gateway.credentials.jwks import JwksError
from gateway.credentials.jwt import TokenRejected
from gateway.credentials.networks import NetworkError
from gateway.credentials.upstream import UpstreamUnavailable
from gateway.decision.authenticate import BasicRejected
from gateway.decision.request import BadRequest
from gateway.identity.commands import CommandError as UsersCommandError
from gateway.identity.model import DirectoryUnavailable
from gateway.identity.second_factor import EnrollmentExpired
from gateway.policy.model import BadTarget
from gateway.portal.forms import BadForm
from gateway.security.crypto import DecryptionError, InvalidKeyError
from gateway.session.model import SessionExpired, SessionStoreUnavailable
from gateway.storage.errors import (
    RecordExists,
    RotationIncomplete,
    StorageError,
    StorageUnavailable,
)

MEANINGS: list[tuple[type[Exception], type[Exception]]] = [
    (SessionStoreUnavailable, errors.Unavailable),
    (StorageUnavailable, errors.Unavailable),
    (DirectoryUnavailable, errors.Unavailable),
    (ApiKeyUnavailable, errors.Unavailable),
    (UpstreamUnavailable, errors.Unavailable),
    (JwksError, errors.Unavailable),
    (BadRequest, errors.Rejected),
    (BadTarget, errors.Rejected),
    (BadForm, errors.Rejected),
    (BasicRejected, errors.Rejected),
    (ApiKeyRejected, errors.Rejected),
    (TokenRejected, errors.Rejected),
    (CertificateRejected, errors.Rejected),
    (EnrollmentExpired, errors.Rejected),
    (RecordExists, errors.Rejected),
    (ConfigError, errors.ConfigError),
    (CredentialsConfigError, errors.ConfigError),
    (CertificateConfigError, errors.ConfigError),
    (NetworkError, errors.ConfigError),
    (StaticKeyError, errors.ConfigError),
    (InvalidKeyError, errors.ConfigError),
    (StorageError, errors.GatewayError),
    (RotationIncomplete, errors.GatewayError),
    (SessionExpired, errors.GatewayError),
    (DecryptionError, errors.GatewayError),
    (UsersCommandError, errors.GatewayError),
    (KeysCommandError, errors.GatewayError),
]
BASES = (errors.Unavailable, errors.Rejected, errors.ConfigError)


@pytest.mark.parametrize(("error", "meaning"), MEANINGS, ids=lambda value: value.__name__)
def test_each_failure_has_one_meaning(error: type[Exception], meaning: type[Exception]) -> None:
    assert issubclass(error, meaning)
    assert issubclass(error, errors.GatewayError)
    others = [base for base in BASES if base is not meaning and issubclass(error, base)]
    assert others == []


VALUE_ERRORS = [BadTarget, NetworkError, CredentialsConfigError, CertificateConfigError]


@pytest.mark.parametrize("error", [*VALUE_ERRORS, StaticKeyError, InvalidKeyError])
def test_value_errors_stay_value_errors(error: type[Exception]) -> None:
    # Validators and callers that catch ValueError keep working.
    assert issubclass(error, ValueError)


def test_the_bases_are_distinct_meanings() -> None:
    for base in BASES:
        assert issubclass(base, errors.GatewayError)
        assert [other for other in BASES if other is not base and issubclass(base, other)] == []
