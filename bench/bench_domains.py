"""Per-domain decision latency over the example data: classification, access, retention, escalation.

    .venv/bin/python bench/bench_domains.py [--repeat 5]

For each domain, the mean time per decision over a loop through its example requests
(decisions include the upstream decisions they use: access classifies the record first,
escalation tiers the customer). Medians over ``--repeat`` runs, with the spread. Nothing is
asserted: figures are printed, and written as JSON with ``--json FILE``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import Engine  # noqa: E402

NOW = datetime(2025, 6, 30, tzinfo=UTC)
SOURCES = {
    "tiering": "customers.jsonl",
    "classification": "customers.jsonl",
    "access": "requests/access.jsonl",
    "retention": "requests/retention.jsonl",
    "escalation": "requests/escalation.jsonl",
}


def read(name: str) -> list[dict[str, Any]]:
    with open(ROOT / "examples" / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    engine = Engine(ROOT / "policies")
    engine.use_snapshot(engine.build_snapshot(read("customers.jsonl"), now=NOW))
    out: dict[str, Any] = {}
    for domain, source in SOURCES.items():
        requests = read(source)[:500]
        evaluate = engine.evaluate
        runs = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            for r in requests:
                evaluate(domain, r, now=NOW)
            runs.append((time.perf_counter() - t) / len(requests) * 1e6)
        out[domain] = {"median_us": statistics.median(runs), "min_us": min(runs), "max_us": max(runs)}
        print(f"{domain:26} {statistics.median(runs):8.1f} µs per decision ({min(runs):.1f}–{max(runs):.1f})")
    # a plain allow/deny access policy (bench/fixtures/plain_access: names only, no condition, no
    # waiver, no content detector), and evaluate_batch per decision beside the single calls above
    plain = Engine(ROOT / "bench" / "fixtures" / "plain_access")
    # escalation with the in-process matcher: the shipped policies with `event_backend: python`
    inproc_dir = Path(tempfile.mkdtemp(prefix="charter-bench-"))
    for f in (ROOT / "policies").glob("*.yaml"):
        text = f.read_text(encoding="utf-8")
        (inproc_dir / f.name).write_text(text.replace("event_backend: durable_rules", "event_backend: python"))
    inproc = Engine(inproc_dir)
    inproc.use_snapshot(inproc.build_snapshot(read("customers.jsonl"), now=NOW))
    for row, eng, domain, batch in (
        ("access (plain)", plain, "access", False),
        ("escalation (python)", inproc, "escalation", False),
        ("access batch", engine, "access", True),
        ("retention batch", engine, "retention", True),
        ("escalation batch", engine, "escalation", True),  # durable-rules: one worker message per chunk
        ("escalation batch (python)", inproc, "escalation", True),
    ):
        requests = read(SOURCES[domain])[:500]
        runs = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            if batch:
                for _decision in eng.evaluate_batch(domain, requests, now=NOW):
                    pass
            else:
                for r in requests:
                    eng.evaluate(domain, r, now=NOW)
            runs.append((time.perf_counter() - t) / len(requests) * 1e6)
        out[row] = {"median_us": statistics.median(runs), "min_us": min(runs), "max_us": max(runs)}
        print(f"{row:26} {statistics.median(runs):8.1f} µs per decision ({min(runs):.1f}–{max(runs):.1f})")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
