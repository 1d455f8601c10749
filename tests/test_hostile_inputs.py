"""Hostile inputs and files: what an attacker's facts, ids, URLs and files cannot do.

* facts holding the log's own markers (`$sealed`, `$withheld`) are refused where facts enter
  the engine (``engine.core.state.decide``), named, and never logged;
* a hostile customer id (300 characters, a NUL, a lone surrogate) is refused for that
  customer alone: the rest of the batch is decided and logged, on SQLite, JSONL and
  PostgreSQL; and every store keeps a key whatever its name;
* an in-memory SQLite store is refused;
* a damaged JSONL line is reported by `log verify` at its place, a cut-short last line noted;
* what the stores create is their owner's only, and a key file others may read is refused.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, NOW, POLICIES

from engine import Decision, Engine
from engine.audit import DecisionLog, Protector
from engine.audit.checkpoint import CheckpointError, load_signing_key
from engine.audit.protect import SEALED, SealError, load_key
from engine.cli import main
from engine.core.state import RESERVED_KEYS
from engine.errors import FactErrors
from engine.plugins import open_store
from engine.storage import StorageError, Store

KEY = bytes(range(32))


def _customers(n: int = 6) -> list[dict[str, Any]]:
    with EXAMPLES.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()][:n]


@pytest.fixture(params=["sqlite", "jsonl", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    if request.param == "jsonl":
        return f"jsonl://{tmp_path / 'log'}"
    return str(request.getfixturevalue("fresh_pg"))


def _engine(store: Store) -> Engine:
    engine = Engine(POLICIES, log=DecisionLog(store, Protector(store, KEY)))
    engine.use_snapshot(engine.build_snapshot(_customers(60), now=NOW))
    return engine


def _key_file(tmp_path: Path) -> Path:
    path = tmp_path / "log.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(KEY.hex() + "\n")
    return path


# -- 1. the log's markers --------------------------------------------------------------------


def test_the_markers_refused_are_the_logs_own() -> None:
    assert SEALED in RESERVED_KEYS and "$withheld" in RESERVED_KEYS


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"remarks": {"$sealed": "AAAA"}}, "remarks.$sealed"),
        ({"remarks": [1, {"note": {"$withheld": "x"}}]}, "remarks[1].note.$withheld"),
        ({"$sealed": "AAAA"}, "$sealed"),
    ],
)
def test_facts_holding_a_log_marker_are_refused_named_and_not_logged(
    tmp_path: Path, extra: dict[str, Any], field: str
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'log.db'}")
    engine = _engine(store)
    good = _customers(3)
    bad = dict(good[1], **extra)
    with pytest.raises(FactErrors) as refused:
        engine.evaluate("classification", bad, now=NOW)
    assert refused.value.code == "F301" and refused.value.field == field
    assert list(store.read()) == []  # nothing logged for it
    out = list(engine.evaluate_batch("classification", [good[0], bad, good[2]], now=NOW))
    assert [type(o) for o in out] == [Decision, FactErrors, Decision]
    assert isinstance(out[1], FactErrors) and out[1].field == field
    assert len(list(store.read())) == 2
    # a request of another domain (the record nested in it) is refused the same way
    engine_without_log = Engine(POLICIES)
    with pytest.raises(FactErrors) as again:
        list(engine_without_log.evaluate_batch("tiering", [bad], now=NOW, errors="raise"))
    assert again.value.code == "F301"
    # replay of the log's other records still works
    assert main(["replay", "--store", f"sqlite:///{tmp_path / 'log.db'}", "--key-file", str(_key_file(tmp_path))]) == 0


def test_other_dollar_keys_are_ordinary_keys() -> None:
    """Only the log's markers are reserved: an exported document's `$oid` is an ordinary key."""
    decision = Engine(POLICIES).evaluate("classification", dict(_customers(1)[0], ref={"$oid": "5f1d"}), now=NOW)
    assert isinstance(decision, Decision)


def test_replay_reports_a_record_with_a_malformed_sealed_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    store = open_store(url)
    engine = _engine(store)
    customer = _customers(2)
    engine.evaluate("classification", customer[0], now=NOW)
    # a record written before the boundary refused markers (bypassing it, as an old version did)
    hostile = dict(customer[1], remarks={SEALED: "!!!not base64"})
    state = engine._state
    period = state.period(NOW)
    program = state.program(period, "classification", NOW)
    assert engine.log is not None
    engine.log.record(
        [(program.evaluate(hostile, NOW), hostile, program, None)], state.bundle, engine.registry, period.classifier
    )
    code = main(["replay", "--store", url, "--key-file", str(_key_file(tmp_path))])
    out = capsys.readouterr()
    assert "C099" not in out.out + out.err  # not a failure of the whole replay
    assert code in (0, 1)


# -- 2. hostile ids ----------------------------------------------------------------------------


def test_a_hostile_id_is_refused_alone_and_the_batch_logged(store_url: str) -> None:
    store = open_store(store_url)
    try:
        engine = _engine(store)
        batch = _customers(6)
        batch[1]["id"] = "x" * 300
        batch[3]["id"] = "a\x00b"
        batch[4]["id"] = "\ud800"
        for domain in ("tiering", "classification"):
            out = list(engine.evaluate_batch(domain, [dict(c) for c in batch], now=NOW))
            refused = {i: o for i, o in enumerate(out) if isinstance(o, FactErrors)}
            assert sorted(refused) == [1, 3, 4], domain
            assert [refused[i].code for i in (1, 3, 4)] == ["F302", "F303", "F305"]  # F305: no text holds one
            assert all(e.field == "id" for e in refused.values())
        logged = [json.loads(json.loads(data)["body"]) for _, data in store.read()]
        assert len(logged) == 6  # the three good customers, in both domains
        assert {b["subject"] for b in logged} == {batch[i]["id"] for i in (0, 2, 5)}
        # an id of exactly the bound is a customer like any other
        ok = dict(batch[0], id="y" * 200)
        assert engine.evaluate("classification", ok, now=NOW).subject == "y" * 200
    finally:
        store.close()


def test_a_request_subject_is_bounded_and_named(tmp_path: Path) -> None:
    """The subject of a domain's request comes from its own field: that field is named."""
    with (EXAMPLES.parent / "requests" / "retention.jsonl").open(encoding="utf-8") as f:
        request = json.loads(f.readline())
    request["customer"] = "z" * 201
    with pytest.raises(FactErrors) as refused:
        Engine(POLICIES).evaluate("retention", request, now=NOW)
    assert refused.value.code == "F302" and refused.value.field == "customer"


