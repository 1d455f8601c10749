"""The distributed batch (engine.distributed) on a real local Dask cluster of worker processes.

The snapshot computed across partitions is the single process's (same cut points, same id)
for random populations cut into random partitions; the decisions the workers make, log and
write to Parquet are the single process's; `charter evaluate --on` writes them too.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import NOW, POLICIES, ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Engine
from engine.errors import CharterError

dask = pytest.importorskip("dask")
pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")

import dask.bag as db  # noqa: E402
import dask.dataframe as dd  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

from engine.distributed import evaluate_dask, files, snapshot_dask  # noqa: E402

RANKED = """\
charter: 1
kind: tiering
id: ranked
facts:
  id: {type: string, required: true}
  x: {type: number, required: true}
  k: {type: number, default: 1}
  last_purchase_at: {type: timestamp, required: true}
  purchases_12m: {type: integer, min: 0, required: true}
  annual_sales: {type: number, min: 0, required: true}
scores:
  s: {expr: "customer.x * customer.k"}
  rfm: {scorer: rfm}
outputs:
  band: {type: string, values: [top, mid, low]}
  champion: {type: boolean}
bands:
  - id: by-s
    output: band
    score: s
    bands:
      - {id: top, value: top, from: 90, to: 100}
      - {id: mid, value: mid, from: 33.3, to: 90}
      - {id: low, value: low, from: 0, to: 33.3}
tables:
  - id: champions
    hit: first
    output: champion
    default: false
    rules:
      - {id: champion, when: scores.rfm >= 444.0, then: true}
