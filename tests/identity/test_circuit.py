from __future__ import annotations

from gateway.identity.circuit import CircuitBreaker, CircuitState
from tests.support.clock import FakeClock


def test_opens_after_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(3, 30.0, clock=FakeClock(1000.0))
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # the count is of failures in a row
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.allow() and breaker.state is CircuitState.CLOSED
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    assert not breaker.allow()


def test_half_open_lets_one_probe_through() -> None:
    clock = FakeClock(1000.0)
    breaker = CircuitBreaker(1, 30.0, clock=clock)
    breaker.record_failure()
    clock.advance(29.9)
    assert not breaker.allow()
    clock.advance(0.2)
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # everyone else still fails fast
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED and breaker.allow()


def test_failed_probe_opens_again_for_a_full_period() -> None:
    clock = FakeClock(1000.0)
    breaker = CircuitBreaker(5, 10.0, clock=clock)
    for _ in range(5):
        breaker.record_failure()
    clock.advance(10.0)
    assert breaker.allow()
    breaker.record_failure()  # one failure suffices in half-open state
    assert breaker.state is CircuitState.OPEN
    clock.advance(9.0)
    assert not breaker.allow()


def test_a_silent_probe_is_replaced_after_the_reset_timeout() -> None:
    clock = FakeClock(1000.0)
    breaker = CircuitBreaker(1, 10.0, clock=clock)
    breaker.record_failure()
    clock.advance(10.0)
    assert breaker.allow()  # this probe's caller is cancelled and never reports
    clock.advance(5.0)
    assert not breaker.allow()
    clock.advance(5.0)
    assert breaker.allow()
