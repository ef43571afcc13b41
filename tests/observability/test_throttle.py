"""Repeated failures log one line per kind per interval, with a count of the rest."""

from __future__ import annotations

import io
import logging

import pytest

from gateway.errors import Unavailable
from gateway.observability.throttle import (
    LogThrottle,
    ThrottlingFilter,
    log_failure,
    log_throttled,
)
from gateway.session.model import SessionStoreUnavailable
from gateway.storage.errors import StorageUnavailable
from tests.support.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def throttle(clock: FakeClock) -> LogThrottle:
    return LogThrottle(10.0, clock=clock)


def test_one_line_per_key_per_interval(throttle: LogThrottle, clock: FakeClock) -> None:
    assert throttle.admit("redis") == 0
    assert [throttle.admit("redis") for _ in range(5)] == [None] * 5
    assert throttle.admit("ldap") == 0  # another kind has its own budget
    clock.advance(9.9)
    assert throttle.admit("redis") is None
    clock.advance(0.1)
    assert throttle.admit("redis") == 6  # held back since the last line
    assert throttle.admit("redis") is None


def test_keys_are_bounded(clock: FakeClock) -> None:
    throttle = LogThrottle(10.0, clock=clock, max_keys=3)
    for key in range(10):
        assert throttle.admit(key) == 0
    assert throttle.admit(9) is None  # recent keys are remembered
    assert throttle.admit(0) == 0  # the oldest were forgotten


def test_the_next_line_says_how_many_were_held_back(
    throttle: LogThrottle, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("gateway.test.throttle")
    with caplog.at_level(logging.INFO, logger=logger.name):
        for _ in range(50):
            log_throttled(logger, "k", "store down: %s", "refused", throttle=throttle)
        clock.advance(10)
        log_throttled(logger, "k", "store down: %s", "refused", throttle=throttle)
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "store down: refused",
        "store down: refused (49 more like this in the last 10s)",
    ]


def test_outages_are_one_line_and_bugs_keep_a_traceback(
    throttle: LogThrottle, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("gateway.test.failure")
    errors: list[BaseException] = []
    for error in (SessionStoreUnavailable(), StorageUnavailable("db down"), KeyError("x")):
        for _ in range(20):
            try:
                raise error
            except Exception as caught:
                errors.append(caught)
                log_failure(logger, caught, "denying", throttle=throttle)
    assert issubclass(SessionStoreUnavailable, Unavailable)
    records = [record for record in caplog.records if record.name == logger.name]
    assert [record.getMessage() for record in records] == [
        "denying: the session store is unavailable",
        "denying: db down",
        "denying",
    ]
    assert [record.exc_info is not None for record in records] == [False, False, True]
    assert records[2].levelno == logging.ERROR


def test_distinct_bugs_each_get_their_traceback(
    throttle: LogThrottle, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("gateway.test.bugs")

    def first() -> None:
        raise ValueError("one")

    def second() -> None:
        raise ValueError("two")

    for function in (first, second, first, second):
        try:
            function()
        except ValueError as error:
            log_failure(logger, error, "failed", throttle=throttle)
    assert len([r for r in caplog.records if r.name == logger.name]) == 2


def test_the_handler_filter_throttles_other_libraries_only(
    throttle: LogThrottle, clock: FakeClock
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ThrottlingFilter(throttle))
    library = logging.getLogger("psycopg.pool.test")
    own = logging.getLogger("gateway.test.own")
    for logger in (library, own):
        logger.addHandler(handler)
        logger.propagate = False
    try:
        for attempt in range(30):
            library.warning("error connecting in %r: %s", "pool", f"timeout {attempt}")
            own.warning("gateway line %d", attempt)
        clock.advance(10)
        library.warning("error connecting in %r: %s", "pool", "timeout 30")
    finally:
        for logger in (library, own):
            logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines.count("error connecting in 'pool': timeout 0") == 1
    assert "error connecting in 'pool': timeout 30 (29 more like this in the last 10s)" in lines
    assert len([line for line in lines if line.startswith("gateway line")]) == 30
