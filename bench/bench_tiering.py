"""Tiering benchmark: single-decision latency, batch throughput, load+compile time.

    python3 tasks.py bench            # or: .venv/bin/python bench/bench_tiering.py [--repeat 7]

Every figure is the median over ``--repeat`` runs, with the spread (min–max) beside it.
Single-decision latency is measured two ways: the mean per call over a tight loop of
varied customers (the throughput view), and the distribution of individually timed calls
(median and p99; each includes ~50 ns of timer overhead). Nothing here is asserted: the
figures are printed, and written as JSON with ``--json FILE``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from engine import Engine  # noqa: E402

NOW = datetime(2025, 6, 30, tzinfo=UTC)


def load_customers() -> list[dict[str, Any]]:
    with open(ROOT / "examples" / "customers.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    customers = load_customers()
    n = len(customers)

    load_times = [timed(lambda: Engine(ROOT / "policies")) for _ in range(args.repeat)]
    engine = Engine(ROOT / "policies")
    engine.use_snapshot(engine.build_snapshot(customers, now=NOW))
    program = engine.program("tiering")
    evaluate = program.evaluate

    def loop(calls: int) -> None:
        for i in range(calls):
            evaluate(customers[i % n], NOW)

    loop(2_000)  # warm up
    per_call = [timed(lambda: loop(args.calls)) / args.calls * 1e6 for _ in range(args.repeat)]

    singles: list[float] = []
    clock = time.perf_counter_ns
    for i in range(args.calls * 2):
        c = customers[i % n]
        t0 = clock()
        evaluate(c, NOW)
        singles.append((clock() - t0) / 1000)
    singles.sort()
    p50 = singles[len(singles) // 2]
    p99 = singles[int(len(singles) * 0.99)]

    def batch() -> None:
        for _ in engine.evaluate_batch("tiering", customers, now=NOW):
            pass

    batch_rates = [n / timed(batch) for _ in range(args.repeat)]

    # the same policy written by hand: check it agrees everywhere, then time it the same way
    from handwritten import tier

    snap = engine.snapshot
    assert snap is not None
    cuts = tuple(snap.scores["value"].cuts[p] for p in (10.0, 50.0, 80.0))
    for c in customers:
        assert tier(c, NOW, cuts) == evaluate(c, NOW).outputs, c["id"]  # type: ignore[arg-type]
    hand = [
        timed(lambda: [tier(customers[i % n], NOW, cuts) for i in range(args.calls)]) / args.calls * 1e6
        for _ in range(args.repeat)
    ]
    explain = [timed(lambda: [evaluate(c, NOW, explain=True) for c in customers]) / n * 1e6 for _ in range(args.repeat)]

    results = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "customers": n,
        "load_compile_ms": spread([t * 1e3 for t in load_times]),
        "tiering_us_per_call": spread(per_call),
        "tiering_single_us": {"median": p50, "p99": p99},
        "tiering_explain_us_per_call": spread(explain),
        "tiering_batch_per_s": spread(batch_rates),
        "handwritten_us_per_call": spread(hand),
    }
    print(f"tiering over {n} example customers, {args.repeat} runs, CPython {platform.python_version()}")
    print(f"  load + compile policies    {results['load_compile_ms']['median']:8.2f} ms")
    print(
        f"  decision, loop mean        {results['tiering_us_per_call']['median']:8.2f} µs "
        f"(runs {min(per_call):.2f}–{max(per_call):.2f})"
    )
    print(f"  decision, single call      {p50:8.2f} µs median, {p99:.2f} µs p99")
    print(f"  decision with --explain    {results['tiering_explain_us_per_call']['median']:8.2f} µs")
    print(f"  batch (evaluate_batch)     {results['tiering_batch_per_s']['median']:8,.0f} customers/s")
    ratio = results["tiering_us_per_call"]["median"] / results["handwritten_us_per_call"]["median"]
    print(
        f"  the same policy by hand    {results['handwritten_us_per_call']['median']:8.2f} µs per call "
        f"(agrees on all {n}); Charter takes {ratio:.1f}x as long "
        "while also checking every fact and recording the rules that fired"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