@pytest.mark.parametrize("name", ["customer:" + "x" * 300, "customer:a\x00b", "customer:\ud800", "~sha256:" + "0" * 64])
def test_every_store_keeps_a_key_whatever_its_name(store_url: str, name: str) -> None:
    store = open_store(store_url)
    try:
        assert store.add_keys({name: b"k1", "customer:plain": b"k2"}) == {name: b"k1", "customer:plain": b"k2"}
        assert store.add_keys({name: b"other"}) == {name: b"k1"}  # the first writer's key stays
        assert store.get_keys([name]) == {name: b"k1"}
        assert store.delete_key(name) and store.get_keys([name]) == {}
        assert not store.delete_key(name)
        assert store.get_keys(["customer:plain"]) == {"customer:plain": b"k2"}
    finally:
        store.close()


def test_jsonl_key_files_have_fixed_length_names_and_old_ones_are_still_read(tmp_path: Path) -> None:
    store = open_store(f"jsonl://{tmp_path / 'log'}")
    store.add_keys({"customer:" + "é" * 300: b"k"})
    assert [len(p.name) for p in (tmp_path / "log" / "keys").iterdir()] == [64]
    # a key an earlier version stored under the base64 of its name
    old = tmp_path / "log" / "keys" / base64.urlsafe_b64encode(b"customer:C1").decode()
    old.write_bytes(b"old")
    assert store.get_keys(["customer:C1"]) == {"customer:C1": b"old"}
    assert store.add_keys({"customer:C1": b"new"}) == {"customer:C1": b"old"}  # kept, not shadowed
    assert store.delete_key("customer:C1") and not old.exists()
    assert store.get_keys(["customer:C1"]) == {}  # erased under both names


# -- 3. in-memory SQLite ---------------------------------------------------------------------


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite:///file:x?mode=memory&uri=true"])
def test_an_in_memory_store_is_refused(url: str) -> None:
    with pytest.raises(StorageError) as refused:
        open_store(url)
    assert refused.value.code == "D007" and f"`{url}`" in refused.value.message
    assert refused.value.hint and "sqlite:///" in refused.value.hint


def test_an_in_memory_store_is_allowed_when_asked_for() -> None:
    from charter_plugins.sql import SqlStore

    store = SqlStore("sqlite://", memory=True)
    assert store.append([b"x"]) == [1]
    store.close()


# -- 4. a damaged JSONL log --------------------------------------------------------------------


def _jsonl_log(tmp_path: Path, n: int = 3) -> tuple[str, Path]:
    url = f"jsonl://{tmp_path / 'log'}"
    store = open_store(url)
    engine = Engine(POLICIES, log=DecisionLog(store))
    for c in _customers(n):
        engine.evaluate("classification", c, now=NOW)
    return url, tmp_path / "log" / "log.jsonl"


@pytest.mark.parametrize("damage", [b"{not json\n", b'{"seq": 2}\n', b'{"seq": 2, "data": "%%%"}\n'])
def test_a_damaged_line_is_reported_at_its_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: bytes
) -> None:
    url, log = _jsonl_log(tmp_path)
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(lines[0] + damage + lines[2])
    assert main(["log", "verify", "--store", url]) == 1
    out = capsys.readouterr().out
    assert "record 2: the record is not a decision record (1 good record(s) before it)" in out
    with pytest.raises(StorageError) as refused:  # appending after a damaged last line: refused, named
        log.write_bytes(lines[0] + damage)
        open_store(url).append([b"x"])
    assert refused.value.code == "D008"


