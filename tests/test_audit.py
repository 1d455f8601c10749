"""The decision log: recorded, tamper-evident, durable, replayable, and no sensitive value in clear."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import EXAMPLES, POLICIES, ROOT

from engine import Decision, Engine
from engine.audit import DecisionLog, Protector, verify
from engine.audit.chain import link
from engine.audit.replay import Filters, Replayer
from engine.plugins import open_store
from engine.storage import Store

KEY = bytes(range(32))
NOW = datetime(2025, 6, 30, tzinfo=UTC)
WRITER = Path(__file__).resolve().parent / "audit_writer.py"


def load(name: str) -> list[dict[str, Any]]:
    with (EXAMPLES.parent / name).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def customers() -> list[dict[str, Any]]:
    return load("customers.jsonl")


_OPEN: list[Store] = []


def opened(url: str) -> Store:
    store = open_store(url)
    _OPEN.append(store)
    return store


@pytest.fixture(autouse=True)
def _close_stores() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


@pytest.fixture
def fresh_pg(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the test server."""
    name = "audit_" + uuid.uuid4().hex[:12]
    while _OPEN:  # close this test's connections before its database goes
        _OPEN.pop().close()
    admin = sa.create_engine(
        postgres_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    yield postgres_url.replace("/postgres?", f"/{name}?")
    while _OPEN:
        _OPEN.pop().close()
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    return str(request.getfixturevalue("fresh_pg"))


def logging_engine(url: str, customers: list[dict[str, Any]], policies: Path = POLICIES) -> tuple[Engine, Store]:
    store = opened(url)
    engine = Engine(policies, log=DecisionLog(store, Protector(store, KEY)))
    engine.use_snapshot(engine.build_snapshot(customers, now=NOW))
    return engine, store


def test_every_decision_is_recorded_with_what_replay_needs(url: str, customers: list[dict[str, Any]]) -> None:
    engine, store = logging_engine(url, customers)
    decisions = list(engine.evaluate_batch("tiering", customers[:300], now=NOW))
    one = engine.evaluate("access", load("requests/access.jsonl")[0], now=NOW)
    rows = list(store.read())
    assert len(rows) == 301
    assert verify(rows).ok
    last = json.loads(rows[-1][1])
    assert one.record_id == last["hash"]
    assert [d.record_id for d in decisions] == [json.loads(r)["hash"] for _, r in rows[:300]]  # type: ignore[union-attr]
    body = json.loads(json.loads(rows[0][1])["body"])
    assert body["bundle"] == engine.bundle_version and body["time"] == "2025-06-30T00:00:00Z"
    assert body["snapshot"] == engine.snapshot.id  # type: ignore[union-attr]
    assert set(body["facts"]) <= set(engine.bundle.policy("tiering").facts) | {"id"}  # only what it reads
    assert "national_id" not in body["facts"] and "name" not in body["facts"]
    assert store.get_blob("bundle", body["bundle_blob"]) is not None
    assert store.get_blob("population", body["snapshot"].removeprefix("pop-")) is not None
    access = json.loads(last["body"])
    assert [u["domain"] for u in access["upstream"]] == ["classification"]


def _rows(store: Store) -> sa.Engine:
    return store.engine  # type: ignore[attr-defined,no-any-return]


def _data(store: Store, seq: int) -> bytes:
    return next(d for s, d in store.read(after=seq - 1, limit=1))


def tamper(store: Store, how: str) -> int:
    """Tamper with a log of 100 records; returns the seq verify must name."""
    t = sa.table("charter_records", sa.column("seq", sa.Integer), sa.column("data", sa.LargeBinary))
    with _rows(store).begin() as conn:
        if how == "edit":
            rec = json.loads(_data(store, 50))
            body = json.loads(rec["body"])
            body["outputs"]["value_tier"] = "high" if body["outputs"]["value_tier"] != "high" else "low"
            rec["body"] = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            conn.execute(t.update().where(t.c.seq == 50).values(data=json.dumps(rec).encode()))
            return 50
        if how == "delete":
            conn.execute(t.delete().where(t.c.seq == 50))
            return 51
        if how == "insert":  # a forged record correctly linked to record 49, slid in before record 50
            forged = link(_data(store, 49), json.loads(_data(store, 49))["body"].encode())
            for seq in range(100, 49, -1):
                conn.execute(t.update().where(t.c.seq == seq).values(seq=seq + 1))
            conn.execute(t.insert().values(seq=50, data=forged))
            return 51
        if how == "reorder":
            a, b = _data(store, 50), _data(store, 51)
            conn.execute(t.update().where(t.c.seq == 50).values(data=b))
            conn.execute(t.update().where(t.c.seq == 51).values(data=a))
            return 50
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["edit", "delete", "insert", "reorder"])
def test_verify_names_the_first_tampered_record(url: str, customers: list[dict[str, Any]], how: str) -> None:
    engine, store = logging_engine(url, customers)
    list(engine.evaluate_batch("tiering", customers[:100], now=NOW))
    assert verify(store.read()).ok
    bad = tamper(store, how)
    result = verify(store.read())
    assert not result.ok
    assert result.bad_seq == bad, result
    assert result.count == (49 if how == "delete" else bad - 1)  # the good records before it
    r = subprocess.run(
        [sys.executable, "-m", "engine.cli", "log", "verify", "--store", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert r.stdout.startswith(f"record {bad}:")
    # replay trusts only what chains: it replays the good records before the break and says where it broke
    with Replayer(store, Protector(store, KEY)) as replayer:
        report = replayer.run()
    assert not report.ok and (report.total, report.same) == (result.count, result.count)
    assert report.errors[-1]["seq"] == bad and "hash chain breaks" in report.errors[-1]["error"]


def test_a_cut_off_end_is_caught_against_a_kept_head(tmp_path: Path, customers: list[dict[str, Any]]) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    engine, store = logging_engine(url, customers)
    list(engine.evaluate_batch("tiering", customers[:20], now=NOW))
    head = verify(store.read()).head
    with _rows(store).begin() as conn:
        conn.execute(sa.text("DELETE FROM charter_records WHERE seq = 20"))
    assert verify(store.read()).ok  # a shorter chain is still a chain...
    assert not verify(store.read(), head=head).ok  # ...but not the one the auditor kept
    r = subprocess.run(
        [sys.executable, "-m", "engine.cli", "log", "verify", "--store", url, "--head", head],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_killed_writer_loses_nothing_it_acknowledged(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}" if backend == "sqlite" else str(request.getfixturevalue("fresh_pg"))
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), url, "100000", "25"], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout is not None
    acknowledged = []
    for line in proc.stdout:
        acknowledged.append(line.strip())
        if len(acknowledged) >= 260:  # mid-batch: 260 is not a multiple of 25
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    store = opened(url)
    rows = list(store.read())
    result = verify(rows)
    assert result.ok, result
    stored = {json.loads(d)["hash"] for _, d in rows}
    assert set(acknowledged) <= stored
    assert len(rows) >= len(acknowledged)
    assert len(rows) % 25 == 0  # a batch is one transaction: all of it or none of it


def test_several_writer_processes_make_one_chain(fresh_pg: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, str(WRITER), fresh_pg, "120", "10", str(i * 500)],
            stderr=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for i in range(3)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _, err in outs]
    ids = [line.strip() for out, _ in outs for line in out.splitlines()]
    rows = list(opened(fresh_pg).read())
    assert verify(rows).ok and len(rows) == 360
    assert sorted(ids) == sorted(json.loads(d)["hash"] for _, d in rows)


