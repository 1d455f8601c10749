"""Stores under concurrent use, on every backend: threads sharing one store or each with its
own, processes opening one fresh store at the same moment, and an engine logging decisions
while another thread reloads its policies. No call may fail, and the log stays one chain."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, POLICIES, ROOT

from engine import Engine
from engine.audit import DecisionLog, Protector
from engine.audit.chain import canonical, link, verify
from engine.plugins import open_store
from engine.storage import Store

KEY = bytes(range(32))
NOW = datetime(2025, 6, 30, tzinfo=UTC)
THREADS, ROUNDS = 8, 10


@pytest.fixture(params=["sqlite", "jsonl", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a store not created yet (PostgreSQL: a new, empty database)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'new' / 'log.db'}"
        return
    if request.param == "jsonl":
        yield f"jsonl://{tmp_path / 'new'}"
        return
    import sqlalchemy as sa

    server = str(request.getfixturevalue("postgres_url"))
    admin = sa.create_engine(server.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    name = "concurrency_" + uuid.uuid4().hex[:12]
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield server.replace("/postgres?", f"/{name}?")
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture(autouse=True)
def _new_directory(tmp_path: Path) -> None:
    (tmp_path / "new").mkdir()  # SQLite's directory must exist; the file and JSONL's log do not


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def body(writer: int, i: int, part: int) -> bytes:
    return canonical({"writer": writer, "round": i, "part": part})


def failures_of(target: Callable[..., None]) -> Callable[..., None]:
    """``target`` with every exception it raises kept in its last argument, a list."""

    def run(*args: Any) -> None:
        try:
            target(*args)
        except Exception as err:  # any failed call fails the test, whatever it raised
            args[-1].append(f"{type(err).__name__}: {err}")

    return run


def mixed_work(
    store: Store, writer: int, start: threading.Barrier, seen: dict[str, set[bytes]], failed: list[str]
) -> None:
    """Blobs (shared by every writer and its own), keys (shared and its own, some deleted) and
    linked appends of two records, ROUNDS times; each failed call is counted."""

    def call(method: Callable[..., Any], *args: Any) -> Any:
        try:
            return method(*args)
        except Exception as err:  # every failed call is counted, whatever it raised
            failed.append(f"{writer}: {method.__name__}: {type(err).__name__}: {err}")
            return None

    start.wait()
    for i in range(ROUNDS):
        shared, own = f"shared blob {i % 3}".encode(), f"blob of {writer} in round {i}".encode()
        mine, common = f"customer/{writer}-{i}", f"customer/shared-{i % 4}"
        call(store.put_blob, "bundle", digest(shared), shared)
        call(store.put_blob, "snapshot", digest(own), own)
        added = call(store.add_keys, {common: f"key of {writer}".encode(), mine: b"mine"})
        if added is not None:
            seen.setdefault(common, set()).add(added[common])
        if call(store.get_keys, [mine]) != {mine: b"mine"}:
            failed.append(f"{mine} not read back")
        call(store.append_linked, [body(writer, i, 0), body(writer, i, 1)], link)
        if i % 3 == 2 and call(store.delete_key, mine) is not True:
            failed.append(f"{mine} not deleted")


def check_log(store: Store, writers: int, rounds: int, per_round: int) -> None:
    rows = list(store.read())
    result = verify(rows)
    assert result.ok, result.reason
    assert result.count == len(rows) == writers * rounds * per_round
    bodies = [json.loads(json.loads(data)["body"]) for _, data in rows]
    assert sorted((b["writer"], b["round"], b["part"]) for b in bodies) == sorted(
        (w, i, p) for w in range(writers) for i in range(rounds) for p in range(per_round)
    )


@pytest.mark.parametrize("shared", [True, False], ids=["one-store", "a-store-each"])
def test_threads_lose_no_call_and_keep_one_chain(url: str, shared: bool) -> None:
    stores = [open_store(url)] * THREADS if shared else [open_store(url) for _ in range(THREADS)]
    start, seen, failed = threading.Barrier(THREADS), dict[str, set[bytes]](), list[str]()
    threads = [threading.Thread(target=mixed_work, args=(stores[n], n, start, seen, failed)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store = stores[0]
    try:
        assert failed == []
        check_log(store, THREADS, ROUNDS, 2)
        for i in range(3):
            assert store.get_blob("bundle", digest(f"shared blob {i}".encode())) == f"shared blob {i}".encode()
        own = [f"blob of {n} in round {i}".encode() for n in range(THREADS) for i in range(ROUNDS)]
        assert all(store.get_blob("snapshot", digest(data)) == data for data in own)
        assert all(len(values) == 1 for values in seen.values()) and len(seen) == 4  # writers agreed on each
        assert store.get_keys(list(seen)) == {name: next(iter(values)) for name, values in seen.items()}
        kept = store.get_keys([f"customer/{n}-{i}" for n in range(THREADS) for i in range(ROUNDS)])
        assert sorted(kept) == sorted(f"customer/{n}-{i}" for n in range(THREADS) for i in range(ROUNDS) if i % 3 != 2)
    finally:
        for s in set(map(id, stores)):
            next(x for x in stores if id(x) == s).close()


WRITER = """
import hashlib, sys, time
sys.path.insert(0, sys.argv[1])
from engine.audit.chain import canonical, link
from engine.plugins import open_store

