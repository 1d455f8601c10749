"""What a policy domain declares about itself, and how a domain with its own semantics plugs in.

A domain either reuses the shared policy parts only (``tiering``: facts, scores, outputs,
decision tables and bands, compiled by ``engine.core``) or brings its own sections with
three functions:

* ``check(ctx)``: validate its sections of the document (``ctx`` is the validator: it
  reports located errors and type-checks expressions) and return its model;
* ``build(policy, registry)``: compile that model, once, into a ``Runner``;
* ``cross_check(policy, others)``: checks against the other loaded domains' policies
  (access grants naming data classes that classification declares, ...).

A ``Runner`` decides one request: ``run(facts, now, upstream, explain)`` with the
decisions of the domains it ``uses:`` already made, returning a ``DomainResult``. It
raises ``FactErrors`` for a request that breaks the domain's request shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from engine.core.decision import Decision, FiredRule, TraceStep
    from engine.core.model import Policy
    from engine.errors import PolicyError
    from engine.plugins import Registry


@dataclass
class DomainResult:
    """What a domain's runner decided: outputs, the rules that decided, notes and trace."""

    outputs: dict[str, Any]
    fired: list[FiredRule]
    notes: list[str] = field(default_factory=list)
    trace: list[TraceStep] | None = None
    subject: str | None = None  # who the decision is about, when not the request's `id`


class Runner(Protocol):
    def __call__(
        self, facts: Mapping[str, Any], now: datetime, upstream: Mapping[str, Decision], explain: bool
    ) -> DomainResult: ...


@dataclass(frozen=True)
class Domain:
    """A policy kind: its name, the schema sections it adds and, for its own semantics, its stages."""

    kind: str
    description: str
    schema_extra: dict[str, Any] = field(default_factory=dict)
    shared: bool = True  # whether facts/scores/outputs/tables are allowed (and `outputs` required)
    required: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()  # domains whose decisions this one reads (others are only recorded)
    check: Callable[[Any], Any] | None = None
    build: Callable[[Policy, Registry], Runner] | None = None
    cross_check: Callable[[Policy, Mapping[str, Policy]], list[PolicyError]] | None = None
