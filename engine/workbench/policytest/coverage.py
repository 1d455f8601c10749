"""Rule coverage: which rules of a policy set no policy test made fire.

Every domain's rules are enumerated with the file and line they are written at:

* the shared parts (any policy with them): each band of ``bands:`` and each row of each
  decision table;
* a domain's own sections: what its ``Domain.rules`` lists (each rule, waiver, clock,
  ladder step ... as decisions name them).

A rule is *exercised* when it appears among the fired rules of a decision some case made,
the decisions of the domains that decision used included. Rules are told apart by domain and
id, since two domains may use the same id (``sensitive-identifiers``).

A domain that decides with its own runner but lists no rules is reported as *not measured*
rather than counted as covered; none of the shipped domains is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.core.compile import CompiledPolicy
from engine.core.model import BandsDecl, Policy, TableDecl

RuleKey = tuple[str, str]  # (domain, rule id)


@dataclass(frozen=True, order=True)
class RuleRef:
    """One rule of a policy: where it is written and what kind of rule it is."""

    file: str
    line: int
    domain: str
    id: str
    kind: str

    @property
    def key(self) -> RuleKey:
        return (self.domain, self.id)

    def to_dict(self) -> dict[str, Any]:
        return {"domain": self.domain, "id": self.id, "kind": self.kind, "file": self.file, "line": self.line}


@dataclass(frozen=True)
class Enumerated:
    rules: tuple[RuleRef, ...]
    unmeasured: tuple[RuleRef, ...] = ()


def _shared(policy: Policy) -> list[RuleRef]:
    out = []
    for step in policy.steps:
        if isinstance(step, BandsDecl):
            out += [RuleRef(b.location.file, b.location.line, policy.kind, b.id, "band") for b in step.bands]
        elif isinstance(step, TableDecl):
            out += [
                RuleRef(r.location.file, r.location.line, policy.kind, r.id, f"row of table `{step.id}`")
                for r in step.rules
            ]
    return out


def enumerate_rules(compiled: CompiledPolicy) -> Enumerated:
    """Every rule of a compiled policy that a decision can name as fired, and those it cannot:
    the shared steps', then its domain's own (``Domain.rules``). A domain that decides with
    its own runner but cannot say what its rules are is *not measured*, never a silent 100%."""
    policy, domain = compiled.policy, compiled.domain
    shared = _shared(policy)
    if domain is None or compiled.runner is None:
        return Enumerated(tuple(shared))
    if domain.rules is None:
        where = RuleRef(policy.path, policy.location.line, policy.kind, policy.id, f"`{policy.kind}` policy")
        return Enumerated(tuple(shared), (where,))
    own = [RuleRef(r.file, r.line, policy.kind, r.id, r.kind) for r in domain.rules(policy)]
    return Enumerated((*shared, *own))


def policies_of(bundle: Any) -> list[CompiledPolicy]:
    """Every policy of a bundle, over all its periods of effective dates (a rule in force only
    in 2026 is still a rule to test), the latest version of each first."""
    sets = [bundle.policies] + [p.policies for p in reversed(getattr(bundle, "periods", ()) or ())]
    return [compiled for policies in sets for compiled in policies.values()]


# --------------------------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------------------------


@dataclass
class DomainCoverage:
    domain: str
    rules: int = 0
    fired: int = 0

    @property
    def percent(self) -> float:
        return 100.0 * self.fired / self.rules if self.rules else 100.0


@dataclass
class Coverage:
    """How many rules of each domain some case made fire, and which did not."""

    domains: dict[str, DomainCoverage] = field(default_factory=dict)
    uncovered: list[RuleRef] = field(default_factory=list)
    unmeasured: list[RuleRef] = field(default_factory=list)

    @property
    def rules(self) -> int:
        return sum(d.rules for d in self.domains.values())

    @property
    def fired(self) -> int:
        return sum(d.fired for d in self.domains.values())

    @property
    def percent(self) -> float:
        return 100.0 * self.fired / self.rules if self.rules else 100.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "percent": round(self.percent, 2),
            "rules": self.rules,
            "fired": self.fired,
            "domains": {
                name: {"rules": d.rules, "fired": d.fired, "percent": round(d.percent, 2)}
                for name, d in self.domains.items()
            },
            "uncovered": [r.to_dict() for r in self.uncovered],
            "unmeasured": [r.to_dict() for r in self.unmeasured],
        }


def measure(policies: Iterable[CompiledPolicy], exercised: set[RuleKey]) -> Coverage:
    """Coverage of ``policies`` by the (domain, rule id) pairs some case made fire."""
    out = Coverage()
    seen: set[RuleKey] = set()
    unmeasured: set[RuleKey] = set()
    for compiled in policies:
        found = enumerate_rules(compiled)
        kind = compiled.policy.kind
        domain = out.domains.setdefault(kind, DomainCoverage(kind))
        for rule in found.rules:
            if rule.key in seen:
                continue
            seen.add(rule.key)
            domain.rules += 1
            if rule.key in exercised:
                domain.fired += 1
            else:
                out.uncovered.append(rule)
        for rule in found.unmeasured:
            if rule.key not in unmeasured:
                unmeasured.add(rule.key)
                out.unmeasured.append(rule)
    out.domains = dict(sorted(out.domains.items()))
    out.uncovered.sort()
    out.unmeasured.sort()
    return out


def known_rules(policies: Iterable[CompiledPolicy]) -> Mapping[str, set[str]]:
    """Rule ids by domain: what a case's ``fired:`` and ``not_fired:`` may name."""
    out: dict[str, set[str]] = {}
    for compiled in policies:
        found = enumerate_rules(compiled)
        out.setdefault(compiled.policy.kind, set()).update(r.id for r in found.rules)
    return out


def render(coverage: Coverage, title: str = "") -> list[str]:
    """Coverage as text: a line per domain, the overall figure, then every uncovered rule."""
    head = "rule coverage" + (f" of {title}" if title else "") + ": rules some case makes fire"
    lines = [head]
    width = max((len(n) for n in coverage.domains), default=7)
    width = max(width, len("overall"))
    for name, d in coverage.domains.items():
        lines.append(f"  {name:<{width}}  {d.fired:>4}/{d.rules:<4} {d.percent:6.1f}%")
    lines.append(f"  {'overall':<{width}}  {coverage.fired:>4}/{coverage.rules:<4} {coverage.percent:6.1f}%")
    for r in coverage.uncovered:
        lines.append(f"{r.file}:{r.line}: rule `{r.id}` ({r.domain}) — no test makes it fire")
    for r in coverage.unmeasured:
        lines.append(
            f"{r.file}:{r.line}: {r.kind} `{r.id}` ({r.domain}) — not measured: decisions never name it as fired"
        )
    return lines
