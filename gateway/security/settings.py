"""``regulation:`` in ``gateway.yml``: banning users and addresses after failed logins.

The schema only; :mod:`gateway.security.regulation` reads it.
"""

from __future__ import annotations

from pydantic import Field

from gateway.config.values import Duration, Section

__all__ = ["RegulationSettings"]


class RegulationSettings(Section):
    max_retries: int = Field(3, ge=0)
    """Failures within find_time that ban the user / IP; 0 disables regulation."""
    find_time: Duration = 120.0
    ban_time: Duration = 300.0
