"""Tiering three ways: Charter's compiled policy, a zen-engine decision graph, and Python by hand.

``tiering.jdm.json`` is ``policies/tiering.yaml`` written by hand as a zen-engine decision
graph (JDM): one expression node computes what the policy's scores and conditions need —
the ``clv`` scorer of ``plugins/scorers.py`` with its default arguments, the churn points,
and the time since the first and the last purchase from the ISO timestamps and ``now`` —
then decision tables decide value band (first hit, against cut points given as input),
lifecycle (first hit), risk level (first hit over rules listed most severe first, which is
what Charter's priority hit gives), risk flags (collect), monitoring and treatment (first
hit); a last expression node assembles the outputs, the fired rule ids in Charter's order
and the two scores.

zen-engine computes in decimal arithmetic and Python in binary floating point, so the two
CLV scores of a customer differ in the last digits. Cut points are scores of customers
(nearest rank), so a customer sitting exactly on one would change band with the other
engine's cut point. Each engine therefore ranks against cut points of its own scores of
the same population by the same nearest-rank rule (``zen_cut_points``); they are printed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import zen
from handwritten import tier  # bench/ is on sys.path: bench_peers.py and the tests put it there

from engine import Engine
from engine.population import Snapshot, cut_points

HERE = Path(__file__).resolve().parent
ZEN_KEY = "tiering.jdm.json"  # under HERE, for zen-engine's file-system loader
BANDS = (10.0, 50.0, 80.0)  # where the value bands of policies/tiering.yaml start
OUTPUTS = (
    "value_tier",
    "lifecycle_stage",
    "risk_level",
    "risk_flags",
    "monitored",
    "service_level",
    "contact_cadence_days",
    "loyalty_programme",
)


def iso(now: datetime) -> str:
    return now.isoformat().replace("+00:00", "Z")


def charter_cuts(engine: Any) -> dict[str, float]:
    """The value cut points of the engine's snapshot, as the zen graph's ``cuts`` input."""
    cuts = engine.snapshot.scores["value"].cuts
    return {f"p{int(p)}": cuts[p] for p in BANDS}


def zen_context(customer: Mapping[str, Any], now: datetime, cuts: Mapping[str, float]) -> dict[str, Any]:
    return {"customer": customer, "now": iso(now), "cuts": cuts}


def zen_cut_points(zen: Any, customers: Sequence[Mapping[str, Any]], now: datetime) -> dict[str, float]:
    """Nearest-rank cut points of zen-engine's own CLV scores of ``customers``."""
    dummy = {f"p{int(p)}": 0.0 for p in BANDS}
    values = [float(zen.evaluate(ZEN_KEY, zen_context(c, now, dummy))["result"]["scores"]["value"]) for c in customers]
    return {f"p{int(p)}": v for p, v in cut_points(values, BANDS).items()}


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def zen_engine() -> Any:
    """zen-engine loading ``tiering.jdm.json`` from this directory, compiled once and cached by key."""
    return zen.ZenEngine({"loader": {"type": "fs", "path": str(HERE)}})


def charter_engine(policy: Path, snapshot: Snapshot | None = None) -> Engine:
    engine = Engine([policy])
    if snapshot is not None:
        engine.use_snapshot(snapshot)
    return engine


@dataclass
class Tiering:
    """Everything the tiering workload needs: each engine loaded, each with its cut points."""

    customers: Sequence[Mapping[str, Any]]
    engine: Engine
    program: Any  # Charter's tiering program, bound to the snapshot
    zen: Any
    zen_cuts: dict[str, float]
    charter_cuts: dict[str, float]

    @property
    def hand_cuts(self) -> tuple[float, float, float]:
        p10, p50, p80 = (self.charter_cuts[f"p{int(p)}"] for p in BANDS)
        return (p10, p50, p80)


def setup(policy: Path, customers: Sequence[Mapping[str, Any]], now: datetime) -> Tiering:
    """Charter with a snapshot of ``customers``; zen-engine with cut points of its own scores of them."""
    engine = charter_engine(policy)
    engine.use_snapshot(engine.build_snapshot(customers, now=now))
    z = zen_engine()
    return Tiering(
        customers, engine, engine.program("tiering"), z, zen_cut_points(z, customers, now), charter_cuts(engine)
    )


def disagreements(t: Tiering, now: datetime, zen_cuts: Mapping[str, float] | None = None) -> list[str]:
    """Every customer on which zen-engine or the hand-written function differs from Charter, described.

    zen-engine must give the same eight outputs, the same fired rule ids in the same order
    and the same scores (to 1e-9, see the module docstring); the hand-written function the
    same outputs (it records no rules).
    """
    found: list[str] = []
    cuts = t.zen_cuts if zen_cuts is None else zen_cuts
    for c in t.customers:
        d = t.program.evaluate(c, now)
        z = t.zen.evaluate(ZEN_KEY, zen_context(c, now, cuts))["result"]
        for name in OUTPUTS:
            if z.get(name) != d.outputs[name]:
                found.append(f"{c['id']}: {name} is {d.outputs[name]!r} by Charter, {z.get(name)!r} by zen-engine")
        if tuple(z.get("fired", ())) != d.fired_ids:
            found.append(f"{c['id']}: Charter fired {list(d.fired_ids)}, zen-engine {z.get('fired')}")
        for score, value in d.scores.items():
            theirs = z.get("scores", {}).get(score)
            if theirs is None or not _close(float(theirs), value):
                found.append(f"{c['id']}: score {score} is {value!r} by Charter, {theirs!r} by zen-engine")
        mine = tier(c, now, t.hand_cuts)
        if mine != d.outputs:
            diff = sorted(k for k in OUTPUTS if mine.get(k) != d.outputs[k])
            found.append(f"{c['id']}: the hand-written function differs from Charter on {', '.join(diff)}")
    return found