def test_ten_thousand_decisions_replay_and_a_what_if(tmp_path: Path, customers: list[dict[str, Any]]) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    engine, store = logging_engine(url, customers, policies)
    nows = [NOW + timedelta(days=30 * k) for k in range(5)]
    originals: dict[tuple[str, str], Any] = {}
    for now in nows:
        for d in engine.evaluate_batch("tiering", customers, now=now):
            originals[(d.subject, d.now.isoformat())] = d.outputs  # type: ignore[union-attr]
    assert len(originals) == 10_000
    # the officer edits the policy on disk: the top band becomes the top 25%
    text = (policies / "tiering.yaml").read_text(encoding="utf-8")
    edited = text.replace("from: 80, to: 100", "from: 75, to: 100").replace("from: 50, to: 80", "from: 50, to: 75")
    assert edited != text
    (policies / "tiering.yaml").write_text(edited, encoding="utf-8")
    with Replayer(store, Protector(store, KEY)) as replayer:
        same = replayer.run()
    assert (same.total, same.same, len(same.changed), same.errors) == (10_000, 10_000, 0, [])
    # what the edit would change, computed directly with the edited policies...
    fresh = Engine(policies)
    fresh.use_snapshot(engine.snapshot)
    expected = {
        (c["id"], now.isoformat())
        for now in nows
        for c in customers
        if fresh.evaluate("tiering", c, now=now).outputs != originals[(c["id"], now.isoformat())]
    }
    assert 0 < len(expected) < 10_000
    # ...is exactly what `replay --against` reports
    report_file = tmp_path / "whatif.json"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "replay",
            "--store",
            url,
            "--against",
            str(policies),
            "--json",
            str(report_file),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CHARTER_LOG_KEY": KEY.hex()},
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(report_file.read_text(encoding="utf-8"))
    changed = {(c["subject"], _time_of(store, c["seq"])) for c in report["sample"]}  # --json: every change
    assert report["changed"] == len(expected) and changed == expected
    assert set(report["by_output"]) >= {"tiering.value_tier"}
    assert "medium -> " in " ".join(report["by_output"]["tiering.value_tier"]).replace('"', "")
    assert report["sample"][0]["trace_before"] and report["sample"][0]["trace_after"]
    assert f"{len(expected)} changed" in r.stdout
    # the printed sample says which rules decided before and after, and where the traces part
    assert "rules before: value-" in r.stdout and "rules after:  value-" in r.stdout
    assert "where the traces part:" in r.stdout and "value-tier/value-" in r.stdout


