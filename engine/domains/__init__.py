"""The five built-in policy domains, registered as a plugin through ``charter_domains``.

Each domain lives in its own module and is declared there as an ``engine.core.domain.Domain``;
this module only hands them to the plugin manager, exactly as a third-party package's entry
point would. Nothing in ``engine.core`` imports this package.
"""

from __future__ import annotations

from engine.core.domain import Domain
from engine.domains.access import ACCESS
from engine.domains.classification import CLASSIFICATION
from engine.domains.escalation import ESCALATION
from engine.domains.retention import RETENTION
from engine.domains.tiering import TIERING
from engine.hookspecs import hookimpl

BUILTIN: tuple[Domain, ...] = (TIERING, CLASSIFICATION, ACCESS, RETENTION, ESCALATION)


@hookimpl
def charter_domains() -> list[Domain]:
    return list(BUILTIN)


__all__ = ["BUILTIN", "Domain", "charter_domains"]
