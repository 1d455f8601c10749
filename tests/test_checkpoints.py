"""Signed checkpoints: a log rewritten and re-chained by whoever can write the store passes the
chain check and fails the check against checkpoints kept outside it."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, POLICIES, ROOT
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine import Engine
from engine.audit import DecisionLog, Protector, verify
from engine.audit.chain import link_after
from engine.audit.checkpoint import (
    Checkpointer,
    CheckpointError,
    load_public_key,
    load_signing_key,
    read_checkpoints,
    sign,
    verify_checkpoints,
)
from engine.plugins import open_store
from engine.storage import Store

NOW = datetime(2025, 6, 30, tzinfo=UTC)
KEY = bytes(range(32))


def requests(n: int) -> list[dict[str, Any]]:
    with (EXAMPLES.parent / "requests" / "access.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f][:n]


def logged(url: str, path: Path, key: Ed25519PrivateKey, n: int, every: int) -> Store:
    store = open_store(url)
    checkpoints = Checkpointer(path, key, every=every)
    engine = Engine(POLICIES, log=DecisionLog(store, Protector(store, KEY), checkpoints), log_batch=7)
    for _ in engine.evaluate_batch("access", requests(n), now=NOW):
        pass
    checkpoints.flush()
    return store


def rechain_sqlite(db: Path, at: int, edit: Any) -> None:
    """What an attacker with write access does: edit record ``at``'s body, re-hash every record after it."""
    con = sqlite3.connect(db)
    rows = con.execute("SELECT seq, data FROM charter_records ORDER BY seq").fetchall()
    prev_hash, prev_n = "0" * 64, 0
    for seq, data in rows:
        rec = json.loads(data)
        body = rec["body"]
        if rec["n"] == at:
            parsed = json.loads(body)
            edit(parsed)
            body = json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        record, prev_hash, prev_n = link_after(prev_hash, prev_n, body.encode())
        con.execute("UPDATE charter_records SET data = ? WHERE seq = ?", (record, seq))
    con.commit()
    con.close()