def _time_of(store: Store, seq: int) -> str:
    return datetime.fromisoformat(json.loads(json.loads(_data(store, seq))["body"])["time"]).isoformat()


def test_no_sensitive_value_in_clear_anywhere(url: str, customers: list[dict[str, Any]], tmp_path: Path) -> None:
    engine, store = logging_engine(url, customers)
    sample = customers[:300]
    list(engine.evaluate_batch("classification", sample, now=NOW))
    list(engine.evaluate_batch("tiering", sample, now=NOW))
    list(engine.evaluate_batch("access", load("requests/access.jsonl")[:200], now=NOW))
    secrets = [c[k] for c in sample for k in ("national_id", "bank_account", "address") if k in c]
    secrets += [str(c["medical_notes"]) for c in sample if "medical_notes" in c]
    assert len(secrets) > 600 and any(not s.isascii() for s in secrets)
    found = _clear_in(url, secrets)
    assert found == {"sql": [], "dump" if url.startswith("postgresql") else "files": []}
    # and replay still reproduces every decision, with the key
    with Replayer(store, Protector(store, KEY)) as replayer:
        report = replayer.run()
    assert (report.total, report.same) == (800, 800)

    # the scan can fail: a value planted in clear is found, where a plain byte grep misses it
    planted = [str(customers[400]["address"]), str(customers[401]["bank_account"])]
    assert not set(planted) & set(secrets)
    missed_by_grep = _plant(url, planted)
    assert missed_by_grep == planted  # what the check before this one grepped, and did not see
    found = _clear_in(url, planted)
    assert found["sql"] == planted
    if url.startswith("postgresql"):
        assert found["dump"] == planted  # the dump's bytea decoded
    else:
        assert found["files"] == []  # the raw bytes alone miss them: the scan through SQL does not


def _forms(secret: str) -> list[str]:
    """A value as text may hold it: as it is, and as a JSON string writes it (ASCII-escaped too)."""
    return list(dict.fromkeys([secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]]))


def _among(secrets: list[str], haystack: bytes) -> list[str]:
    return [s for s in secrets if any(f.encode() in haystack for f in _forms(s))]


def _texts(value: Any) -> Iterator[str]:
    """The text a stored value holds: bytes read as UTF-8, and every string of a JSON document
    (a JSON string holding JSON, such as a record's body, parsed in turn)."""
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value).decode("utf-8", "replace")
    if not isinstance(value, str):
        return
    yield value
    try:
        doc = json.loads(value)
    except ValueError:
        return
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend([*item.keys(), *item.values()])
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and item != value:
            yield from _texts(item)


