"""`charter log verify` checks what the records depend on beyond the hash chain (#19): the
policy files, plugin set and population snapshot they name, stored content-addressed beside
them, and the customer keys their sealed values need — each problem named with the records
it affects. Real stores: JSONL (blobs are files) and SQLite (altered through SQL)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, NOW, POLICIES

from engine import Engine
from engine.audit import DecisionLog, Protector
from engine.cli import main
from engine.plugins import open_store

KEY = bytes(range(32))


def _customers(n: int) -> list[dict[str, Any]]:
    with EXAMPLES.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()][:n]


def _log(url: str, n: int = 4) -> list[dict[str, Any]]:
    store = open_store(url)
    engine = Engine(POLICIES, log=DecisionLog(store, Protector(store, KEY)))
    people = _customers(n)
    engine.use_snapshot(engine.build_snapshot(_customers(200), now=NOW))
    for c in people:
        engine.evaluate("tiering", c, now=NOW)
        engine.evaluate("classification", c, now=NOW)
    store.close()
    return people


def _verify(url: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["log", "verify", "--store", url])
    return code, capsys.readouterr().out


@pytest.fixture
def jsonl(tmp_path: Path) -> tuple[str, Path, list[dict[str, Any]]]:
    url = f"jsonl://{tmp_path / 'log'}"
    return url, tmp_path / "log", _log(url)


def test_an_intact_log_says_what_it_checked(
    jsonl: tuple[str, Path, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _, people = jsonl
    code, out = _verify(url, capsys)
    assert code == 0, out
    # one bundle, one plugin set, one snapshot; every customer's key (their values are sealed)
    assert f"ok: {2 * len(people)} record(s)" in out
    assert f"3 blob(s) and {len(people)} customer key(s) they depend on are intact" in out


@pytest.mark.parametrize("kind", ["bundle", "plugins", "population"])
def test_an_altered_or_missing_blob_is_named_with_the_records_needing_it(
    jsonl: tuple[str, Path, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    url, root, people = jsonl
    (blob,) = (root / "blobs" / kind).iterdir()
    data = blob.read_bytes()
    blob.write_bytes(data.replace(b"0", b"1", 1))  # a threshold edited in place
    code, out = _verify(url, capsys)
    assert code == 1
    line = next(line for line in out.splitlines() if line.startswith("depends:"))
    assert "was altered" in line
    needing = len(people) if kind == "population" else 2 * len(people)  # the snapshot: tiering records only
    assert f"{needing} record(s) (#1, " in line
    blob.unlink()
    code, out = _verify(url, capsys)
    assert code == 1 and "is missing from the store" in out and f"{needing} record(s)" in out
    assert "the hash chain of 8 holds" in out


def test_a_deleted_key_is_reported_unless_it_was_erased(
    jsonl: tuple[str, Path, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url, _, people = jsonl
    gone, erased = str(people[0]["id"]), str(people[1]["id"])
    store = open_store(url)
    assert store.delete_key(f"customer:{gone}")  # behind the log's back
    store.close()
    key_file = tmp_path / "key"
    key_file.write_text(KEY.hex() + "\n")
    key_file.chmod(0o600)
    assert main(["log", "erase", "--store", url, "--key-file", str(key_file), erased]) == 0
    capsys.readouterr()
    code, out = _verify(url, capsys)
    assert code == 1
    problems = [line for line in out.splitlines() if line.startswith("depends:")]
    assert len(problems) == 1, out
    assert f"the data key of `{gone}` is missing and was never erased" in problems[0]
    assert "2 record(s) (#1, #2)" in problems[0]
    # replay tells the two apart too: the erased customer's records are unreadable by design,
    # the lost key's are errors, and the replay fails (it exited 0 when every key was deleted)
    code = main(["replay", "--store", url, "--key-file", str(key_file), "--json", str(tmp_path / "r.json")])
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert code == 1
    assert report["unreadable"] == 2  # the erased customer's tiering and classification records
    assert [e["seq"] for e in report["errors"]] == [1, 2] and all("[K010]" in e["error"] for e in report["errors"])


def test_sqlite_blob_altered_through_sql(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "charter.db"
    url = f"sqlite:///{db}"
    _log(url, n=2)
    assert _verify(url, capsys)[0] == 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("update charter_blobs set data = data || x'20' where kind = 'bundle'").rowcount == 1
    code, out = _verify(url, capsys)
    assert code == 1 and "bundle blob" in out and "was altered" in out and "4 record(s) (#1, #2, #3, #4)" in out


def test_chain_only_skips_the_dependencies(
    jsonl: tuple[str, Path, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, root, _ = jsonl
    for blob in (root / "blobs" / "bundle").iterdir():
        blob.unlink()
    assert main(["log", "verify", "--store", url, "--chain-only"]) == 0
    assert "blob(s)" not in capsys.readouterr().out


def test_http_verify_names_the_same_problems(jsonl: tuple[str, Path, list[dict[str, Any]]]) -> None:
    from types import SimpleNamespace

    from engine.serve.auditlog import verify_log

    url, root, people = jsonl
    store = open_store(url)
    service: Any = SimpleNamespace(store=store)  # verify_log reads the service's store only
    intact = verify_log(service, None)
    assert intact["ok"] is True and intact["depends"] == [] and intact["blobs_checked"] == 3
    (blob,) = (root / "blobs" / "plugins").iterdir()
    blob.unlink()
    broken = verify_log(service, {})
    store.close()
    assert broken["ok"] is False and broken["count"] == 2 * len(people)
    (problem,) = broken["depends"]
    assert "plugins blob" in problem and "is missing from the store" in problem
