"""Charter next to its peers: the same workloads on Charter, pycasbin and GoRules zen-engine.

    .venv/bin/pip install -e '.[bench]'                      # pycasbin and zen-engine
    taskset -c 1 .venv/bin/python bench/bench_peers.py --repeat 5 [--json FILE] [--dump DIR]

Every engine first decides every input and the decisions are compared one by one; any
disagreement is printed and the script exits 1. Then each engine runs the same loop,
``for args in inputs: decide(*args)``, ``--repeat`` times (the engines take turns, so
machine noise spreads over all of them); a figure is the median of the runs' mean time
per decision, with the spread (min–max). Load time is from the policy files to the first
decision, so lazy compilation is counted (Charter's tiering load also binds the population
snapshot, built beforehand). Nothing is asserted about speed.

Tiering (``policies/tiering.yaml``, the 2,000 example customers, now 2025-06-30T00:00:00Z).
Inside the timed region:

* Charter, ``program.evaluate(customer, now)`` — the program ``Engine.evaluate`` runs:
  checks every fact, parses the two timestamps, computes the ``clv`` and churn scores,
  ranks the CLV against the snapshot's cut points, runs the five tables and returns a
  ``Decision`` (outputs, fired rules with messages and clauses, scores, versions).
* zen-engine, ``ZenEngine.evaluate("tiering.jdm.json", {customer, now, cuts})`` over
  ``bench/peers/tiering.jdm.json``: converts the context from Python, parses the two
  timestamps and ``now``, computes CLV and churn in its expression language, runs six
  decision tables and returns outputs, fired rule ids and scores as a Python dict. The
  three cut points travel in the context (built outside the timed loop); they come from
  zen-engine's own CLV scores of the same population (see ``bench/peers/tiering.py``).
* hand-written, ``bench/handwritten.py``'s ``tier(customer, now, cuts)``: the same
  outputs, no fact checks, no record of the rules.

Both engines get the whole customer record; a second line gives each only the facts the
policy declares, trimmed outside the timed loop.

Access control (the rules of ``policies/access.yaml`` that have no condition; no waivers),
one request per (subject roles, field, action, purpose), every combination covered:

* Charter, ``program.evaluate(request, now)`` on a policy directory holding those rules and
  the shipped classification: checks the request, expands inherited roles, classifies the
  record's one field by its name (the peers are given the class), decides the field
  (allow, mask or deny, with the deciding rule and obligations) and returns a ``Decision``.
* pycasbin, ``Enforcer.enforce(subject, class, action, purpose)``: tries each policy line
  with its matcher, role inheritance through ``g``, deny overrides allow; ``FastEnforcer``
  first narrows the policy to the lines of the request's class, action and purpose.
* zen-engine, ``ZenEngine.evaluate("access.json", {roles, cls, action, purpose})``: one
  first-hit decision table (denies first); returns the effect and the deciding rule.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from engine import Engine  # noqa: E402

NOW = datetime(2025, 6, 30, tzinfo=UTC)
SHOWN = 10  # disagreements printed per workload


def spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def loop_us(runs: Mapping[str, tuple[Callable[..., Any], Sequence[tuple[Any, ...]]]], repeat: int) -> dict[str, Any]:
    """Mean µs per decision of ``for args in inputs: decide(*args)``, engine by engine in turn, per run."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for decide, inputs in runs.values():  # warm up: caches, branch predictors, lazy compilation
        for args in inputs[:200]:
            decide(*args)
    for _ in range(repeat):
        for name, (decide, inputs) in runs.items():
            start = time.perf_counter()
            for args in inputs:
                decide(*args)
            times[name].append((time.perf_counter() - start) / len(inputs) * 1e6)
    return {name: spread(t) for name, t in times.items()}


def load_ms(makers: Mapping[str, Callable[[], Any]], repeat: int) -> dict[str, Any]:
    """ms from the policy files to the first decision, engine by engine in turn, per run."""
    times: dict[str, list[float]] = {name: [] for name in makers}
    for _ in range(repeat):
        for name, make in makers.items():
            start = time.perf_counter()
            make()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: spread(t) for name, t in times.items()}


