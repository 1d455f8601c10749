"""Rule coverage: which rules of a policy set no policy test made fire.

Every domain's rules are enumerated with the file and line they are written at:

* tiering (and any policy with the shared parts): each band of ``bands:`` and each row of
  each decision table;
* classification: each rule; access: each rule, each waiver (``exceptions:``) and the
  built-in ``default-deny``; retention: each rule;
* escalation: each clock, each ladder step (``ladder-<level>``, as decisions name them) and
  each churn pattern.

A rule is *exercised* when it appears among the fired rules of a decision some case made,
the decisions of the domains that decision used included. Rules are told apart by domain and
id, since two domains may use the same id (``sensitive-identifiers``).

A part of a policy that could act on decisions without being reported as fired would be
listed as *not measured* rather than counted; none of the shipped domains has one now
(escalation reports its ``priority:`` entries as ``priority-<tier>``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

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


def _classification(policy: Policy) -> Enumerated:
    return Enumerated(
        tuple(RuleRef(r.location.file, r.location.line, policy.kind, r.id, "rule") for r in policy.extra.rules)
    )


def _access(policy: Policy) -> Enumerated:
    model = policy.extra
    rules = [RuleRef(g.location.file, g.location.line, policy.kind, g.id, f"{g.effect} rule") for g in model.rules]
    rules += [RuleRef(g.location.file, g.location.line, policy.kind, g.id, "waiver") for g in model.exceptions]
    # the engine cites default deny at the policy's own location (engine/domains/access.py)
    rules.append(RuleRef(policy.path, policy.location.line, policy.kind, "default-deny", "built-in"))
    return Enumerated(tuple(rules))


def _retention(policy: Policy) -> Enumerated:
    return Enumerated(
        tuple(RuleRef(r.location.file, r.location.line, policy.kind, r.id, "rule") for r in policy.extra.rules)
    )


def _escalation(policy: Policy) -> Enumerated:
    model = policy.extra
    rules = [RuleRef(c.location.file, c.location.line, policy.kind, c.id, "clock") for c in model.clocks]
    rules += [
        RuleRef(s.location.file, s.location.line, policy.kind, f"ladder-{s.level}", "ladder step") for s in model.ladder
    ]
    rules += [
        RuleRef(where.file, where.line, policy.kind, pid, "churn pattern")
        for pid, where in model.pattern_locations.items()
    ]
    rules += [
        RuleRef(where.file, where.line, policy.kind, f"priority-{tier}", "priority for tier")
        for tier, (_, _, where) in model.priority.items()
    ]
    return Enumerated(tuple(rules))


ENUMERATORS = {
    "classification": _classification,
    "access": _access,
    "retention": _retention,
    "escalation": _escalation,
}


def enumerate_rules(policy: Policy) -> Enumerated:
    """Every rule of ``policy`` that a decision can name as fired, and those it cannot."""
    shared = _shared(policy)
    special = ENUMERATORS.get(policy.kind)
    if special is None or policy.extra is None:
        return Enumerated(tuple(shared))
    found = special(policy)
    return Enumerated((*shared, *found.rules), found.unmeasured)


def policies_of(bundle: Any) -> list[Policy]:
    """Every policy of a bundle, over all its periods of effective dates (a rule in force only
    in 2026 is still a rule to test), the latest version of each first."""
    sets = [bundle.policies] + [p.policies for p in reversed(getattr(bundle, "periods", ()) or ())]
    return [compiled.policy for policies in sets for compiled in policies.values()]


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


def measure(policies: Iterable[Policy], exercised: set[RuleKey]) -> Coverage:
    """Coverage of ``policies`` by the (domain, rule id) pairs some case made fire."""
    out = Coverage()
    seen: set[RuleKey] = set()
    unmeasured: set[RuleKey] = set()
    for policy in policies:
        found = enumerate_rules(policy)
        domain = out.domains.setdefault(policy.kind, DomainCoverage(policy.kind))
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


def known_rules(policies: Iterable[Policy]) -> Mapping[str, set[str]]:
    """Rule ids by domain: what a case's ``fired:`` and ``not_fired:`` may name."""
    out: dict[str, set[str]] = {}
    for policy in policies:
        found = enumerate_rules(policy)
        out.setdefault(policy.kind, set()).update(r.id for r in found.rules)
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