def test_a_cut_short_last_line_is_ignored_and_noted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url, log = _jsonl_log(tmp_path)
    whole = log.read_bytes()
    log.write_bytes(whole + whole.splitlines()[0][:-3])  # a write a crash cut short
    assert main(["log", "verify", "--store", url]) == 0
    out = capsys.readouterr().out
    assert "1 unacknowledged partial line at the end, ignored" in out and "ok: 3 record(s)" in out
    log.write_bytes(whole)
    assert main(["log", "verify", "--store", url]) == 0
    assert "partial" not in capsys.readouterr().out


# -- 5. files are their owner's only -------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_sqlite_files_are_the_owners_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = open_store(f"sqlite:///{tmp_path / 'charter.db'}")
        store.append([b"x"])
        made = {p.name: _mode(p) for p in tmp_path.iterdir()}
        store.close()
    finally:
        os.umask(old)
    assert "charter.db" in made and "charter.db-wal" in made
    assert all(mode == 0o600 for mode in made.values()), made


def test_jsonl_files_are_the_owners_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = open_store(f"jsonl://{tmp_path / 'log'}")
        store.append([b"x"])
        store.put_blob("bundle", "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881", b"x")
        store.add_keys({"customer:C1": b"k"})
    finally:
        os.umask(old)
    root = tmp_path / "log"
    dirs = [root, root / "blobs", root / "blobs" / "bundle", root / "keys"]
    assert {_mode(d) for d in dirs} == {0o700}
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(files) == 3 and {_mode(p) for p in files} == {0o600}


def test_a_key_file_others_may_read_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHARTER_LOG_KEY", raising=False)
    monkeypatch.delenv("CHARTER_ALLOW_SHARED_KEY", raising=False)
    path = _key_file(tmp_path)
    assert load_key(path) == KEY
    path.chmod(0o644)
    with pytest.raises(SealError) as refused:
        load_key(path)
    assert refused.value.code == "K007" and str(path) in refused.value.message
    assert refused.value.hint and f"chmod 600 {path}" in refused.value.hint
    monkeypatch.setenv("CHARTER_ALLOW_SHARED_KEY", "1")
    assert load_key(path) == KEY
    made = tmp_path / "new.key"
    load_key(made, create=True)
    assert _mode(made) == 0o600


def test_a_signing_key_others_may_read_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHARTER_ALLOW_SHARED_KEY", raising=False)
    path = tmp_path / "signing.key"
    load_signing_key(path, create=True)
    assert _mode(path) == 0o600
    load_signing_key(path)
    path.chmod(0o640)
    with pytest.raises(CheckpointError) as refused:
        load_signing_key(path)
    assert refused.value.code == "H007" and str(path) in refused.value.message
    assert refused.value.hint and f"chmod 600 {path}" in refused.value.hint
    monkeypatch.setenv("CHARTER_ALLOW_SHARED_KEY", "1")
    load_signing_key(path)


def test_a_lone_surrogate_anywhere_is_refused_named_and_never_reaches_the_log(store_url: str) -> None:
    """A text UTF-8 cannot hold (json.loads gives one for `"\\ud800"`) would fail the log's
    encoding after the decision: refused at the boundary instead, the batch going on."""
    store = open_store(store_url)
    try:
        engine = _engine(store)
        batch = _customers(4)
        batch[1]["name"] = "bad \ud800 name"
        batch[2]["notes"] = ["fine", {"deep": "x\udfff"}]
        batch[3]["b\ud800d key"] = 1
        out = list(engine.evaluate_batch("classification", batch, now=NOW))
        assert isinstance(out[0], Decision)
        assert [(o.code, o.errors[0].field) for o in out[1:] if isinstance(o, FactErrors)] == [
            ("F305", "name"),
            ("F305", "notes[1].deep"),
            ("F305", "(the facts)"),
        ]
        assert len(list(store.read())) == 1  # only the good customer's decision
    finally:
        store.close()


def test_a_whole_number_past_64_bits_is_refused_named_and_never_reaches_the_log(store_url: str) -> None:
    """Conditions compute in 64 bits and the log's JSON would fail on a 5,000-digit number
    (Python's int-to-text limit): refused at the boundary, the batch going on."""
    store = open_store(store_url)
    try:
        engine = _engine(store)
        batch = _customers(3)
        batch[1]["purchases_12m"] = 10**5000
        batch[2]["notes"] = [{"n": -(2**63) - 1}]
        out = list(engine.evaluate_batch("tiering", batch, now=NOW))
        assert isinstance(out[0], Decision)
        assert [(o.code, o.errors[0].field) for o in out[1:] if isinstance(o, FactErrors)] == [
            ("F306", "purchases_12m"),
            ("F306", "notes[0].n"),
        ]
        ok = dict(_customers(1)[0], purchases_12m=2**63 - 1)  # the largest is a number like any other
        assert not isinstance(next(iter(engine.evaluate_batch("classification", [ok], now=NOW))), FactErrors)
    finally:
        store.close()
