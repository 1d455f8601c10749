"""The policy domains: what each ``kind:`` of policy file may contain beyond the shared parts.

Each domain lives in its own module and registers a ``Domain`` here. The shared parts
(facts, scores, outputs, decision tables) are in ``engine.core``; a domain adds its own
sections to the schema and, where it needs them, its own checks and compile steps.
"""

from __future__ import annotations

from engine.domains.access import ACCESS
from engine.domains.base import Domain
from engine.domains.classification import CLASSIFICATION
from engine.domains.escalation import ESCALATION
from engine.domains.retention import RETENTION
from engine.domains.tiering import TIERING

DOMAINS: dict[str, Domain] = {d.kind: d for d in (TIERING, CLASSIFICATION, ACCESS, RETENTION, ESCALATION)}

__all__ = ["DOMAINS", "Domain"]
