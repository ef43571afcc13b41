"""The access-control policy: Authelia ``access_control`` compatible rules, compiled once and
indexed by host, with hot reload, lint and ``gateway policy test``.

Knows nothing about HTTP or sessions: callers build a :class:`Target` and a :class:`Subject`
and ask :meth:`PolicyEngine.decide`.
"""

from gateway.policy.engine import PolicyEngine
from gateway.policy.loader import compile_documents, load_policy
from gateway.policy.model import (
    ANONYMOUS,
    POLICY_NAMES,
    BadTarget,
    Decision,
    Level,
    RuleRef,
    Subject,
    Target,
)
from gateway.policy.reload import PolicyWatcher

__all__ = [
    "ANONYMOUS",
    "POLICY_NAMES",
    "BadTarget",
    "Decision",
    "Level",
    "PolicyEngine",
    "PolicyWatcher",
    "RuleRef",
    "Subject",
    "Target",
    "compile_documents",
    "load_policy",
]
