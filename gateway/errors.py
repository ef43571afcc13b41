"""The meanings of the gateway's failures, so callers catch what they can act on.

Every module keeps its own exception types, named after the failure (``BasicRejected``,
``SessionStoreUnavailable``); each derives from one of these bases, which say what a caller
does about it::

    GatewayError
    ├── Unavailable   a dependency is down right now: answer 503 / "try again"; logged as
    │                 one line per kind per interval (observability/throttle.log_failure)
    ├── Rejected      the input is refused (a malformed request, bad credentials): answer
    │                 4xx; retrying the same input gets the same answer
    └── ConfigError   the configuration cannot be used: refuse to start (or to reload)

A handler that answers every outage the same way writes ``except Unavailable``, never a
list of the outages it knows of today. Types that fit none of the three (a session that
ended meanwhile, a sealed value that does not open) derive from :class:`GatewayError`.
This module imports nothing, so any module can use it.
"""

from __future__ import annotations

__all__ = ["ConfigError", "GatewayError", "Rejected", "Unavailable"]


class GatewayError(Exception):
    """Base of the gateway's own failures."""


class Unavailable(GatewayError):
    """A dependency (store, directory, key server) cannot answer right now; retrying later
    may succeed. Callers answer 503 or show a "try again" page, and never allow."""


class Rejected(GatewayError):
    """The input is refused: a malformed request, wrong or unusable credentials."""


class ConfigError(GatewayError):
    """The configuration (a file, an option, a key) cannot be used; the message names it."""