def _clear_in(url: str, secrets: list[str]) -> dict[str, list[str]]:
    """Which ``secrets`` the store holds in clear, by each way of looking at it: ``sql``, every
    text and blob column of every table read through SQL and decoded; ``dump`` (PostgreSQL), a
    plain-format pg_dump with its bytea decoded; ``files`` (SQLite), the database, WAL and
    shared-memory files as bytes."""
    texts = "\x00".join(_sql_texts(url)).encode()  # one text to search (as UTF-8: faster), values apart
    assert texts.count(b'"$sealed"') > 1000  # the records were read, and parsed
    out = {"sql": _among(secrets, texts)}
    if url.startswith("postgresql"):
        dump = _pg_dump(url).decode("utf-8", "replace")
        assert "COPY public.charter_records" in dump
        bytea = re.compile(r"\\\\x([0-9a-f]*)")  # COPY's text format writes bytea `\\x` and hex digits
        decoded = [bytea.sub("", dump), *(t for h in bytea.findall(dump) for t in _texts(bytes.fromhex(h)))]
        out["dump"] = _among(secrets, "\x00".join(decoded).encode())
    else:
        db = Path(url.removeprefix("sqlite:///"))
        raw = b"".join(p.read_bytes() for p in sorted(db.parent.glob(db.name + "*")) if not p.name.endswith("keyring"))
        assert raw.count(b"$sealed") > 1000
        out["files"] = _among(secrets, raw)
    return out


def _sql_texts(url: str) -> Iterator[str]:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        assert {"charter_records", "charter_keys", "charter_blobs"} <= set(meta.tables)
        with engine.connect() as conn:
            for table in meta.tables.values():
                for row in conn.execute(sa.select(table)):
                    for value in row:
                        yield from _texts(value)
    finally:
        engine.dispose()