def flip_effect(body: dict[str, Any]) -> None:
    body["outputs"]["effect"] = "allow" if body["outputs"]["effect"] != "allow" else "deny"


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def test_checkpoints_are_written_every_n_records_and_at_the_end(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    path = tmp_path / "cp.jsonl"
    store = logged(f"sqlite:///{tmp_path / 'log.db'}", path, key, 45, every=10)
    cps = read_checkpoints(path)
    # batches of 7 records: a checkpoint after each batch that passes a multiple of 10, then the end
    assert [cp["n"] for cp in cps] == [14, 21, 35, 42, 45]
    heads = {int(json.loads(d)["n"]): json.loads(d)["hash"] for _, d in store.read()}
    assert all(heads[cp["n"]] == cp["head"] for cp in cps)
    result = verify_checkpoints(store.read(), cps, [key.public_key()])
    assert result.ok and result.checked == 5 and result.chain.count == 45


@pytest.mark.parametrize("at", [1, 20, 45])
def test_a_rechained_forgery_passes_the_chain_and_fails_the_checkpoints(
    tmp_path: Path, key: Ed25519PrivateKey, at: int
) -> None:
    db = tmp_path / "log.db"
    path = tmp_path / "cp.jsonl"
    store = logged(f"sqlite:///{db}", path, key, 45, every=10)
    store.close()
    rechain_sqlite(db, at, flip_effect)
    store = open_store(f"sqlite:///{db}")
    assert verify(store.read()).ok  # the attack works against the chain alone
    result = verify_checkpoints(store.read(), read_checkpoints(path), [key.public_key()])
    assert not result.ok
    first = min(n for n in (14, 21, 35, 42, 45) if n >= at)
    assert f"record {first} is not the record signed" in result.problem
    assert f"from {max([0, *(n for n in (14, 21, 35, 42, 45) if n < at)]) + 1} to {first}" in result.problem
    store.close()


def test_records_cut_off_after_a_checkpoint_are_caught(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    db = tmp_path / "log.db"
    path = tmp_path / "cp.jsonl"
    logged(f"sqlite:///{db}", path, key, 30, every=10).close()
    con = sqlite3.connect(db)
    con.execute("DELETE FROM charter_records WHERE seq > 25")
    con.commit()
    con.close()
    store = open_store(f"sqlite:///{db}")
    assert verify(store.read()).ok
    result = verify_checkpoints(store.read(), read_checkpoints(path), [key.public_key()])
    assert not result.ok and "cut off the end" in result.problem and "covers 30" in result.problem
    store.close()


def test_a_forged_or_altered_checkpoint_is_refused(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    db = tmp_path / "log.db"
    path = tmp_path / "cp.jsonl"
    logged(f"sqlite:///{db}", path, key, 20, every=10).close()
    rechain_sqlite(db, 3, flip_effect)
    store = open_store(f"sqlite:///{db}")
    heads = {int(json.loads(d)["n"]): json.loads(d)["hash"] for _, d in store.read()}
    # the attacker signs the forged heads with a key of their own: not trusted
    own = Ed25519PrivateKey.generate()
    forged = [sign(own, n, heads[n], NOW) for n in (10, 20)]
    result = verify_checkpoints(store.read(), forged, [key.public_key()])
    assert not result.ok and "not a trusted key" in result.problem
    # or edits the genuine checkpoints' heads: the signature no longer verifies
    altered = [{**cp, "head": heads[cp["n"]]} for cp in read_checkpoints(path)]
    result = verify_checkpoints(store.read(), altered, [key.public_key()])
    assert not result.ok and "signature does not verify" in result.problem
    # the genuine checkpoints, untouched, name the forgery
    assert (
        "record 14 is not the record signed"
        in verify_checkpoints(store.read(), read_checkpoints(path), [key.public_key()]).problem
    )
    store.close()


def test_jsonl_store_rechained_is_caught(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    path = tmp_path / "cp.jsonl"
    logged(f"jsonl://{tmp_path / 'log'}", path, key, 20, every=10).close()
    log = tmp_path / "log" / "log.jsonl"

    lines = [json.loads(x) for x in log.read_text().splitlines()]
    prev_hash, prev_n, out = "0" * 64, 0, []
    for item in lines:
        rec = json.loads(base64.b64decode(item["data"]))
        body = rec["body"]
        if rec["n"] == 5:
            parsed = json.loads(body)
            flip_effect(parsed)
            body = json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        record, prev_hash, prev_n = link_after(prev_hash, prev_n, body.encode())
        out.append(json.dumps({"seq": item["seq"], "data": base64.b64encode(record).decode()}))
    log.write_text("\n".join(out) + "\n")
    store = open_store(f"jsonl://{tmp_path / 'log'}")
    assert verify(store.read()).ok
    assert not verify_checkpoints(store.read(), read_checkpoints(path), [key.public_key()]).ok


def test_keys_files_and_their_errors(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    made = load_signing_key(path, create=True)
    assert os.stat(path).st_mode & 0o077 == 0  # only the owner can read it
    again = load_signing_key(path)
    assert again.public_key().public_bytes_raw() == made.public_key().public_bytes_raw()
    # the public key is read from a signing key file too
    assert load_public_key(path).public_bytes_raw() == made.public_key().public_bytes_raw()
    with pytest.raises(CheckpointError) as err:
        load_signing_key(tmp_path / "missing.key")
    assert err.value.code == "H003"
    (tmp_path / "bad.key").write_text("not a key\n")
    with pytest.raises(CheckpointError) as err:
        load_public_key(tmp_path / "bad.key")
    assert err.value.code == "H004"
    (tmp_path / "bad.jsonl").write_text('{"n": 1, "head": "x"}\nnot json\n')
    with pytest.raises(CheckpointError) as err:
        read_checkpoints(tmp_path / "bad.jsonl")
    assert err.value.code == "H005" and "bad.jsonl:2" in str(err.value)


def charter(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CHARTER_LOG_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120
    )


def test_cli_evaluate_checkpoint_verify_and_a_forgery(tmp_path: Path) -> None:
    facts = str(ROOT / "examples" / "requests" / "access.jsonl")
    pol = str(POLICIES)
    run = charter(
        tmp_path, "evaluate", "--domain", "access", "--facts", facts, "--policies", pol, "--now", "2025-06-30"
    )
    assert run.returncode == 0, run.stderr
    home = Path(os.environ["CHARTER_HOME"])  # the keys are the user's, never beside the data (engine.keyhome)
    assert (home / "charter.signing.key").exists() and not (tmp_path / "charter.signing.key").exists()
    assert (tmp_path / "charter.checkpoints.jsonl").exists()
    pub = charter(tmp_path, "log", "public-key")
    assert pub.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    (tmp_path / "auditor.pem").write_text(pub.stdout)
    on_demand = charter(tmp_path, "log", "checkpoint", "--out", "held-by-auditor.jsonl")
    assert on_demand.returncode == 0, on_demand.stderr
    held = json.loads(on_demand.stdout)
    ok = charter(tmp_path, "log", "verify", "--checkpoints", "held-by-auditor.jsonl", "--public-key", "auditor.pem")
    assert ok.returncode == 0 and f"ok: {held['n']} record(s)" in ok.stdout, ok.stdout + ok.stderr

    rechain_sqlite(tmp_path / "charter.db", 7, flip_effect)
    assert charter(tmp_path, "log", "verify", "--checkpoints", "none").returncode == 0  # the chain alone is fooled
    beside = charter(tmp_path, "log", "verify")  # the checkpoints the log wrote beside itself are read by default
    assert beside.returncode == 1 and "was changed and the chain after it rebuilt" in beside.stdout
    bad = charter(tmp_path, "log", "verify", "--checkpoints", "held-by-auditor.jsonl", "--public-key", "auditor.pem")
    assert bad.returncode == 1 and f"record {held['n']} is not the record signed" in bad.stdout
    # and `log checkpoint` refuses to sign the forged head
    refused = charter(tmp_path, "log", "checkpoint", "--out", "held-by-auditor.jsonl")
    assert refused.returncode == 1 and "not signing: record" in refused.stderr
    assert len(read_checkpoints(tmp_path / "held-by-auditor.jsonl")) == 1
