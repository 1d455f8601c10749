"""Erasure that lasts: once a customer is erased, no copy of their data key opens, with any key.

An attacker here holds the master key and every file: the store's (SQLite's database, WAL and
shared-memory files; PostgreSQL's whole data directory, pg_wal included, after a checkpoint)
and every file beside them (key files, keyrings). They are even told the exact bytes the
customer's data key was stored as before the erase. They try each 64-hex-digit string of
every file as a key, alone or under the master key, and fail: the key-encryption key that
wrapped those bytes exists nowhere any more. Before keyrings (the master key wrapping the
data keys directly), the bytes stayed in SQLite's WAL and PostgreSQL's old row versions and
opened with the master key alone.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import sqlalchemy as sa
from conftest import EXAMPLES, NOW, POLICIES
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engine import Engine
from engine.audit import DecisionLog, Protector, load_key, verify
from engine.audit.protect import SealError
from engine.audit.replay import Replayer, records
from engine.cli import main
from engine.plugins import open_store
from engine.storage import Store

KEY = bytes(range(32))
HEX_KEY = re.compile(rb"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")  # 32 bytes in hex, as key files hold them


def _people(n: int) -> list[dict[str, Any]]:
    with EXAMPLES.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [c for c in rows if "national_id" in c][:n]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    return str(request.getfixturevalue("fresh_pg"))


def _log(store: Store, protector: Protector, people: list[dict[str, Any]]) -> None:
    engine = Engine(POLICIES, log=DecisionLog(store, protector))
    for c in people:
        engine.evaluate("classification", c, now=NOW)


def _store_files(url: str) -> list[Path]:
    """Every file the store keeps its data in, as an attacker with the disk would read them."""
    if url.startswith("sqlite"):
        db = Path(url.removeprefix("sqlite:///"))
        return sorted(p for p in db.parent.glob(db.name + "*") if p.is_file())
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text("CHECKPOINT"))  # what is in shared buffers, on disk too
    engine.dispose()
    data = Path(parse_qs(urlparse(url).query)["host"][0]) / "data"
    files = sorted(p for p in data.rglob("*") if p.is_file())
    assert any(p.parent.name == "pg_wal" for p in files)
    return files


def _candidate_keys(files: list[Path]) -> set[bytes]:
    """Every 32-byte key any file holds in hex: the master key's file, keyrings, anything."""
    found = set()
    for p in files:
        found.update(bytes.fromhex(h.decode()) for h in HEX_KEY.findall(p.read_bytes()))
    return found


def _recover(wrapped: bytes, name: str, master: bytes, keks: set[bytes]) -> AESGCM | None:
    """The data key ``wrapped`` holds, by every way the attacker knows: the master key alone
    (keys as stored before keyrings), or any candidate key first, then the master key."""
    inners = [wrapped]
    for kek in keks:
        for head in (1, 9):  # a version byte and an 8-byte key id, or less
            try:
                inners.append(AESGCM(kek).decrypt(wrapped[head : head + 12], wrapped[head + 12 :], wrapped[:head]))
            except (InvalidTag, ValueError):
                continue
    for inner in inners:
        try:
            return AESGCM(AESGCM(master).decrypt(inner[:12], inner[12:], name.encode()))
        except (InvalidTag, ValueError):
            continue
    return None


def _sealed_id(store: Store, subject: str) -> dict[str, str]:
    return next(body["facts"]["id"] for _, _, body in records(store) if body["subject"] == subject)