def _plant(url: str, values: list[str]) -> list[str]:
    """Store ``values`` in clear in a table of their own, where a byte grep does not see them:
    on SQLite across two overflow pages of a record over 4 KB, on PostgreSQL in a bytea
    column (which pg_dump writes in hex). Returns those a plain grep misses."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as conn:
            if url.startswith("postgresql"):
                conn.execute(sa.text("CREATE TABLE planted (data bytea)"))
                rows = [json.dumps({"note": v}).encode() for v in values]  # non-ASCII as \u escapes
            else:
                conn.execute(sa.text("CREATE TABLE planted (data BLOB)"))
                size = conn.execute(sa.text("PRAGMA page_size")).scalar_one()
                rows = [_straddling(v.encode(), int(size)) for v in values]
            conn.execute(sa.text("INSERT INTO planted (data) VALUES (:d)"), [{"d": r} for r in rows])
    finally:
        engine.dispose()
    if url.startswith("postgresql"):
        dump = _pg_dump(url)
        return [v for v in values if v.encode() not in dump]
    db = Path(url.removeprefix("sqlite:///"))
    raw = b"".join(p.read_bytes() for p in sorted(db.parent.glob(db.name + "*")))
    return [v for v in values if v.encode() not in raw]


def _straddling(value: bytes, page: int) -> bytes:
    """A blob of 10,000 bytes that a one-column SQLite table keeps with ``value`` cut in two by
    the boundary between its first and second overflow pages (file format: a leaf cell keeps
    ``local`` bytes of the payload, each overflow page ``page - 4`` after its next-page number)."""
    length = 10_000
    serial = 2 * length + 12
    header = 1 + (serial.bit_length() + 6) // 7  # the record header: its size, the blob's serial type
    payload = header + length
    usable = page
    most, least = usable - 35, (usable - 12) * 32 // 255 - 23
    k = least + (payload - least) % (usable - 4)
    local = k if k <= most else least
    boundary = local + (usable - 4)  # payload offset where the second overflow page starts
    at = boundary - header - len(value) // 2
    blob = bytearray(b"-" * length)
    blob[at : at + len(value)] = value
    return bytes(blob)


def _pg_dump(url: str) -> bytes:
    """``pg_dump --format=plain`` of the database (bytea comes out in hex)."""
    from urllib.parse import parse_qs, urlparse

    u = urlparse(url)
    q = parse_qs(u.query)
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    out = subprocess.run(
        [
            *as_postgres,
            "/usr/lib/postgresql/15/bin/pg_dump",
            "--format=plain",
            "-h",
            q["host"][0],
            "-p",
            q["port"][0],
            "-U",
            "postgres",
            u.path.lstrip("/"),
        ],
        capture_output=True,
        check=True,
        timeout=120,
    )
    return out.stdout


def test_erasing_a_customer_keeps_the_reasons(tmp_path: Path, customers: list[dict[str, Any]]) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    engine, store = logging_engine(url, customers)
    people = [c for c in customers if "national_id" in c][:3]
    for c in people:
        engine.evaluate("classification", c, now=NOW)
    gone = people[0]["id"]
    assert Protector(store, KEY).erase(gone)
    assert verify(store.read()).ok
    with Replayer(store, Protector(store, KEY)) as replayer:
        report = replayer.run()
    assert (report.total, report.same, report.unreadable) == (3, 2, 1)
    with Replayer(store, Protector(store, KEY)) as replayer:
        assert replayer.run(Filters(customer=gone)).unreadable == 1
    seq = 1 + [c["id"] for c in people].index(gone)
    rec = json.loads(_data(store, seq))
    r = subprocess.run(
        [sys.executable, "-m", "engine.cli", "log", "show", rec["hash"][:12], "--store", url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CHARTER_LOG_KEY": KEY.hex()},
    )
    assert r.returncode == 0, r.stderr
    assert "sensitive-identifiers" in r.stdout and "were erased" in r.stdout


def test_replay_names_a_divergence(tmp_path: Path, customers: list[dict[str, Any]]) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    engine, store = logging_engine(url, customers)
    list(engine.evaluate_batch("tiering", customers[:10], now=NOW))
    # rewrite record 4's outcome *and* re-chain everything after it: a consistent but false log
    rows = list(store.read())
    t = sa.table("charter_records", sa.column("seq", sa.Integer), sa.column("data", sa.LargeBinary))
    prev = rows[2][1]
    with _rows(store).begin() as conn:
        for seq, data in rows[3:]:
            body = json.loads(json.loads(data)["body"])
            if seq == 4:
                body["outputs"]["contact_cadence_days"] = 1
            new = link(prev, json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())
            conn.execute(t.update().where(t.c.seq == seq).values(data=new))
            prev = new
    assert verify(store.read()).ok
    r = subprocess.run(
        [sys.executable, "-m", "engine.cli", "replay", "--store", url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CHARTER_LOG_KEY": KEY.hex()},
    )
    assert r.returncode == 1
    assert "10 decision(s): 9 reproduced, 1 diverged" in r.stdout
    assert "record 4 " in r.stdout and "    contact_cadence_days: 1 -> 30\n" in r.stdout


def test_show_prints_the_rule_text_as_it_was_when_decided(tmp_path: Path, customers: list[dict[str, Any]]) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    engine, _ = logging_engine(url, customers, policies)
    d = engine.evaluate("tiering", customers[0], now=NOW)
    assert d.record_id is not None
    fired = d.fired[0]
    tiering = policies / "tiering.yaml"
    original_line = tiering.read_text(encoding="utf-8").splitlines()[fired.line - 1].strip()
    tiering.write_text(tiering.read_text(encoding="utf-8").replace(original_line, "# gone"), encoding="utf-8")

    def show(ident: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "engine.cli", "log", "show", ident, "--store", url],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "CHARTER_LOG_KEY": KEY.hex()},
        )

    by_hash, by_number = show(d.record_id[:10]), show("#1")
    assert by_hash.returncode == 0, by_hash.stderr
    assert by_hash.stdout == by_number.stdout
    assert f"[{fired.id}]" in by_hash.stdout
    assert any("|" in line and line.strip().endswith(original_line) for line in by_hash.stdout.splitlines())
    for name, value in d.outputs.items():
        assert f"  {name}: {json.dumps(value, ensure_ascii=False)}" in by_hash.stdout
    missing = show("#2")
    assert missing.returncode != 0 and "no record `#2`" in missing.stderr


def test_replay_says_when_the_running_engine_is_not_the_one_that_logged(
    tmp_path: Path, customers: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.audit import replay

    engine, store = logging_engine(f"sqlite:///{tmp_path / 'log.db'}", customers)
    list(engine.evaluate_batch("tiering", customers[:20], now=NOW))
    with Replayer(store, Protector(store, KEY)) as replayer:
        assert replayer.run().versions == {}
    logged = replay.SEMANTICS_VERSION
    monkeypatch.setattr(replay, "SEMANTICS_VERSION", logged + "-next")
    with Replayer(store, Protector(store, KEY)) as replayer:
        report = replayer.run()
    assert report.versions == {f"semantics {logged} when logged, not the running one": 20}
    assert report.same == 20  # noted, not a divergence by itself


def test_without_the_key_show_keeps_the_reasons_and_replay_fails(
    tmp_path: Path, customers: list[dict[str, Any]]
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    engine, _ = logging_engine(url, customers)
    requests = load("requests/access.jsonl")[:40]
    decisions = [d for d in engine.evaluate_batch("access", requests, now=NOW) if isinstance(d, Decision)]
    sealed = next(d for d in decisions if "bank_account" in json.dumps(d.outputs))
    env = {k: v for k, v in os.environ.items() if k != "CHARTER_LOG_KEY"}
    no_key = ["--store", url, "--key-file", str(tmp_path / "absent.key")]
    shown = subprocess.run(
        [sys.executable, "-m", "engine.cli", "log", "show", str(sealed.record_id), *no_key],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert shown.returncode == 0, shown.stderr
    assert "no log key was given" in shown.stdout
    for rule in sealed.fired:  # each reason, located in the stored policy files, with its text
        assert f"  - [{rule.id}] (access.yaml:{rule.line})" in shown.stdout
    replayed = subprocess.run(
        [sys.executable, "-m", "engine.cli", "replay", *no_key],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert replayed.returncode == 1
    assert "0 unreadable (erased or withheld)" in replayed.stdout and "no log key was given" in replayed.stderr


# -- the log's hot path: encoded once, group commit ---------------------------------------------------


def test_a_record_encoded_once_is_the_chains_record_byte_for_byte() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from engine.audit.chain import canonical, link_after
    from engine.audit.log import record_after

    values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    )

    @settings(max_examples=300, deadline=None)
    @given(values, st.integers(0, 10**12), st.text("0123456789abcdef", min_size=64, max_size=64))
    def same(value: Any, n: int, prev: str) -> None:
        body = canonical(value)
        assert record_after(prev, n, body) == link_after(prev, n, body)

    same()


def test_concurrent_records_share_one_commit_and_make_one_chain(url: str) -> None:
    import threading
    import time

    store = opened(url)
    commits: list[int] = []

    class Counting(DecisionLog):
        def committed(self, calls: int, records: int, seconds: float) -> None:
            commits.append(calls)

    log = Counting(store, Protector(store, KEY))
    engine = Engine(POLICIES, log=log)
    requests = load("requests/access.jsonl")[:9]
    for r in requests:  # keys made first: the commits below are the records' only
        engine.evaluate("access", r, now=NOW)
    commits.clear()
    gate, inside = threading.Event(), threading.Event()
    append = store.append_linked

    def held(bodies: Any, link: Any) -> list[int]:
        inside.set()
        gate.wait(30)
        return append(bodies, link)

    store.append_linked = held  # type: ignore[method-assign]
    decisions: dict[int, Decision] = {}

    def one(i: int) -> None:
        decisions[i] = engine.evaluate("access", requests[i], now=NOW)

    first = threading.Thread(target=one, args=(0,))
    first.start()
    assert inside.wait(30)
    rest = [threading.Thread(target=one, args=(i,)) for i in range(1, 9)]
    for t in rest:
        t.start()
    deadline = time.monotonic() + 30
    while len(log._queue) < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    gate.set()
    for t in [first, *rest]:
        t.join(timeout=60)
    assert commits == [1, 8]  # the eight that came while the first commit ran: one commit
    rows = list(store.read())
    assert verify(rows).ok and len(rows) == 18
    assert sorted(json.loads(data)["hash"] for _, data in rows[9:]) == sorted(d.record_id for d in decisions.values())
    with Replayer(store, Protector(store, KEY)) as replayer:
        report = replayer.run()
    assert report.ok and report.same == 18
