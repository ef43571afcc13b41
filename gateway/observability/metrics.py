"""Prometheus metrics without a dependency: counters, gauges and one latency histogram.

Updates are plain integer additions on the event loop thread (no locks needed); rendering
happens only when ``/metrics`` is scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable

__all__ = ["Metrics"]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """The gateway's metrics registry."""

    def __init__(self) -> None:
        self.decisions: dict[tuple[str, int], int] = {}
        self.logins: dict[str, int] = {}
        self._latency_counts = [0] * (len(_BUCKETS) + 1)
        self._latency_sum = 0.0
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def decision(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one authorisation answer and its latency."""
        key = (endpoint, status)
        self.decisions[key] = self.decisions.get(key, 0) + 1
        self._latency_counts[bisect_left(_BUCKETS, seconds)] += 1
        self._latency_sum += seconds

    def login(self, result: str) -> None:
        self.logins[result] = self.logins.get(result, 0) + 1

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Register a gauge whose value is read at scrape time."""
        self._gauges[name] = (help_text, read)

    def render(self) -> str:
        """The Prometheus text exposition format."""
        lines = [
            "# HELP gateway_decisions_total Authorisation answers by endpoint and HTTP status.",
            "# TYPE gateway_decisions_total counter",
        ]
        for (endpoint, status), count in sorted(self.decisions.items()):
            labels = f'endpoint="{_escape(endpoint)}",status="{status}"'
            lines.append(f"gateway_decisions_total{{{labels}}} {count}")
        lines += [
            "# HELP gateway_decision_seconds Time to answer an authorisation request.",
            "# TYPE gateway_decision_seconds histogram",
        ]
        cumulative = 0
        for bound, count in zip((*_BUCKETS, float("inf")), self._latency_counts, strict=True):
            cumulative += count
            label = "+Inf" if bound == float("inf") else repr(bound)
            lines.append(f'gateway_decision_seconds_bucket{{le="{label}"}} {cumulative}')
        lines.append(f"gateway_decision_seconds_sum {self._latency_sum}")
        lines.append(f"gateway_decision_seconds_count {cumulative}")
        lines += [
            "# HELP gateway_logins_total Portal sign-in attempts by result.",
            "# TYPE gateway_logins_total counter",
        ]
        for result, count in sorted(self.logins.items()):
            lines.append(f'gateway_logins_total{{result="{_escape(result)}"}} {count}')
        for name, (help_text, read) in sorted(self._gauges.items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {read()}"]
        return "\n".join(lines) + "\n"
