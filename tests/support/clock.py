"""The one fake clock of the suite."""

from __future__ import annotations

START = 1_700_000_000.0


class FakeClock:
    """Seconds that move only when a test says so.

    Every ``clock=`` parameter in gateway/ is a zero-argument callable returning seconds,
    standing for ``time.time`` or ``time.monotonic``; an instance of this class is either.
    Read or set ``now`` directly, or ``advance`` it. The default start is a fixed epoch time
    (November 2023); pass ``time.time()`` where real stores (SQLite, Redis) compare it with
    their own wall clock.
    """

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