def read_customers() -> list[dict[str, Any]]:
    with open(ROOT / "examples" / "customers.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# --------------------------------------------------------------------------------------------
# workloads
# --------------------------------------------------------------------------------------------


def tiering(repeat: int) -> dict[str, Any]:
    from handwritten import tier
    from peers import tiering as tie

    policy = ROOT / "policies" / "tiering.yaml"
    customers = read_customers()
    t = tie.setup(policy, customers, NOW)
    found = tie.disagreements(t, NOW)
    declared = set(t.program.policy.facts)
    trimmed = [{k: v for k, v in c.items() if k in declared} for c in customers]
    zen_eval, charter_eval = t.zen.evaluate, t.program.evaluate
    key, cuts, hand_cuts = tie.ZEN_KEY, t.zen_cuts, t.hand_cuts
    speed = loop_us(
        {
            "Charter": (charter_eval, [(c, NOW) for c in customers]),
            "zen-engine": (zen_eval, [(key, tie.zen_context(c, NOW, cuts)) for c in customers]),
            "hand-written": (tier, [(c, NOW, hand_cuts) for c in customers]),
            "Charter, declared facts only": (charter_eval, [(c, NOW) for c in trimmed]),
            "zen-engine, declared facts only": (zen_eval, [(key, tie.zen_context(c, NOW, cuts)) for c in trimmed]),
        },
        repeat,
    )
    snapshot, first, first_ctx = t.engine.snapshot, customers[0], tie.zen_context(customers[0], NOW, cuts)
    load = load_ms(
        {
            "Charter": lambda: tie.charter_engine(policy, snapshot).program("tiering").evaluate(first, NOW),
            "zen-engine": lambda: tie.zen_engine().evaluate(key, first_ctx),
        },
        repeat,
    )
    worst = max(abs(t.zen_cuts[p] - t.charter_cuts[p]) / t.charter_cuts[p] for p in t.charter_cuts)
    return {
        "inputs": len(customers),
        "declared_facts": len(declared),
        "us_per_decision": speed,
        "load_to_first_decision_ms": load,
        "cut_points": {"Charter": t.charter_cuts, "zen-engine": t.zen_cuts, "max_relative_difference": worst},
        "disagreements": found,
    }


def access(repeat: int, count: int, seed: int, dump: str | None) -> dict[str, Any]:
    from peers import access as acc

    with tempfile.TemporaryDirectory(prefix="charter-peers-") as tmp:
        a = acc.setup(ROOT / "policies", Path(dump or tmp), count, seed, NOW)
        found, allowed = acc.disagreements(a, NOW)
        runs: dict[str, tuple[Callable[..., Any], Sequence[tuple[Any, ...]]]] = {
            "Charter": (a.charter.evaluate, [(r.charter, NOW) for r in a.requests]),
        }
        runs.update({name: (e.enforce, [r.casbin for r in a.requests]) for name, e in a.casbin.items()})
        runs["zen-engine"] = (a.zen.evaluate, [(acc.ZEN_KEY, r.zen) for r in a.requests])
        speed = loop_us(runs, repeat)
        first = a.requests[0]
        load = load_ms(
            {
                "Charter": lambda: Engine(a.files.charter).program("access").evaluate(first.charter, NOW),
                "pycasbin": lambda: acc.casbin_enforcer(a.files).enforce(*first.casbin),
                "pycasbin FastEnforcer": lambda: acc.casbin_enforcer(a.files, fast=True).enforce(*first.casbin),
                "zen-engine": lambda: acc.zen_engine(a.files).evaluate(acc.ZEN_KEY, first.zen),
            },
            repeat,
        )
        casbin_lines = sum(1 for line in a.files.casbin_policy.read_text().splitlines() if line.startswith("p,"))
    return {
        "inputs": len(a.requests),
        "rules": [g.id for g in a.model.grants],
        "left_out": list(a.model.left_out),
        "casbin_policy_lines": casbin_lines,
        "allowed": allowed,
        "us_per_decision": speed,
        "load_to_first_decision_ms": load,
        "disagreements": found,
    }


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def show(result: Mapping[str, Any], names: Sequence[str]) -> None:
    speed, load = result["us_per_decision"], result["load_to_first_decision_ms"]
    print(f"  {'':32} {'µs per decision':>16} {'(runs)':>17}   {'load to 1st decision':>20}")
    for name in names:
        s = speed[name]
        runs = f"({s['min']:.1f}–{s['max']:.1f})"
        loaded = f"{load[name]['median']:8.1f} ms" if name in load else ""
        print(f"  {name:32} {s['median']:16.1f} {runs:>17}   {loaded:>20}")


def ratio(result: Mapping[str, Any], peer: str, charter: str = "Charter") -> float:
    """How many times as long ``peer`` takes as ``charter`` per decision (medians)."""
    speed = result["us_per_decision"]
    return float(speed[peer]["median"] / speed[charter]["median"])


def faster(result: Mapping[str, Any], peer: str, charter: str = "Charter", label: str = "") -> str:
    """``Charter is 7.8x faster than zen-engine``, or the other way round when Charter is slower."""
    r, label = ratio(result, peer, charter), label or peer
    return f"Charter is {r:.1f}x faster than {label}" if r >= 1.0 else f"{label} is {1 / r:.1f}x faster than Charter"


def agreement(result: Mapping[str, Any], engines: str, what: str) -> None:
    found = result["disagreements"]
    if not found:
        print(f"  agreement: all {result['inputs']:,} decisions identical ({engines}: {what})")
        return
    print(f"  DISAGREEMENT: {len(found):,} differences over {result['inputs']:,} decisions ({engines}: {what})")
    for line in found[:SHOWN]:
        print(f"    {line}")
    if len(found) > SHOWN:
        print(f"    … and {len(found) - SHOWN:,} more")


def report(results: Mapping[str, Any], repeat: int) -> None:
    m = results["machine"]
    print(
        f"Charter next to its peers: CPython {m['python']}, pycasbin {m['pycasbin']}, zen-engine {m['zen-engine']}; "
        f"median of {repeat} runs, each the mean over a loop of single decisions"
    )
    t = results["tiering"]
    print(f"\ntiering: {t['inputs']:,} example customers, now {NOW.isoformat().replace('+00:00', 'Z')}")
    show(t, ["Charter", "zen-engine", "hand-written"])
    print(f"  with only the {t['declared_facts']} declared facts in each record (trimmed outside the timed loop):")
    show(t, ["Charter, declared facts only", "zen-engine, declared facts only"])
    hand = t["us_per_decision"]["hand-written"]["median"]
    trimmed = faster(t, "zen-engine, declared facts only", "Charter, declared facts only", "zen-engine")
    print(f"  {faster(t, 'zen-engine')} (declared facts only: {trimmed});")
    print(
        f"  Charter takes {t['us_per_decision']['Charter']['median'] / hand:.1f}x as long as the hand-written function"
    )
    print("  timed: Charter checks facts, parses timestamps, scores CLV and churn, runs the tables, builds a Decision;")
    print("         zen-engine converts the context, parses timestamps, computes CLV and churn, runs its tables;")
    print("         hand-written computes the same outputs only. Nothing is precomputed for any engine.")
    cuts = t["cut_points"]
    print(
        "  cut points p10/p50/p80: "
        + "; ".join(f"{who} " + "/".join(f"{v:.2f}" for v in cuts[who].values()) for who in ("Charter", "zen-engine"))
        + f" (each from its own CLV scores; largest relative difference {cuts['max_relative_difference']:.1e})"
    )
    agreement(t, "Charter, zen-engine, hand-written", "eight outputs; fired rule ids and scores for zen-engine")

    a = results["access"]
    print(
        f"\naccess control: {a['inputs']:,} requests, {len(a['rules'])} unconditional rules of policies/access.yaml "
        f"({a['casbin_policy_lines']} pycasbin policy lines); left out: {', '.join(a['left_out'])}"
    )
    show(a, ["Charter", "pycasbin", "pycasbin FastEnforcer", "zen-engine"])
    print(f"  {faster(a, 'pycasbin')}; {faster(a, 'pycasbin FastEnforcer')}; {faster(a, 'zen-engine')}")
    print("  timed: Charter checks the request, classifies the field by name, decides it, builds a Decision;")
    print("         the peers are given the field's class and return allow/deny (zen-engine: effect and rule).")
    allowed = ", ".join(f"{k} {v:,}" for k, v in a["allowed"].items())
    agreement(a, "Charter, pycasbin, zen-engine", f"allowed or not; effect and rule for zen-engine; allowed: {allowed}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--requests", type=int, default=3000, help="access requests (at least every combination once)")
    ap.add_argument("--seed", type=int, default=2025, help="seed for the access subjects, fields and requests")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument(
        "--dump", help="keep the generated access policies (Charter, pycasbin, zen-engine) in this directory"
    )
    args = ap.parse_args()
    try:
        import casbin  # type: ignore[import-untyped]  # noqa: F401  # pycasbin ships no type information
        import zen  # noqa: F401
    except ImportError as exc:
        print(f"bench_peers needs pycasbin and zen-engine: {exc}; run .venv/bin/pip install -e '.[bench]'")
        return 2
    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "pycasbin": version("casbin"),
            "zen-engine": version("zen-engine"),
        },
        "repeat": args.repeat,
        "tiering": tiering(args.repeat),
        "access": access(args.repeat, args.requests, args.seed, args.dump),
    }
    t, a = results["tiering"], results["access"]
    results["ratios"] = {  # how many times as long the other takes per decision as Charter (>1: Charter is faster)
        "tiering": {
            "zen-engine": ratio(t, "zen-engine"),
            "zen-engine, declared facts only": ratio(
                t, "zen-engine, declared facts only", "Charter, declared facts only"
            ),
            "hand-written": ratio(t, "hand-written"),
        },
        "access": {name: ratio(a, name) for name in ("pycasbin", "pycasbin FastEnforcer", "zen-engine")},
    }
    report(results, args.repeat)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 1 if results["tiering"]["disagreements"] or results["access"]["disagreements"] else 0


if __name__ == "__main__":
    sys.exit(main())
