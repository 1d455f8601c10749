"""The decision log under faults: a full disk, a read-only database, a PostgreSQL restart.

Each time the caller gets a clear error, no half-written record enters the chain, and
every decision handed back before the fault is in the log.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import EXAMPLES, POLICIES, ROOT

from engine import Engine
from engine.audit import DecisionLog, Protector, verify
from engine.plugins import open_store
from engine.storage import StorageError
from engine.testing import postgres

WRITER = ROOT / "tests" / "audit_writer.py"
KEY = bytes(range(32))
NOW = datetime(2025, 6, 30, tzinfo=UTC)


def run_writer(url: str, count: int, batch: int, *, limit: int | None = None) -> subprocess.CompletedProcess[str]:
    def limited() -> None:  # in the child: files cannot grow past `limit`, and writing past it fails (EFBIG)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, str(WRITER), url, str(count), str(batch)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        preexec_fn=limited,
    )


def logged(url: str) -> tuple[list[str], bool]:
    store = open_store(url)
    try:
        rows = list(store.read())
        return [json.loads(d)["hash"] for _, d in rows], verify(rows).ok
    finally:
        store.close()


@pytest.mark.parametrize("scheme", ["sqlite", "jsonl"])
def test_a_full_disk_is_a_clear_error_and_loses_nothing_acknowledged(scheme: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}" if scheme == "sqlite" else f"jsonl://{tmp_path / 'log'}"
    r = run_writer(url, 20_000, 100, limit=3 * 1024 * 1024)
    assert r.returncode == 3, r.stderr[-2000:]
    error = r.stderr.strip().splitlines()[-1]
    assert error.startswith("ERROR D004 could not append"), error
    assert any(w in error for w in ("full", "too large", "disk I/O error")), error  # SQLite says I/O error for EFBIG
    acked = r.stdout.split()
    ids, ok = logged(url)
    assert ok and 0 < len(acked) < 20_000
    assert ids[: len(acked)] == acked and len(ids) - len(acked) < 100  # at most the batch in flight, never yielded


def test_a_read_only_database_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    with EXAMPLES.open(encoding="utf-8") as f:
        customers = [json.loads(line) for line in f][:50]
    store = open_store(f"sqlite:///{db}")
    engine = Engine(POLICIES, log=DecisionLog(store, Protector(store, KEY)))
    snapshot = engine.build_snapshot(customers, now=NOW)
    engine.use_snapshot(snapshot)
    list(engine.evaluate_batch("tiering", customers[:10], now=NOW))
    store.close()
    read_only = open_store(f"sqlite:///file:{db}?mode=ro&uri=true")
    engine = Engine(POLICIES, log=DecisionLog(read_only, Protector(read_only, KEY)), snapshot=snapshot)
    with pytest.raises(StorageError) as info:
        engine.evaluate("tiering", customers[20], now=NOW)
    assert info.value.code == "D004" and "readonly" in info.value.message.replace("read-only", "readonly")
    assert "read-only" in str(info.value.hint)
    with pytest.raises(StorageError):
        list(engine.evaluate_batch("tiering", customers[20:40], now=NOW))
    read_only.close()
    ids, ok = logged(f"sqlite:///{db}")
    assert ok and len(ids) == 10


@pytest.fixture
def own_postgres() -> Iterator[str]:
    if not postgres.installed():
        pytest.skip("PostgreSQL 15 is not installed")
    with postgres.throwaway_postgres() as url:
        yield url


def test_a_read_only_postgresql_database_is_a_clear_error(own_postgres: str) -> None:
    name = "ro_" + uuid.uuid4().hex[:8]
    admin = sa.create_engine(
        own_postgres.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    url = own_postgres.replace("/postgres?", f"/{name}?")
    r = run_writer(url, 30, 10)
    assert r.returncode == 0, r.stderr[-2000:]
    with admin.connect() as conn:
        conn.execute(sa.text(f"ALTER DATABASE {name} SET default_transaction_read_only = on"))
    r = run_writer(url, 30, 10)
    assert r.returncode == 3
    assert "read-only transaction" in r.stderr and "ERROR D004 could not" in r.stderr
    admin.dispose()
    ids, ok = logged(url)
    assert ok and len(ids) == 30


def test_a_postgresql_restart_mid_batch_loses_nothing_acknowledged(own_postgres: str) -> None:
    writer = subprocess.Popen(
        [sys.executable, str(WRITER), own_postgres, "4000", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "CHARTER_WRITER_RETRY": "1"},
    )
    assert writer.stdout is not None
    acked = [writer.stdout.readline().strip() for _ in range(500)]  # well under way...
    postgres.restart(own_postgres)  # ...when the server goes down and comes back
    rest, errors = writer.communicate(timeout=300)
    acked += rest.split()
    assert writer.returncode == 0, errors[-2000:]
    assert "ERROR D004" in errors  # the writer felt the restart
    ids, ok = logged(own_postgres)
    assert ok and len(acked) == 4000
    assert set(acked) <= set(ids)  # every decision handed back is in the log
    assert len(ids) - len(acked) < 50  # beyond them at most the batch that was in flight
