from __future__ import annotations

from gateway.identity.circuit import CircuitBreaker, CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(3, 30.0, clock=Clock())
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
    clock = Clock()
    breaker = CircuitBreaker(1, 30.0, clock=clock)
    breaker.record_failure()
    clock.now += 29.9
    assert not breaker.allow()
    clock.now += 0.2
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # everyone else still fails fast
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED and breaker.allow()


def test_failed_probe_opens_again_for_a_full_period() -> None:
    clock = Clock()
    breaker = CircuitBreaker(5, 10.0, clock=clock)
    for _ in range(5):
        breaker.record_failure()
    clock.now += 10.0
    assert breaker.allow()
    breaker.record_failure()  # one failure suffices in half-open state
    assert breaker.state is CircuitState.OPEN
    clock.now += 9.0
    assert not breaker.allow()


def test_a_silent_probe_is_replaced_after_the_reset_timeout() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 10.0, clock=clock)
    breaker.record_failure()
    clock.now += 10.0
    assert breaker.allow()  # this probe's caller is cancelled and never reports
    clock.now += 5.0
    assert not breaker.allow()
    clock.now += 5.0
    assert breaker.allow()