def test_an_erased_key_opens_with_no_key_from_any_file(url: str, tmp_path: Path) -> None:
    key_file = tmp_path / "charter.key"
    master = load_key(key_file, create=True)
    people = _people(4)
    gone, kept = str(people[0]["id"]), str(people[1]["id"])
    store = open_store(url)  # stays open through the erase, as a running server would
    try:
        _log(store, Protector(store, master), people)
        name = f"customer:{gone}"
        wrapped = store.get_keys([name])[name]  # the attacker is told the very bytes
        sealed = _sealed_id(store, gone)
        kept_wrapped = store.get_keys([f"customer:{kept}"])[f"customer:{kept}"]
        assert main(["log", "erase", gone, "--store", url, "--key-file", str(key_file)]) == 0

        files = _store_files(url)
        everything = files + sorted(p for p in tmp_path.rglob("*") if p.is_file() and p not in files)
        raw = {p: p.read_bytes() for p in everything}
        keys = _candidate_keys(everything)
        assert master in keys  # the attacker has the master key, and every key of every file
        # no key of any file, nor the master key, opens the erased key's stored bytes
        assert _recover(wrapped, name, master, keys) is None
        # nor another customer's key as it was stored before the erase (its copies are as dead)
        assert _recover(kept_wrapped, f"customer:{kept}", master, keys) is None
        copies = [p.name for p, data in raw.items() if wrapped in data]
        if url.startswith("sqlite"):
            # checkpointed into the database and the WAL truncated, secure_delete on: no copy at all
            assert copies == []
            assert any(store.get_keys([f"customer:{kept}"])[f"customer:{kept}"] in d for d in raw.values())
        else:
            assert copies  # PostgreSQL keeps the deleted row's bytes (old row version, pg_wal): they open nothing
        # while the log goes on: the chain verifies, every other customer's values open
        assert verify(store.read()).ok
        with pytest.raises(SealError) as err:
            Protector(store, master).open(gone, "id", sealed)
        assert err.value.code == "K004"
        with Replayer(store, Protector(store, master)) as replayer:
            report = replayer.run()
        assert (report.total, report.same, report.unreadable) == (4, 3, 1)
    finally:
        store.close()


