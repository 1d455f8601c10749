"""A loaded policy set, ready to decide: the bound programs of every period of a ``Bundle``.

``Loaded.build(bundle, snapshot)`` binds each period's compiled policies to programs (in
dependency order, sharing the programs periods have in common); ``decide`` chooses the
period in force at ``now``, runs the domain's program and, when audit mode can change that
outcome, its audit-mode program beside it. The engine's API (``engine.api.Engine``) holds one
``Loaded`` and swaps it whole on reload; replay (``engine.audit.replay``) builds one from
the policy files a log stored, in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from engine.core.decision import Decision
from engine.core.evaluate import Program
from engine.errors import EvaluationError, FactErrors, did_you_mean

if TYPE_CHECKING:
    from engine.core.bundle import Bundle, PolicySet
    from engine.core.compile import CompiledPolicy
    from engine.population import Snapshot


def aware(now: datetime) -> datetime:
    """``now`` for choosing a period; a naive ``now`` is refused by the evaluation itself."""
    return now if isinstance(now, datetime) and now.tzinfo is not None else datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Period:
    """The programs of one period of the bundle (``PolicySet``), and of its audit mode."""

    set: PolicySet
    programs: dict[str, Program]
    audit: dict[str, Program] | None = None  # only when some rule in force then is in audit mode

    @cached_property
    def classifier(self) -> Program | None:
        """The program whose domain classifies data (``Domain.field_classifier``): the log asks
        it which logged values to seal."""
        return next(
            (p for p in self.programs.values() if p.compiled.domain and p.compiled.domain.field_classifier), None
        )

    def shadow(self, domain: str) -> Program | None:
        """The audit-mode program of ``domain`` when audit mode can change its outcome then."""
        if self.audit is None or domain not in self.set.audited:
            return None
        return self.audit.get(domain)


@dataclass(frozen=True)
class Loaded:
    """A bundle with its programs bound, for every period. Immutable: swapped whole."""

    bundle: Bundle
    snapshot: Snapshot | None
    programs: dict[str, Program]  # the latest period's
    periods: tuple[Period, ...]

    @classmethod
    def build(cls, bundle: Bundle, snapshot: Snapshot | None) -> Loaded:
        made: dict[tuple[int, ...], Program] = {}  # periods share the programs they have in common

        def programs_of(policies: Mapping[str, CompiledPolicy]) -> dict[str, Program]:
            programs: dict[str, Program] = {}
            for kind, cp in policies.items():  # dependency order: upstream programs exist first
                upstream = {name: programs[name] for name in cp.policy.uses}
                key = (id(cp), *(id(p) for p in upstream.values()))
                program = made.get(key)
                if program is None:
                    program = made[key] = Program(cp, bundle.version, snapshot)
                    program.upstream = upstream
                programs[kind] = program
            return programs

        periods = tuple(
            Period(p, programs_of(p.policies), programs_of(p.audit) if p.audit is not None else None)
            for p in bundle.periods
        )
        return cls(bundle, snapshot, periods[-1].programs, periods)

    def period(self, now: datetime) -> Period:
        return self.periods[self.bundle.period_index(aware(now))]

    def program(self, period: Period, domain: str, now: datetime | None) -> Program:
        """``domain``'s program in ``period``; ``EvaluationError`` naming when it is in force
        if it is loaded but not then, or the loaded domains if it is not loaded at all."""
        program = period.programs.get(domain)
        if program is None:
            loaded = {k for p in self.periods for k in p.programs}
            if domain in loaded and now is not None:
                when = "; ".join(p.set.describe() for p in self.periods if domain in p.programs)
                raise EvaluationError(
                    f"no `{domain}` policy is in force at {now.isoformat().replace('+00:00', 'Z')}",
                    code="V004",
                    hint=f"by its effective dates it is in force {when}",
                )
            raise EvaluationError(
                f"no `{domain}` policy is loaded",
                code="V003",
                hint=did_you_mean(domain, loaded) or "loaded: " + ", ".join(sorted(loaded)),
            )
        return program

    def decide(
        self, domain: str, facts: Mapping[str, Any], now: datetime, *, explain: bool = False
    ) -> tuple[Decision, Period, Program, Program | None]:
        """Decide in ``domain`` at ``now``: the decision, the period, the program and the
        audit-mode program that decided (None when audit mode cannot change it)."""
        period = self.period(now)
        program = self.program(period, domain, now)
        shadow = period.shadow(domain)
        return decide(program, shadow, facts, now, explain), period, program, shadow


def decide(
    program: Program, shadow: Program | None, facts: Mapping[str, Any], now: datetime, explain: bool
) -> Decision:
    """``program``'s decision, with ``shadow``'s (audit mode) attached; an audit-mode failure
    is a note on the decision, never the decision's failure."""
    decision = program.evaluate(facts, now, explain=explain)
    if shadow is not None:
        try:
            decision.audit = shadow.evaluate(facts, now, explain=explain)
        except (FactErrors, EvaluationError) as exc:
            decision.notes = (*decision.notes, f"audit mode could not decide: {exc.message}")
    return decision
