"""Scaling benchmark: rule count, population size, all five domains on both cores.

    .venv/bin/python bench/bench_scale.py [--repeat 3] [--customers 1000000] [--json FILE]

* ``rules``: one access decision (a one-field record, classified, then granted or denied)
  under generated access policies of 10, 100, 1,000 and 10,000 grants spread over roles,
  classes, actions and purposes. Grants are indexed by role, class, action and purpose when
  the policy loads, so the cost should barely move with the count.
* ``memory``: tiering decisions for ``--customers`` customers streamed through
  ``evaluate_batch`` (made on the fly from the examples, new ids, never held), without a
  log: peak traced memory at 1%, 10% and 100% of the stream. Flat means it does not grow
  with the number of customers. Then the same for 60,000 customers with the log on (its
  caches — customers' data keys, detector results — fill up to their caps, then stay).
* ``snapshot``: a population snapshot of ``--snapshot-customers`` customers (default 10M)
  streamed in one pass, in a fresh process: time and peak RSS over the loaded engine (exact
  cut points in bounded memory). At about 40,000 customers/s, 10M take four minutes.
* ``all domains``: the example population through all five domains (tiering and
  classification of the 2,000 customers, the 500 example requests each of access,
  retention and escalation), logged to one SQLite file, by 1 and by 2 worker processes
  (each its own engine and connection; the log's write lock keeps one chain); decisions/s.
  Then a replay of that log (decisions/s).
* ``dask``: the distributed batch (``engine.distributed``) on a local Dask cluster of 1, then
  2 worker processes (``--dask-workers``): the snapshot of ``--dask-customers`` customers
  (default 1M, made on the workers from the examples, 50,000 a partition) and their tiering
  decisions written to Parquet (the whole decision as JSON too; then the outputs only), in
  customers/s and per worker, with each worker's peak RSS; the same in one process
  (``Engine.build_snapshot``, ``evaluate_batch`` without Parquet) for the ratio; the snapshot
  ids are checked equal. Then ``--dask-logged`` customers (default 100,000) logged to a
  throwaway PostgreSQL by every worker. Needs ``charter[scale]``.

Medians over ``--repeat`` runs with the spread; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import Engine  # noqa: E402
from engine.audit import DecisionLog, Protector, verify  # noqa: E402
from engine.audit.replay import Replayer  # noqa: E402
from engine.plugins import open_store  # noqa: E402

NOW = datetime(2025, 6, 30, tzinfo=UTC)
KEY = bytes(range(32))
CLASSES = {"basic": "gender", "commercially_sensitive": "credit_rating", "sensitive": "national_id"}
ACTIONS = ["read", "write", "export", "delete"]
PURPOSES = ["service", "sales", "marketing", "audit", "legal"]


def read(name: str) -> list[dict[str, Any]]:
    with open(ROOT / "examples" / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def spread(runs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(runs), "min": min(runs), "max": max(runs)}


# -- rules ---------------------------------------------------------------------------------------


def access_policy(grants: int, rng: random.Random) -> str:
    roles = max(2, grants // 10)
    lines = [
        "charter: 1",
        "kind: access",
        f"id: generated-{grants}",
        "uses:",
        "  classification: resource.record",
        f"actions: [{', '.join(ACTIONS)}]",
        f"purposes: [{', '.join(PURPOSES)}]",
        "roles:",
        *(f"  r{i}: {{}}" for i in range(roles)),
        "rules:",
    ]
    for g in range(grants):
        lines += [
            f"  - id: g{g}",
            f"    effect: {'deny' if rng.random() < 0.1 else 'allow'}",
            f"    roles: [r{rng.randrange(roles)}]",
            f"    classes: [{rng.choice(list(CLASSES))}]",
            f"    actions: [{rng.choice(ACTIONS)}]",
            f"    purposes: [{rng.choice(PURPOSES)}]",
        ]
    return "\n".join(lines) + "\n"


def bench_rules(repeat: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for grants in (10, 100, 1_000, 10_000):
        rng = random.Random(grants)
        d = Path(tempfile.mkdtemp(prefix="charter-rules-"))
        (d / "access.yaml").write_text(access_policy(grants, rng), encoding="utf-8")
        (d / "classification.yaml").write_bytes((ROOT / "policies" / "classification.yaml").read_bytes())
        t = time.perf_counter()
        engine = Engine(d)
        load_ms = (time.perf_counter() - t) * 1e3
        roles = max(2, grants // 10)
        requests = [
            {
                "id": f"q{i}",
                "subject": {"id": "u1", "roles": [f"r{rng.randrange(roles)}"]},
                "action": rng.choice(ACTIONS),
                "purpose": rng.choice(PURPOSES),
                "resource": {"customer": "C1", "record_type": "customer_profile", "record": {field: "x"}},
            }
            for i, field in enumerate(rng.choice(list(CLASSES.values())) for _ in range(2_000))
        ]
        program = engine.program("access")
        allowed = sum(program.evaluate(r, NOW).outputs["effect"] != "deny" for r in requests)
        runs = []
        for _ in range(repeat):
            t = time.perf_counter()
            for r in requests:
                program.evaluate(r, NOW)
            runs.append((time.perf_counter() - t) / len(requests) * 1e6)
        out[str(grants)] = {"us": spread(runs), "load_ms": load_ms, "allowed": allowed}
        print(
            f"rules     {grants:>6} grants: {statistics.median(runs):7.1f} µs per access decision "
            f"({min(runs):.1f}–{max(runs):.1f}); load {load_ms:,.0f} ms; {allowed} of 2,000 allowed"
        )
    return out


# -- memory --------------------------------------------------------------------------------------


def stream(customers: list[dict[str, Any]], count: int) -> Iterator[dict[str, Any]]:
    for i in range(count):
        c = dict(customers[i % len(customers)])
        c["id"] = f"S{i:09d}"
        yield c


def bench_memory(count: int, customers: list[dict[str, Any]]) -> dict[str, Any]:
    engine = Engine(ROOT / "policies")
    engine.use_snapshot(engine.build_snapshot(customers, now=NOW))
    marks = {max(1, count // 100), max(1, count // 10), count}
    peaks: dict[str, float] = {}
    tracemalloc.start()
    t = time.perf_counter()
    for i, _ in enumerate(engine.evaluate_batch("tiering", stream(customers, count), now=NOW), 1):
        if i in marks:
            peaks[str(i)] = tracemalloc.get_traced_memory()[1] / 1e3
    elapsed = time.perf_counter() - t
    tracemalloc.stop()
    print(
        "memory    streamed, no log: peak "
        + ", ".join(f"{v:,.0f} kB after {int(k):,}" for k, v in peaks.items())
        + f" customers ({count / elapsed:,.0f}/s traced)"
    )
    logged_count = 60_000
    d = Path(tempfile.mkdtemp(prefix="charter-mem-"))
    store = open_store(f"sqlite:///{d / 'log.db'}")
    engine = Engine(ROOT / "policies", log=DecisionLog(store, Protector(store, KEY)))
    engine.use_snapshot(engine.build_snapshot(customers, now=NOW))
    logged: dict[str, float] = {}
    tracemalloc.start()
    for i, _ in enumerate(engine.evaluate_batch("tiering", stream(customers, logged_count), now=NOW), 1):
        if i in (2_000, 20_000, logged_count):
            logged[str(i)] = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    store.close()
    print("memory    streamed, logged: peak " + ", ".join(f"{v:.1f} MB after {int(k):,}" for k, v in logged.items()))
    return {"no_log_peak_kb": peaks, "logged_peak_mb": logged}


# -- snapshot ------------------------------------------------------------------------------------


def snapshot_worker(count: int) -> tuple[float, float, float, float]:
    import resource

    customers = read("customers.jsonl")
    engine = Engine(ROOT / "policies")
    engine.build_snapshot(customers, now=NOW)  # warm: everything imported and compiled
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    snap = engine.build_snapshot(stream(customers, count), now=NOW)
    elapsed = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return elapsed, base, peak, snap.scores["value"].cuts[80.0]


def bench_snapshot(count: int) -> dict[str, Any]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # a fresh process: its peak RSS is this run's
        elapsed, base, peak, cut = pool.apply(snapshot_worker, (count,))
    print(
        f"snapshot  {count:,} customers streamed: {elapsed:,.1f} s ({count / elapsed:,.0f}/s); "
        f"peak RSS {peak:,.0f} MB ({peak - base:+,.0f} MB over the loaded engine); cut at 80 = {cut:,.2f}"
    )
    return {"customers": count, "seconds": elapsed, "rss_mb": peak, "rss_growth_mb": peak - base}


# -- all domains ---------------------------------------------------------------------------------


def workload() -> list[tuple[str, list[dict[str, Any]]]]:
    customers = read("customers.jsonl")
    return [
        ("tiering", customers),
        ("classification", customers),
        ("access", read("requests/access.jsonl")),
        ("retention", read("requests/retention.jsonl")),
        ("escalation", read("requests/escalation.jsonl")),
    ]


def worker(args: tuple[str, int, int]) -> int:
    url, part, parts = args
    customers = read("customers.jsonl")
    store = open_store(url)
    engine = Engine(ROOT / "policies", log=DecisionLog(store, Protector(store, KEY)))
    engine.use_snapshot(engine.build_snapshot(customers, now=NOW))  # every worker the same snapshot
    n = 0
    for domain, items in workload():
        n += sum(1 for _ in engine.evaluate_batch(domain, items[part::parts], now=NOW))
    store.close()
    return n


def bench_all_domains(repeat: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ctx = multiprocessing.get_context("spawn")
    for parts in (1, 2):
        runs = []
        for _ in range(repeat):
            d = Path(tempfile.mkdtemp(prefix="charter-all-"))
            url = f"sqlite:///{d / 'log.db'}"
            worker((url, 0, 10**9))  # warm: store the policy files, snapshot and plugin list once
            with ctx.Pool(parts) as pool:
                pool.map(len, [[]] * parts)  # processes started before the clock
                t = time.perf_counter()
                n = sum(pool.map(worker, [(url, k, parts) for k in range(parts)]))
                runs.append(n / (time.perf_counter() - t))
            store = open_store(url)
            rows = list(store.read())
            assert verify(rows).ok
            store.close()
        out[f"{parts}_process"] = spread(runs)
        print(
            f"all five  {parts} process(es), logged to SQLite: {statistics.median(runs):8,.0f} decisions/s "
            f"({min(runs):,.0f}–{max(runs):,.0f}), start-up of each worker included"
        )
    # replay of the last log
    store = open_store(url)
    t = time.perf_counter()
    with Replayer(store, Protector(store, KEY)) as replayer:
        report = replayer.run()
    rate = report.total / (time.perf_counter() - t)
    assert report.ok, report.to_dict(3)
    store.close()
    out["replay_per_s"] = rate
    print(f"replay    {report.total:,} decisions of all five domains: {rate:,.0f} decisions/s")
    return out


# -- dask ----------------------------------------------------------------------------------------

PARTITION = 50_000  # customers made and decided per task


def generated(part: int, count: int) -> list[dict[str, Any]]:
    """Partition ``part`` of a population of ``count`` customers, made on the worker."""
    customers = read("customers.jsonl")
    lo, hi = part * PARTITION, min(count, (part + 1) * PARTITION)
    return [{**customers[i % len(customers)], "id": f"S{i:09d}"} for i in range(lo, hi)]


def population_bag(count: int) -> Any:
    import dask
    import dask.bag as db

    return db.from_delayed([dask.delayed(generated)(p, count) for p in range(-(-count // PARTITION))])


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dask_run(
    workers: int, count: int, repeat: int, store_url: str | None = None, kinds: tuple[str, ...] = ("whole", "outputs")
) -> dict[str, Any]:
    from distributed import Client, LocalCluster

    from engine.distributed import evaluate_dask, snapshot_dask

    out: dict[str, list[float]] = {"snapshot": [], "whole": [], "outputs": [], "logged": []}
    ids = set()
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        warm = snapshot_dask(ROOT / "policies", "tiering", population_bag(2_000), now=NOW)  # engines loaded
        for _ in range(repeat if store_url is None else 1):
            d = Path(tempfile.mkdtemp(prefix="charter-dask-"))
            if store_url is not None:
                t = time.perf_counter()
                evaluate_dask(
                    ROOT / "policies",
                    "tiering",
                    population_bag(count),
                    now=NOW,
                    out=d / "o",
                    snapshot=warm,
                    store_url=store_url,
                    whole=False,
                )
                out["logged"].append(count / (time.perf_counter() - t))
                shutil.rmtree(d)
                continue
            t = time.perf_counter()
            snap = snapshot_dask(ROOT / "policies", "tiering", population_bag(count), now=NOW)
            out["snapshot"].append(count / (time.perf_counter() - t))
            ids.add(snap.id)
            for kind in kinds:
                t = time.perf_counter()
                evaluate_dask(
                    ROOT / "policies",
                    "tiering",
                    population_bag(count),
                    now=NOW,
                    out=d / kind,
                    snapshot=snap,
                    whole=kind == "whole",
                )
                out[kind].append(count / (time.perf_counter() - t))
            shutil.rmtree(d)
        rss = max(client.run(peak_rss_mb).values())
    return {"rates": {k: spread(v) for k, v in out.items() if v}, "peak_rss_mb": rss, "snapshot_ids": sorted(ids)}


def single_run(count: int) -> dict[str, Any]:
    engine = Engine(ROOT / "policies")
    customers = read("customers.jsonl")
    t = time.perf_counter()
    snap = engine.build_snapshot(stream(customers, count), now=NOW)
    snapshot_rate = count / (time.perf_counter() - t)
    engine.use_snapshot(snap)
    t = time.perf_counter()
    for _ in engine.evaluate_batch("tiering", stream(customers, count), now=NOW):
        pass
    return {"snapshot": snapshot_rate, "decide": count / (time.perf_counter() - t), "snapshot_id": snap.id}


def bench_dask(count: int, logged: int, workers: list[int], repeat: int, whole: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"single": single_run(count)}
    one = out["single"]
    print(
        f"dask      1 process, no Dask, {count:,} customers: snapshot {one['snapshot']:,.0f}/s, "
        f"tiering {one['decide']:,.0f}/s (no Parquet)"
    )
    for n in workers:
        run = out[f"{n}_workers"] = dask_run(n, count, repeat, kinds=("whole", "outputs") if whole else ("outputs",))
        r = run["rates"]
        assert run["snapshot_ids"] == [one["snapshot_id"]], (run["snapshot_ids"], one["snapshot_id"])
        whole_rate = (
            f"{r['whole']['median']:,.0f}/s whole ({r['whole']['median'] / n:,.0f}/s per worker), " if whole else ""
        )
        print(
            f"dask      {n} worker(s), {count:,} customers: snapshot {r['snapshot']['median']:,.0f}/s "
            f"({r['snapshot']['median'] / n:,.0f}/s per worker), tiering to Parquet {whole_rate}"
            f"{r['outputs']['median']:,.0f}/s outputs only ({r['outputs']['median'] / n:,.0f}/s per worker); "
            f"peak RSS per worker {run['peak_rss_mb']:,.0f} MB; snapshot id = the single process's"
        )
    base = out[f"{workers[0]}_workers"]["rates"]
    for n in workers[1:]:
        r = out[f"{n}_workers"]["rates"]
        ratios = {k: r[k]["median"] / base[k]["median"] for k in r if k in base}
        out[f"scaling_{workers[0]}_to_{n}"] = ratios
        print(
            f"dask      scaling {workers[0]} -> {n} workers: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items())
        )
    if logged:
        from engine.testing.postgres import throwaway_postgres

        os.environ["CHARTER_LOG_KEY"] = KEY.hex()  # the workers' log key: they inherit the environment

        for n in workers:
            with throwaway_postgres() as url:
                prime = open_store(url)  # the log's tables made once, before the workers race to
                prime.close()
                rate = dask_run(n, logged, 1, store_url=url)["rates"]["logged"]["median"]
            out[f"{n}_workers"]["logged_postgresql"] = rate
            print(
                f"dask      {n} worker(s), {logged:,} customers logged to PostgreSQL: {rate:,.0f}/s "
                f"({rate / n:,.0f}/s per worker)"
            )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--customers", type=int, default=1_000_000, help="customers streamed for the memory figure")
    ap.add_argument("--snapshot-customers", type=int, default=10_000_000, help="population for the snapshot figure")
    ap.add_argument("--only", choices=["rules", "memory", "snapshot", "all", "dask"], help="run one part")
    ap.add_argument("--dask-customers", type=int, default=1_000_000, help="population of the dask figures")
    ap.add_argument("--dask-workers", default="1,2", help="worker processes of each dask run, comma-separated")
    ap.add_argument("--dask-logged", type=int, default=100_000, help="customers logged to PostgreSQL (0: none)")
    ap.add_argument("--dask-outputs-only", action="store_true", help="skip the run writing whole decisions")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    figures: dict[str, Any] = {}
    if args.only in (None, "rules"):
        figures["rules"] = bench_rules(args.repeat)
    if args.only in (None, "memory"):
        figures["memory"] = bench_memory(args.customers, read("customers.jsonl"))
    if args.only in (None, "snapshot"):
        figures["snapshot"] = bench_snapshot(args.snapshot_customers)
    if args.only in (None, "all"):
        figures["all_domains"] = bench_all_domains(args.repeat)
    if args.only == "dask":  # not in the default run: it needs charter[scale] and takes minutes
        workers = [int(n) for n in args.dask_workers.split(",")]
        figures["dask"] = bench_dask(
            args.dask_customers, args.dask_logged, workers, args.repeat, whole=not args.dask_outputs_only
        )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
