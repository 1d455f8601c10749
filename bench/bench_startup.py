"""Start-up time: ``import engine``, then loading the shipped policies (``Engine("policies")``).

    .venv/bin/python bench/bench_startup.py [--runs 7] [--policies DIR] [--json FILE]

Each run is a fresh Python process (nothing imported or cached in memory beforehand), timed
from inside: the import of ``engine``, then ``Engine(policies)`` with the installed plugins.
Medians over ``--runs`` processes, with the spread. Nothing is asserted: figures are printed,
and written as JSON with ``--json FILE``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# What each fresh process runs: the two timings, in seconds, as one JSON line on stdout.
PROBE = """
import json, sys, time
t0 = time.perf_counter()
import engine
t1 = time.perf_counter()
engine.Engine(sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1}))
"""


def run_once(policies: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(policies)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    times: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    times["total"] = times["import"] + times["load"]
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="fresh processes to time (default 7)")
    ap.add_argument("--policies", default=str(ROOT / "policies"), help="the policy directory to load")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    runs = [run_once(Path(args.policies)) for _ in range(max(1, args.runs))]
    out: dict[str, Any] = {"runs": len(runs)}
    for part in ("import", "load", "total"):
        ms = [r[part] * 1e3 for r in runs]
        out[part] = {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms)}
        print(f"{part:7} {statistics.median(ms):8.1f} ms median ({min(ms):.1f}–{max(ms):.1f}) over {len(ms)} runs")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
