"""Decision-log benchmark: logged-decision throughput (SQLite, PostgreSQL) and replay throughput.

    .venv/bin/python bench/bench_log.py [--repeat 3] [--batch 256]

Logs the 2,000 example customers' tiering decisions, then the 500 example access requests
(whose records hold sealed sensitive values), into a fresh store; then replays the whole
log. PostgreSQL runs on a throwaway local server (``engine.testing.postgres``); pass
``--no-postgres`` to skip it. Medians over ``--repeat`` runs with the spread. Nothing is
asserted; ``--json FILE`` writes the figures. The ``per_cpu_s`` rows divide by this
process's CPU time instead of the wall clock (they leave out waiting for the disk, and for
the CPU on a busy machine: compare two versions by them when others share the machine).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from engine import Engine  # noqa: E402
from engine.audit import DecisionLog, Protector  # noqa: E402
from engine.audit.replay import Replayer  # noqa: E402
from engine.plugins import open_store  # noqa: E402

KEY = bytes(range(32))
NOW = datetime(2025, 6, 30, tzinfo=UTC)


def read(name: str) -> list[dict[str, Any]]:
    with open(ROOT / "examples" / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def one_run(url: str, batch: int, customers: list[dict[str, Any]], requests: list[dict[str, Any]]) -> dict[str, float]:
    store = open_store(url)
    engine = Engine(ROOT / "policies", log=DecisionLog(store, Protector(store, KEY)), log_batch=batch)
    engine.use_snapshot(engine.build_snapshot(customers, now=NOW))
    out, cpu = {}, {}
    for domain, items in (("tiering", customers), ("access", requests)):
        t, c = time.perf_counter(), time.process_time()
        n = sum(1 for _ in engine.evaluate_batch(domain, items, now=NOW))
        out[f"{domain}_logged_per_s"] = n / (time.perf_counter() - t)
        cpu[f"{domain}_logged_per_cpu_s"] = n / max(time.process_time() - c, 1e-9)
    t, c = time.perf_counter(), time.process_time()
    with Replayer(store, Protector(store, KEY)) as replayer:
        report = replayer.run()
    assert report.ok and report.same == len(customers) + len(requests)
    out["replay_per_s"] = report.total / (time.perf_counter() - t)
    cpu["replay_per_cpu_s"] = report.total / max(time.process_time() - c, 1e-9)
    store.close()
    return {**out, **cpu}


@contextlib.contextmanager
def fresh_database(server: str) -> Iterator[str]:
    name = "bench_" + uuid.uuid4().hex[:10]
    admin = sa.create_engine(server.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield server.replace("/postgres?", f"/{name}?")
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=256, help="decisions per durable append (default 256)")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    customers, requests = read("customers.jsonl"), read("requests/access.jsonl")
    results: dict[str, dict[str, dict[str, float]]] = {}

    def measure(backend: str, make_url: Any) -> None:
        runs = []
        for _ in range(args.repeat):
            with make_url() as url:
                runs.append(one_run(url, args.batch, customers, requests))
        results[backend] = {
            k: {
                "median": statistics.median(r[k] for r in runs),
                "min": min(r[k] for r in runs),
                "max": max(r[k] for r in runs),
            }
            for k in runs[0]
        }
        for k, v in results[backend].items():
            print(f"{backend:10} {k:26} {v['median']:10,.0f} /s  ({v['min']:,.0f}–{v['max']:,.0f})")

    @contextlib.contextmanager
    def sqlite_url() -> Iterator[str]:
        with tempfile.TemporaryDirectory() as d:
            yield f"sqlite:///{d}/log.db"

    measure("sqlite", sqlite_url)
    if not args.no_postgres:
        from engine.testing.postgres import installed, throwaway_postgres

        if installed():
            with throwaway_postgres() as server:
                measure("postgresql", lambda: fresh_database(server))
        else:
            print("postgresql: not installed, skipped")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