"""


def read(name: str) -> list[dict[str, Any]]:
    with (ROOT / "examples" / name).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def ranked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ranked")
    (d / "tiering.yaml").write_text(RANKED, encoding="utf-8")
    return d


def bag(records: list[dict[str, Any]], cuts: list[int]) -> Any:
    """``records`` as a dask bag cut at ``cuts`` (empty partitions included)."""
    bounds = [0, *sorted(min(c, len(records)) for c in cuts), len(records)]
    chunks = [records[a:b] for a, b in itertools.pairwise(bounds)]
    return db.from_delayed([dask.delayed(chunk) for chunk in chunks])


# values with ties, both zeros, negatives and the extremes: where an order could differ
X = st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, 1e300, -1e300, 3.0, 3.0, 7.25])
CUSTOMER = st.fixed_dictionaries(
    {
        "x": X,
        "k": st.sampled_from([1.0, 0.0, -1.0, 0.5]),
        "purchases_12m": st.integers(0, 30),
        "annual_sales": st.sampled_from([0.0, 10.0, 99.5, 1000.0, 1000.0]),
        "last_purchase_at": st.sampled_from(["2025-06-01T00:00:00Z", "2024-12-31T23:00:00Z", "2025-06-29T12:00:00Z"]),
        "bad": st.booleans() | st.just(False),  # a bad customer: skipped and counted
    }
)


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(population=st.lists(CUSTOMER, min_size=1, max_size=120), cuts=st.lists(st.integers(0, 120), max_size=6))
def test_the_distributed_snapshot_is_the_single_process_one(
    client: Client, ranked: Path, population: list[dict[str, Any]], cuts: list[int]
) -> None:
    records = [
        {"id": f"C{i}", **{k: v for k, v in c.items() if k != "bad"}, **({"purchases_12m": -1} if c["bad"] else {})}
        for i, c in enumerate(population)
    ]
    engine = Engine(ranked)
    if all(c["bad"] for c in population):
        with pytest.raises(CharterError) as single:
            engine.build_snapshot(records, now=NOW)
        with pytest.raises(CharterError) as spread:
            snapshot_dask(engine, "tiering", bag(records, cuts), now=NOW)
        assert spread.value.code == single.value.code == "S006"
        return
    want = engine.build_snapshot(records, now=NOW)
    got = snapshot_dask(ranked, "tiering", bag(records, cuts), now=NOW)
    assert got.canonical() == want.canonical()
    assert got.id == want.id
    assert got.skipped == sum(c["bad"] for c in population)


def single(domain: str, items: list[dict[str, Any]], snapshot: Any) -> list[dict[str, Any]]:
    engine = Engine(POLICIES, snapshot=snapshot)
    return [d.to_dict() for d in engine.evaluate_batch(domain, items, now=NOW)]


def parquet(out: Path) -> Any:
    return dd.read_parquet(out).compute().reset_index(drop=True)


@pytest.mark.parametrize("domain", ["tiering", "classification", "access", "retention", "escalation"])
def test_distributed_decisions_are_the_single_process_ones(
    client: Client, customers: list[dict[str, Any]], tmp_path: Path, domain: str
) -> None:
    items = customers if domain in ("tiering", "classification") else read(f"requests/{domain}.jsonl")
    snapshot = snapshot_dask(POLICIES, "tiering", bag(customers, [300, 301, 1500]), now=NOW)
    if domain == "tiering":  # a dask dataframe, as read from a table
        data: Any = dd.from_pandas(pd.DataFrame(items), npartitions=3)
    else:
        data = bag(items, [len(items) // 3, len(items) // 2])
    result = evaluate_dask(POLICIES, domain, data, now=NOW, out=tmp_path / "out", snapshot=snapshot)
    table = parquet(tmp_path / "out")
    assert (result.rows, result.bad) == (len(items), 0)
    want = single(domain, items, snapshot)
    assert [json.loads(d) for d in table["decision"]] == want
    assert list(table["subject"]) == [d["subject"] for d in want]


def test_tiering_without_a_snapshot_ranks_against_the_data_and_types_its_columns(
    client: Client, customers: list[dict[str, Any]], tmp_path: Path
) -> None:
    spoiled = [*customers[:10], {"id": "BAD", "annual_sales": "lots"}, *customers[10:]]
    result = evaluate_dask(POLICIES, "tiering", bag(spoiled, [5, 700]), now=NOW, out=tmp_path / "out")
    table = parquet(tmp_path / "out")
    want = Engine(POLICIES).build_snapshot(spoiled, now=NOW)
    assert result.snapshot_id == want.id
    assert (result.rows, result.bad) == (2001, 1)
    assert json.loads(table["error"][10])["errors"][0]["code"].startswith("F1")
    assert table["value_tier"].value_counts().to_dict() == {"low": 800, "medium": 600, "high": 400, "minimal": 200}
    assert str(table["monitored"].dtype) == "boolean" and str(table["contact_cadence_days"].dtype) == "Int64"


def test_decisions_are_logged_to_postgresql_by_every_worker(
    client: Client, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.audit import Protector, verify
    from engine.audit.replay import Replayer
    from engine.plugins import open_store

    key = bytes(range(32))
    monkeypatch.setenv("CHARTER_LOG_KEY", key.hex())  # the workers' environment: set before they load
    client.run(lambda: __import__("os").environ.__setitem__("CHARTER_LOG_KEY", key.hex()))
    items = read("requests/access.jsonl")
    result = evaluate_dask(
        POLICIES, "access", bag(items, [100, 250]), now=NOW, out=tmp_path / "out", store_url=postgres_url
    )
    table = parquet(tmp_path / "out")
    assert result.rows == len(items) and table["record_id"].notna().all()
    store = open_store(postgres_url)
    try:
        rows = list(store.read())
        assert verify(rows).ok and len(rows) >= len(items)
        with Replayer(store, Protector(store, key)) as replayer:
            report = replayer.run()
        assert report.ok and report.total == len(rows)
    finally:
        store.close()


def test_a_worker_with_other_policies_refuses(client: Client, tmp_path: Path) -> None:
    shutil.copytree(POLICIES, tmp_path / "p")
    engine = Engine(tmp_path / "p")
    path = tmp_path / "p" / "classification.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "\n# edited after the client loaded\n", encoding="utf-8")
    records = bag(read("requests/retention.jsonl")[:3], [])
    with pytest.raises(CharterError) as exc:
        evaluate_dask(engine, "classification", records, now=NOW, out=tmp_path / "out")
    assert exc.value.code == "C101"
    with pytest.raises(CharterError) as exc:  # never replaces a directory that is not an earlier output
        evaluate_dask(engine, "classification", records, now=NOW, out=tmp_path)
    assert exc.value.code == "C106" and path.exists()


def test_charter_evaluate_on_a_cluster_writes_parquet(client: Client, customers: list[Any], tmp_path: Path) -> None:
    from engine.cli import main

    parts = tmp_path / "parts"
    parts.mkdir()
    for n in range(3):
        with (parts / f"c{n}.jsonl").open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(c, ensure_ascii=False) + "\n" for c in customers[n::3])
    on = "dask://" + client.scheduler.address.removeprefix("tcp://")
    store = f"sqlite:///{tmp_path / 'log.db'}"
    args = ["evaluate", "--on", on, "--facts", str(parts), "--now", "2025-06-30T00:00:00Z", "--store", store]
    code = main([*args, "--out", str(tmp_path / "out"), "--key-file", str(tmp_path / "k")])
    assert code == 0
    table = parquet(tmp_path / "out")
    assert sorted(table["subject"]) == sorted(c["id"] for c in customers)
    assert set(table["value_tier"]) == {"high", "medium", "low", "minimal"} and table["record_id"].notna().all()
    assert main([*args[:2], "dask-remote:1", *args[3:], "--out", str(tmp_path / "o2")]) == 1  # C100
    assert main(args) == 1  # no --out: C105
    assert files(str(parts))[0].path.endswith("c0.jsonl")


def test_the_python_example_of_docs_scale_runs(client: Client, customers: list[Any], tmp_path: Path) -> None:
    code = (ROOT / "docs" / "scale.md").read_text(encoding="utf-8").split("```python\n", 1)[1].split("```", 1)[0]
    for written, here in [
        ('"tcp://scheduler.internal:8786"', repr(client.scheduler.address)),
        ('"policies"', repr(str(POLICIES))),  # the workers' working directory may be another
        ('"examples/customers.jsonl"', repr(str(ROOT / "examples" / "customers.jsonl"))),
        ('"tiers.parquet"', repr(str(tmp_path / "tiers"))),
    ]:
        assert written in code
        code = code.replace(written, here)
    (tmp_path / "example.py").write_text(code, encoding="utf-8")
    run = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    rows, bad, snapshot_id = run.stdout.split()
    assert (rows, bad) == ("2000", "0")
    assert snapshot_id == Engine(POLICIES).build_snapshot(customers, now=NOW).id
