"""Charter: a rules-and-policy engine for customer-relationship compliance.

The host application's API is small::

    from engine import Engine, Decision, Snapshot
    engine = Engine("policies")
    engine.evaluate("tiering", facts, now=now)

Errors all derive from ``engine.errors.CharterError`` (see that module for the tree).
"""

from engine.api import Engine
from engine.core.decision import ENGINE_VERSION, SEMANTICS_VERSION, Decision, FiredRule, TraceStep
from engine.errors import (
    CharterError,
    EvaluationError,
    FactError,
    FactErrors,
    Location,
    PluginError,
    PolicyError,
    PolicyErrors,
    SnapshotError,
)
from engine.population import Snapshot

__version__ = ENGINE_VERSION

__all__ = [
    "ENGINE_VERSION",
    "SEMANTICS_VERSION",
    "CharterError",
    "Decision",
    "Engine",
    "EvaluationError",
    "FactError",
    "FactErrors",
    "FiredRule",
    "Location",
    "PluginError",
    "PolicyError",
    "PolicyErrors",
    "Snapshot",
    "SnapshotError",
    "TraceStep",
    "__version__",
]