def test_the_same_attack_opens_a_key_kept_without_a_keyring(tmp_path: Path) -> None:
    """The attack works where it should: on a log with no keyring (erasing deletes the row
    only), the erased key is in the WAL and opens with the master key; the sealed value too."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    people = _people(3)
    gone = str(people[0]["id"])
    store = open_store(url)
    try:
        _log(store, Protector(store, KEY, keyring=False), people)
        name = f"customer:{gone}"
        wrapped = store.get_keys([name])[name]
        sealed = _sealed_id(store, gone)
        protector = Protector(store, KEY, keyring=False)
        done = protector.shred(gone)
        assert (done.erased, done.lasting) == (True, False)
        files = _store_files(url)
        assert [p.name for p in files if wrapped in p.read_bytes()] == ["log.db-wal"]
        key = _recover(wrapped, name, KEY, set())
        assert key is not None
        raw = base64.b64decode(sealed["$sealed"])
        assert json.loads(key.decrypt(raw[:12], raw[12:], b"id")) == gone
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["sqlite", "jsonl"])
def test_a_log_from_before_keyrings_migrates_on_its_first_erase(tmp_path: Path, backend: str) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}" if backend == "sqlite" else f"jsonl://{tmp_path / 'log'}"
    people = _people(5)
    names = [f"customer:{c['id']}" for c in people]
    store = open_store(url)
    try:
        _log(store, Protector(store, KEY, keyring=False), people)  # data keys under the master key alone
        before = store.get_keys(names)
        assert {len(v) for v in before.values()} == {60}
        key_file = tmp_path / "k"
        key_file.write_text(KEY.hex() + "\n")
        key_file.chmod(0o600)
        assert main(["log", "erase", str(people[0]["id"]), "--store", url, "--key-file", str(key_file)]) == 0
        ring = tmp_path / "k.keyring"
        assert ring.stat().st_mode & 0o777 == 0o600
        after = store.get_keys(names)
        assert names[0] not in after and len(after) == 4
        assert {v[0] for v in after.values()} == {1}  # each wrapped again, under the keyring's KEK
        if backend == "sqlite":  # the rows the master key alone opened are gone from every file
            files = _store_files(url)
            assert [n for n in names if any(before[n] in p.read_bytes() for p in files)] == []
        # a protector given the master key only finds the keyring the store names
        with Replayer(store, Protector(store, KEY)) as replayer:
            report = replayer.run()
        assert (report.total, report.same, report.unreadable) == (5, 4, 1)
    finally:
        store.close()


def test_a_writer_running_through_an_erase_wraps_new_keys_under_the_new_kek(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    people = _people(8)
    store = open_store(url)
    try:
        writer = Protector(store, KEY)  # a server's, open all along
        _log(store, writer, people[:4])
        ring = tmp_path / "log.db.keyring"
        first = json.loads(ring.read_text())
        monkeypatch.setenv("CHARTER_LOG_KEY", KEY.hex())
        assert main(["log", "erase", str(people[0]["id"]), "--store", url]) == 0
        second = json.loads(ring.read_text())
        (old,) = first["stores"].values()
        (new,) = second["stores"].values()
        assert len(old) == len(new) == 1 and old[0] != new[0]  # one KEK, a new one
        _log(store, writer, people[4:])  # new customers' keys made by the writer after the erase
        stored = store.get_keys([f"customer:{c['id']}" for c in people[1:]])
        assert {v[1:9].hex() for v in stored.values()} == {new[0][0]}
        with Replayer(store, Protector(store, KEY)) as replayer:  # a process started afresh
            report = replayer.run()
        assert (report.total, report.same, report.unreadable) == (8, 7, 1)
    finally:
        store.close()


def test_a_keyring_open_to_others_or_missing_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    people = _people(2)
    store = open_store(url)
    try:
        _log(store, Protector(store, KEY), people)
        ring = tmp_path / "log.db.keyring"
        assert ring.stat().st_mode & 0o777 == 0o600
        ring.chmod(0o644)
        with pytest.raises(SealError) as err:
            Protector(store, KEY).preload([str(people[0]["id"])])
        assert err.value.code == "K009" and "open to its group or others" in err.value.message
        ring.rename(tmp_path / "elsewhere.keyring")
        with pytest.raises(SealError) as err:
            Protector(store, KEY).preload([str(people[0]["id"])])
        assert err.value.code == "K008" and str(ring) in err.value.message
        # moved: named by CHARTER_LOG_KEYRING (or keyring=), it opens again
        (tmp_path / "elsewhere.keyring").chmod(0o600)
        moved = Protector(store, KEY, keyring=tmp_path / "elsewhere.keyring")
        assert moved.open(str(people[0]["id"]), "id", _sealed_id(store, str(people[0]["id"]))) == people[0]["id"]
    finally:
        store.close()


def test_without_a_place_for_a_keyring_erase_says_it_does_not_last(
    fresh_pg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    people = _people(2)
    store = open_store(fresh_pg)
    try:
        _log(store, Protector(store, KEY), people)  # PostgreSQL, a master key given as bytes: no keyring
        monkeypatch.setenv("CHARTER_LOG_KEY", KEY.hex())
        monkeypatch.delenv("CHARTER_LOG_KEYRING", raising=False)
        assert main(["log", "erase", str(people[0]["id"]), "--store", fresh_pg]) == 0
        err = capsys.readouterr().err
        assert "this log has no keyring" in err and "CHARTER_LOG_KEYRING" in err
        # given a place for one, the next erase makes the keyring and lasts
        monkeypatch.setenv("CHARTER_LOG_KEYRING", str(tmp_path / "pg.keyring"))
        assert main(["log", "erase", str(people[1]["id"]), "--store", fresh_pg]) == 0
        said = capsys.readouterr()
        assert "no keyring" not in said.err and "wrapped under a new key of the keyring" in said.out
        assert (tmp_path / "pg.keyring").stat().st_mode & 0o777 == 0o600
    finally:
        store.close()


def test_keys_made_while_erasures_run_all_open_afterwards(tmp_path: Path) -> None:
    """A writer making data keys (a server's) while another erases (the command): every key
    the writer made is wrapped under a KEK that still exists when it is done."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    store, other = open_store(url), open_store(url)
    try:
        writer, eraser = Protector(store, KEY), Protector(other, KEY)
        sealed = {f"C{i:04}": writer.seal_many([(f"C{i:04}", "id", f"C{i:04}")])[0] for i in range(20)}
        made: dict[str, dict[str, str]] = {}
        failed: list[BaseException] = []

        def write() -> None:
            try:
                for i in range(20, 220):
                    made[f"C{i:04}"] = writer.seal_many([(f"C{i:04}", "id", f"C{i:04}")])[0]
            except BaseException as err:  # reported below, in the test's thread
                failed.append(err)

        thread = threading.Thread(target=write)
        thread.start()
        gone = [f"C{i:04}" for i in range(5)]
        for who in gone:
            assert eraser.shred(who).lasting
        thread.join()
        assert failed == []
        fresh = Protector(store, KEY)
        opened = {who: fresh.open(who, "id", v) for who, v in {**sealed, **made}.items() if who not in gone}
        assert opened == {who: who for who in opened} and len(opened) == 215
    finally:
        store.close()
        other.close()


def test_a_running_process_forgets_a_key_another_process_erased(tmp_path: Path) -> None:
    """A service keeps data keys cached; `charter log erase` in another process rewrites the
    keyring, and the service's next use of the keys reads them again: the erased customer's
    values no longer open there, nor are new decisions sealed under the erased key."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    key_file = tmp_path / "charter.key"
    master = load_key(key_file, create=True)
    people = _people(2)
    gone, kept = str(people[0]["id"]), str(people[1]["id"])
    store = open_store(url)
    try:
        running = Protector(store, master)  # the service's, open through the erase
        _log(store, running, people)
        sealed, other = _sealed_id(store, gone), _sealed_id(store, kept)
        assert running.open(gone, "id", sealed) == gone  # its key is cached now
        erase = [sys.executable, "-m", "engine.cli", "log", "erase", gone, "--store", url, "--key-file", str(key_file)]
        done = subprocess.run(erase, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        with pytest.raises(SealError) as err:
            running.open(gone, "id", sealed)
        assert err.value.code == "K004"
        assert running.open(kept, "id", other) == kept  # the others' keys, read again, still open
        _log(store, running, people[:1])  # the erased customer decided again: sealed under a new key
        with Replayer(store, Protector(store, master)) as replayer:
            report = replayer.run()
        # the record from before the erase does not open under the customer's new key: said as it
        # is (K011), never counted as unreadable, since an altered value looks the same
        assert (report.total, report.same, report.unreadable) == (3, 2, 0), report.to_dict()
        assert [e["code"] for e in report.errors] == ["K011"] and gone in report.errors[0]["error"]
    finally:
        store.close()


def test_a_running_process_forgets_a_key_erased_from_a_log_without_a_keyring(tmp_path: Path) -> None:
    """A log from before keyrings gets one at its first erasure: a process open through it asks
    for the keyring row again (at most once a second) and forgets its cached keys."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    key_file = tmp_path / "charter.key"
    master = load_key(key_file, create=True)
    people = _people(2)
    gone = str(people[0]["id"])
    store = open_store(url)
    try:
        running = Protector(store, master, keyring=False)  # keys under the master key alone, as logs were
        _log(store, running, people)
        sealed = _sealed_id(store, gone)
        assert running.open(gone, "id", sealed) == gone
        erase = [sys.executable, "-m", "engine.cli", "log", "erase", gone, "--store", url, "--key-file", str(key_file)]
        done = subprocess.run(erase, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        time.sleep(1.1)  # the keyring row is asked for at most once a second
        with pytest.raises(SealError) as err:
            running.open(gone, "id", sealed)
        assert err.value.code == "K004"
    finally:
        store.close()
