"""``--facts``: what the edit does to decisions.

Both policy sets decide for the same customers (or requests), ranked against one population
snapshot where a policy ranks customers, and the decisions that change are counted.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.api import Engine
from engine.core.decision import Decision
from engine.core.domain import Domain, requests_about
from engine.errors import CharterError, FactErrors, did_you_mean
from engine.inputs import parse_now, read_facts
from engine.population import Snapshot
from engine.workbench.diff.changes import Report
from engine.workbench.diff.structure import _scalars


@dataclass
class Impact:
    """Decisions of the old and the new policies over one facts file, compared."""

    domain: str
    now: datetime
    facts: str
    total: int = 0
    changed: int = 0
    reasons_only: int = 0  # same outputs, other rules fired
    bad: Counter[str] = field(default_factory=Counter)  # "both", "old" (only), "new" (only)
    by_output: dict[str, Counter[str]] = field(default_factory=dict)
    sample: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    snapshots: dict[str, str] = field(default_factory=dict)  # the population snapshot each side ranked against

    def add(self, facts: Any, old: Decision | CharterError, new: Decision | CharterError, sample: int) -> None:
        self.total += 1
        if not isinstance(old, Decision) or not isinstance(new, Decision):
            self.bad["new" if isinstance(old, Decision) else "old" if isinstance(new, Decision) else "both"] += 1
            for which, result in (("old", old), ("new", new)):
                if isinstance(result, CharterError) and not isinstance(result, FactErrors):
                    self._note(f"the {which} policy could not decide: {result}")
            return
        if old.outputs == new.outputs:
            self.reasons_only += old.fired_ids != new.fired_ids
            return
        self.changed += 1
        before, after = old.to_dict()["outputs"], new.to_dict()["outputs"]
        moved = {k: (before.get(k), after.get(k)) for k in dict.fromkeys([*before, *after])}
        moved = {k: v for k, v in moved.items() if v[0] != v[1]}
        for name, (a, b) in moved.items():
            self.by_output.setdefault(name, Counter())[_transition(a, b)] += 1
        if len(self.sample) < sample:
            subject = new.subject or (facts.get("id") if isinstance(facts, dict) else None)
            outputs = {k: {"old": a, "new": b} for k, (a, b) in moved.items()}
            fired = {"fired_before": list(old.fired_ids), "fired_after": list(new.fired_ids)}
            self.sample.append({"subject": subject, "outputs": outputs, **fired})

    def _note(self, text: str) -> None:
        if text not in self.notes and len(self.notes) < 10:  # one of each, not one per customer
            self.notes.append(text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "now": self.now.isoformat().replace("+00:00", "Z"),
            "facts": self.facts,
            "total": self.total,
            "changed": self.changed,
            "same_outcome_other_rules": self.reasons_only,
            "bad_facts": {"both": self.bad["both"], "old_only": self.bad["old"], "new_only": self.bad["new"]},
            "by_output": {k: dict(v.most_common()) for k, v in self.by_output.items()},
            "sample": self.sample,
            "notes": self.notes,
            "snapshots": self.snapshots,
        }


def _transition(old: Any, new: Any) -> str:
    def brief(v: Any) -> str | None:
        simple = not isinstance(v, (list, dict)) or _scalars(v)
        text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        return text if simple and len(text) <= 60 else None

    a, b = brief(old), brief(new)
    return f"{a} -> {b}" if a is not None and b is not None else "changed"


def _decide(engine: Engine, domain: str, facts: Any, now: datetime) -> Decision | CharterError:
    try:
        return engine.evaluate(domain, facts, now=now)
    except CharterError as exc:  # bad facts above all; counted, never fatal
        return exc


def measure_impact(report: Report, args: argparse.Namespace) -> Impact:
    """Decide every customer (or request) of ``args.facts`` with both policy sets."""
    if args.domain is None:
        args.domain = report.new_engine.default_domain()
    old, new, domain = report.old_engine, report.new_engine, args.domain
    for engine, which in ((old, "old"), (new, "new")):
        if domain not in engine.domains:
            raise CharterError(
                f"the {which} policies have no `{domain}` policy",
                code="C041",
                hint=did_you_mean(domain, engine.domains)
                or "pass `--domain` with one of: " + ", ".join(engine.domains),
            )
    now = parse_now(args.now)
    impact = Impact(domain, now, args.facts)
    _share_snapshot(impact, old, new, args)
    declared = {**new.program(domain).policy.facts, **old.program(domain).policy.facts}
    for facts in read_facts(args.facts, "auto", declared):
        impact.add(facts, _decide(old, domain, facts, now), _decide(new, domain, facts, now), args.sample)
    return impact


def measure_impacts(report: Report, args: argparse.Namespace) -> list[Impact]:
    """``--facts``: one ``Impact`` per domain decided. With ``--domain``, or when no loaded
    policy ranks customers, that one domain (``measure_impact``). Without it the facts are
    customers, and every domain decides what it decides about each of them
    (``engine.core.domain.requests_about``, as ``POST /v1/customer`` does): the one that ranks
    them first, the others in dependency order; a domain that needs more than a customer's
    facts (a request, a ticket) decides nothing and says so."""
    if args.domain is not None or not report.new_engine.ranking_domains():
        return [measure_impact(report, args)]
    old, new = report.old_engine, report.new_engine
    args.domain = new.default_ranking_domain()
    now = parse_now(args.now)
    impacts = {args.domain: Impact(args.domain, now, args.facts)}
    _share_snapshot(impacts[args.domain], old, new, args)
    makers = {which: _makers(engine) for which, engine in (("old", old), ("new", new))}
    for kind in dict.fromkeys([*makers["new"], *makers["old"]]):
        impact = impacts.setdefault(kind, Impact(kind, now, args.facts))
        if kind not in makers["old"] or kind not in makers["new"]:
            impact.notes.append(f"only the {'new' if kind in makers['new'] else 'old'} policies have it: not compared")
    both = {k: d for k, d in makers["new"].items() if k in makers["old"]}
    declared = {**new.program(args.domain).policy.facts, **old.program(args.domain).policy.facts}
    for customer in read_facts(args.facts, "auto", declared):
        before = _about(old, customer, {k: makers["old"][k] for k in both}, now)
        after = _about(new, customer, both, now)
        for (kind, request, a), (_, _, b) in zip(before, after, strict=False):
            impacts[kind].add(request, a, b, args.sample)
    for impact in impacts.values():
        if not impact.total and not impact.notes:
            impact.notes.append(
                "nothing to decide from a customer's facts alone: pass `--domain` and a file of its requests"
            )
    return list(impacts.values())


def _makers(engine: Engine) -> dict[str, Domain]:
    """The loaded domains that decide something about a customer, by kind, in dependency order."""
    known = engine.registry.domains
    return {k: known[k] for k in engine.domains if k in known and known[k].customer_requests is not None}


def _about(
    engine: Engine, customer: Mapping[str, Any], domains: Mapping[str, Domain], now: datetime
) -> list[tuple[str, Any, Decision | CharterError]]:
    """Every decision about one customer: (kind, request, decision or error), in the order of
    ``requests_about``, each domain reading the outputs decided before it."""
    made: list[tuple[str, Any, Decision | CharterError]] = []
    earlier: dict[str, Any] = {}
    for kind, request, _ in requests_about(customer, {}, domains, earlier):
        decided = _decide(engine, kind, request, now)
        made.append((kind, request, decided))
        for name, value in decided.outputs.items() if isinstance(decided, Decision) else ():
            earlier.setdefault(name, value)
    return made


def _share_snapshot(impact: Impact, old: Engine, new: Engine, args: argparse.Namespace) -> None:
    """Rank both policy sets against one population snapshot, built once with the old policy."""
    engines = {"old": old, "new": new}
    ranks = {which: e.ranking_domain(args.domain) for which, e in engines.items()}
    if ranks["old"] is None and ranks["new"] is None:
        return
    source = args.population or (args.facts if args.domain in ranks.values() else None)
    if source is None or source == "-":
        raise CharterError(
            f"the `{ranks['old'] or ranks['new']}` policy ranks customers, so `{args.domain}` needs a population",
            code="C042",
            hint="pass `--population CUSTOMERS_FILE`",
        )
    builder = "old" if ranks["old"] else "new"
    snap = _snapshot(engines[builder], ranks[builder] or "", source, impact.now)
    for which, engine in engines.items():
        if ranks[which]:
            engine.use_snapshot(snap)
            impact.snapshots[which] = snap.id
    impact.notes.append(
        f"ranked against population snapshot {snap.id[:16]}… of {source}, built with the {builder} policy"
    )
    problem = _misfit(snap, new, ranks["new"]) if ranks["new"] and builder == "old" else None
    if problem is None:
        impact.notes[-1] += ", used for both" if ranks["old"] and ranks["new"] else ""
        return
    own = _snapshot(new, ranks["new"] or "", source, impact.now)
    new.use_snapshot(own)
    impact.snapshots["new"] = own.id
    impact.notes.append(
        f"{problem}: the new policy ranks against its own snapshot {own.id[:16]}… of the same customers"
    )


def _snapshot(engine: Engine, domain: str, source: str, now: datetime) -> Snapshot:
    customers = read_facts(source, "auto", engine.program(domain).policy.facts)
    return engine.build_snapshot(customers, now=now, domain=domain)


def _misfit(snap: Snapshot, engine: Engine, domain: str) -> str | None:
    """Why ``snap`` (built with the old policy) cannot rank customers for the new one."""
    program = engine.program(domain)
    for score, wanted in program.policy.percentiles().items():
        cuts = snap.scores.get(score)
        if cuts is None or cuts.definition != program.compiled.score_digests[score]:
            return f"score `{score}` is new or defined differently in the new policy, so the old snapshot does not fit"
        missing = [p for p in wanted if p not in cuts.cuts]
        if missing:
            listed = ", ".join(f"{p:g}" for p in missing)
            return f"the new bands need percentile {listed} of `{score}`, which the snapshot does not hold"
    return f"the old snapshot does not fit the new policy: {program.unbound}" if program.unbound else None