url, start, writer, count = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
print("ready", flush=True)
while not __import__("os").path.exists(start):
    time.sleep(0.002)
store = open_store(url)  # every writer opens the new store at the same moment
for i in range(count):
    shared, own = f"shared blob {i % 3}".encode(), f"blob of {writer} in round {i}".encode()
    store.put_blob("bundle", hashlib.sha256(shared).hexdigest(), shared)
    store.put_blob("snapshot", hashlib.sha256(own).hexdigest(), own)
    store.add_keys({f"customer/shared-{i % 4}": f"key of {writer}".encode()})
    store.append_linked([canonical({"writer": writer, "round": i, "part": 0})], link)
store.close()
"""


def test_processes_opening_one_new_store_at_once_lose_nothing(url: str, tmp_path: Path) -> None:
    count, start = 15, tmp_path / "start"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(ROOT), url, str(start), str(n), str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for n in range(3)
    ]
    for w in writers:  # all imported and waiting
        assert w.stdout is not None and w.stdout.readline() == "ready\n"
    start.touch()
    results = [w.communicate(timeout=60) for w in writers]
    assert [(w.returncode, err) for w, (_, err) in zip(writers, results, strict=True)] == [(0, "")] * 3
    store = open_store(url)
    try:
        check_log(store, 3, count, 1)
        assert all(store.get_blob("bundle", digest(f"shared blob {i}".encode())) is not None for i in range(3))
        keys = store.get_keys([f"customer/shared-{i}" for i in range(4)])
        assert len(keys) == 4 and set(keys.values()) <= {f"key of {n}".encode() for n in range(3)}
    finally:
        store.close()


def test_an_engine_logs_every_decision_while_it_reloads(url: str, tmp_path: Path) -> None:
    with EXAMPLES.open(encoding="utf-8") as f:
        customers = [json.loads(line) for line in f][:40]
    versions = []
    for k in range(5):  # policy sets that differ by a comment: each reload brings a new bundle blob
        d = tmp_path / f"policies-{k}"
        shutil.copytree(POLICIES, d)
        with (d / "tiering.yaml").open("a", encoding="utf-8") as f:
            f.write(f"# version {k}\n")
        for p in d.rglob("*"):
            os.utime(p, (0, 0))  # written long ago: a reload need not wait for the files to settle
        versions.append(d)
    engines = []
    for _ in range(2):  # two engines, a store each, as two processes would have
        store = open_store(url)
        engine = Engine(versions[0], log=DecisionLog(store, Protector(store, KEY)))
        engine.use_snapshot(engine.build_snapshot(customers, now=NOW))
        engines.append((engine, store))
    evaluators, failed = 4, list[str]()
    start, done = threading.Barrier(evaluators + 1), threading.Event()

    def evaluate(engine: Engine, offset: int, failed: list[str]) -> None:
        start.wait()
        for facts in customers[offset::evaluators]:
            try:
                assert engine.evaluate("tiering", facts, now=NOW).record_id is not None
            except Exception as err:  # every failed decision is counted
                failed.append(f"{type(err).__name__}: {err}")

    def reload(failed: list[str]) -> None:
        start.wait()
        for k in range(1, 100):
            for engine, _ in engines:
                engine.reload(versions[k % len(versions)])
            if done.is_set() and k >= len(versions):
                return

    threads = [threading.Thread(target=evaluate, args=(engines[n % 2][0], n, failed)) for n in range(evaluators)]
    reloader = threading.Thread(target=failures_of(reload), args=(failed,))
    for t in [*threads, reloader]:
        t.start()
    for t in threads:
        t.join()
    done.set()
    reloader.join()
    store = engines[0][1]
    try:
        assert failed == []
        rows = list(store.read())
        result = verify(rows)
        assert result.ok and result.count == len(customers)
        blobs = {json.loads(json.loads(data)["body"])["bundle_blob"] for _, data in rows}
        assert all(store.get_blob("bundle", b) is not None for b in blobs)
    finally:
        for _, s in engines:
            s.close()


def test_a_store_kept_busy_gives_up_with_its_own_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sqlite3

    from engine.storage import StorageError

    sql = importlib.import_module("charter_plugins.sql")
    monkeypatch.setattr(sql, "BUSY_TIMEOUT", 0.2)  # not 30 s (each connection's busy_timeout)
    path = tmp_path / "busy.db"
    store = open_store(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another connection holds the write lock and keeps it
        with pytest.raises(StorageError) as info:
            store.append_linked([canonical({"n": 1})], link)
        assert info.value.code == "D006" and "stayed busy" in info.value.message
        assert list(store.read()) == []  # readers go on meanwhile (WAL)
        holder.execute("ROLLBACK")
        assert store.append_linked([canonical({"n": 1})], link) == [1]
    finally:
        holder.close()
        store.close()
