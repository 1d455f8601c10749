"""Hot reload never loads a half-written policy file (docs/deploying.md).

The races are real: a writer thread rewrites `retention.yaml` in place, chunk by chunk with
flushes and pauses, between two valid versions that decide a transaction record differently,
while the main thread reloads. Every chunk boundary is a rule boundary, so most half-written
files are valid policies that decide differently: exactly what must never be served.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import POLICIES

from engine import Engine, PolicyErrors
from engine.api import PolicyWatcher
from engine.core.sources import MANIFEST, read_policies

A = (POLICIES / "retention.yaml").read_bytes()
B = A.replace(b"    period: 5y\n    starts: created\n", b"    period: 10y\n    starts: created\n")
TRANSACTION = {"record_type": "transaction", "created_at": "2021-03-15T00:00:00Z", "record": {"orders_total": 12.5}}
DUE = {A: datetime(2026, 3, 15, tzinfo=UTC), B: datetime(2031, 3, 15, tzinfo=UTC)}
NOW = datetime(2025, 6, 30, tzinfo=UTC)
ROUNDS = 300


def chunks(text: bytes) -> list[bytes]:
    """The file cut before each rule: every prefix of whole chunks is a valid retention policy."""
    parts = text.split(b"\n  - id: ")
    return [parts[0]] + [b"\n  - id: " + p for p in parts[1:]]


def write_in_place(path: Path, text: bytes, truncate_first: bool) -> None:
    with open(path, "wb" if truncate_first else "r+b") as f:
        for part in chunks(text):
            f.write(part)
            f.flush()
            time.sleep(0.001)
        f.truncate()


def write_manifest(directory: Path) -> None:
    """As a deployment tool does: every policy file's sha256, written aside and renamed into place."""
    lines = [f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.name}\n" for f in sorted(directory.glob("*.yaml"))]
    tmp = directory / f"{MANIFEST}.tmp"
    tmp.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp, directory / MANIFEST)


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    d = tmp_path / "policies"
    shutil.copytree(POLICIES, d, ignore=shutil.ignore_patterns("tests"))
    return d


def test_the_two_versions_decide_differently(policies: Path) -> None:
    assert A != B and len(chunks(A)) == 6
    prefix = b"".join(chunks(A)[:2])  # the header and the first rule: a valid policy that decides otherwise
    (policies / "retention.yaml").write_bytes(prefix)
    half = Engine(policies).evaluate("retention", TRANSACTION, now=NOW)
    (policies / "retention.yaml").write_bytes(B)
    assert Engine(policies).evaluate("retention", TRANSACTION, now=NOW).outputs["due"] == DUE[B]
    (policies / "retention.yaml").write_bytes(A)
    assert Engine(policies).evaluate("retention", TRANSACTION, now=NOW).outputs["due"] == DUE[A]
    assert half.outputs["due"] not in DUE.values()


def race(
    policies: Path, engine: Engine, writer: Callable[[int], None], settle: float, codes: set[str]
) -> tuple[dict[bytes, int], int]:
    """Reload while ``writer`` runs ROUNDS rounds; check every reload that succeeds. Returns how
    often each version was loaded, and how many reloads were refused."""
    done = threading.Event()
    failure: list[BaseException] = []

    def write() -> None:
        try:
            for i in range(ROUNDS):
                writer(i)
        except BaseException as exc:  # shown by the main thread
            failure.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=write)
    thread.start()
    loaded = {A: 0, B: 0}
    refused = 0
    try:
        while not done.is_set():
            try:
                engine.reload(settle=settle)
            except PolicyErrors as exc:
                refused += 1
                assert {e.code for e in exc.errors} <= codes, exc.describe()
                time.sleep(0.0005)  # let the writer run
                continue
            text = dict(engine.bundle.sources)["retention.yaml"]
            prefix = A.startswith(text) or B.startswith(text)
            assert text in DUE, f"loaded {len(text)} bytes, neither version (a prefix of one: {prefix})"
            loaded[text] += 1
            assert engine.evaluate("retention", TRANSACTION, now=NOW).outputs["due"] == DUE[text]
            time.sleep(0.001)
    finally:
        done.wait()
        thread.join()
    assert not failure, failure
    return loaded, refused


def test_with_a_manifest_only_whole_listed_files_load(policies: Path) -> None:
    write_manifest(policies)
    engine = Engine(policies, settle=0)
    target = policies / "retention.yaml"
    pauses = random.Random(7)

    def writer(i: int) -> None:
        write_in_place(target, B if i % 2 == 0 else A, truncate_first=i % 4 < 2)
        time.sleep(pauses.uniform(0, 0.003))  # whole, but the manifest still lists the other version
        write_manifest(policies)
        time.sleep(0.02 if i % 10 == 0 else pauses.uniform(0, 0.004))

    loaded, refused = race(policies, engine, writer, settle=0, codes={"C052"})
    assert loaded[A] > 0 and loaded[B] > 0 and refused > 0, (loaded, refused)


def test_without_a_manifest_a_file_is_read_once_it_has_settled(policies: Path) -> None:
    settle = 0.08  # far longer than the writer's pauses between chunks (about a millisecond)
    engine = Engine(policies, settle=settle)
    target = policies / "retention.yaml"
    pauses = random.Random(11)

    def writer(i: int) -> None:
        write_in_place(target, B if i % 2 == 0 else A, truncate_first=i % 4 < 2)
        time.sleep(settle * 1.6 if i % 3 == 0 else pauses.uniform(0, 0.003))

    loaded, refused = race(policies, engine, writer, settle=settle, codes={"C054"})
    assert loaded[A] > 0 and loaded[B] > 0, (loaded, refused)  # a reload waits for the file: few are refused


def test_a_file_that_keeps_changing_is_refused(policies: Path) -> None:
    engine = Engine(policies, settle=0.05)
    old = engine.bundle_version
    target = policies / "retention.yaml"
    stop, typing = threading.Event(), threading.Event()

    def append() -> None:
        with open(target, "ab") as f:
            while not stop.is_set():
                f.write(b"# still typing\n")
                f.flush()
                typing.set()
                time.sleep(0.002)

    thread = threading.Thread(target=append)
    thread.start()
    try:
        typing.wait()  # the file was left alone until now: a reload before this would load it, rightly
        with pytest.raises(PolicyErrors) as caught:
            engine.reload()
    finally:
        stop.set()
        thread.join()
    (error,) = caught.value.errors
    assert error.code == "C054" and error.location.file == str(target)
    assert "`retention.yaml` is still being written" in error.message
    assert engine.bundle_version == old


# -- the manifest, one case at a time -----------------------------------------------------------


def test_a_stale_manifest_refuses_the_reload_and_names_the_file(policies: Path) -> None:
    write_manifest(policies)
    engine = Engine(policies)
    old = engine.bundle_version
    (policies / "retention.yaml").write_bytes(B)
    with pytest.raises(PolicyErrors) as caught:
        engine.reload()
    (error,) = caught.value.errors
    assert error.code == "C052" and error.location.file == str(policies / "retention.yaml")
    assert error.related is not None and error.related.file == str(policies / MANIFEST)
    lines = (policies / MANIFEST).read_text(encoding="utf-8").splitlines()
    assert lines[error.related.line - 1].endswith("  retention.yaml")
    assert engine.bundle_version == old  # the old policies keep serving
    assert engine.evaluate("retention", TRANSACTION, now=NOW).outputs["due"] == DUE[A]
    write_manifest(policies)
    assert engine.reload() != old
    assert engine.evaluate("retention", TRANSACTION, now=NOW).outputs["due"] == DUE[B]


def test_an_unlisted_or_missing_file_refuses_the_load(policies: Path) -> None:
    write_manifest(policies)
    (policies / "extra.yaml").write_bytes(A.replace(b"id: customer-data-retention", b"id: extra"))
    with pytest.raises(PolicyErrors) as caught:
        Engine(policies)  # a starting engine keeps to the manifest too
    assert [(e.code, Path(e.location.file).name) for e in caught.value.errors] == [("C053", "extra.yaml")]
    (policies / "extra.yaml").unlink()
    (policies / "access.yaml").unlink()
    with pytest.raises(PolicyErrors) as caught:
        Engine(policies)
    (error,) = caught.value.errors
    assert error.code == "C051" and "`access.yaml`" in error.message and error.location.line == 1


def test_a_malformed_manifest_line_is_located(policies: Path) -> None:
    write_manifest(policies)
    manifest = policies / MANIFEST
    text = manifest.read_text(encoding="utf-8")
    manifest.write_text("# deployed by ci\n\n" + text + "not a checksum line\n", encoding="utf-8")
    with pytest.raises(PolicyErrors) as caught:
        Engine(policies)
    (error,) = caught.value.errors
    assert error.code == "C050" and error.location.line == 8  # two lines above, five files


def test_a_manifest_lists_only_what_it_checks(policies: Path) -> None:
    """A file the manifest lists that is not a policy file is checked, not loaded."""
    readme = b"deployed by ci\n"
    (policies / "README.txt").write_bytes(readme)
    write_manifest(policies)
    with (policies / MANIFEST).open("a", encoding="utf-8") as f:
        f.write(f"{hashlib.sha256(readme).hexdigest()} *README.txt\n")  # binary mode, as sha256sum -b writes
    sources = read_policies([policies])
    assert [Path(name).name for name, _ in sources] == sorted(f.name for f in policies.glob("*.yaml"))
    (policies / "README.txt").write_text("changed\n", encoding="utf-8")
    with pytest.raises(PolicyErrors) as caught:
        read_policies([policies])
    assert [e.code for e in caught.value.errors] == ["C052"]


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="no sha256sum on this machine")
def test_a_manifest_written_by_sha256sum_is_read(policies: Path) -> None:
    out = subprocess.run(
        "sha256sum *.yaml", shell=True, cwd=policies, capture_output=True, text=True, check=True, timeout=30
    )
    (policies / MANIFEST).write_text(out.stdout, encoding="utf-8")
    assert Engine(policies).bundle_version == Engine(POLICIES).bundle_version


# -- without a manifest ---------------------------------------------------------------------------


def test_a_file_dated_in_the_future_loads_once_it_stays_unchanged(policies: Path) -> None:
    engine = Engine(policies)
    target = policies / "retention.yaml"
    target.write_bytes(B)
    future = time.time() + 3600
    os.utime(target, (future, future))  # a clock that is off, or a copy that kept its times
    engine.reload(settle=0.02)
    assert dict(engine.bundle.sources)["retention.yaml"] == B


def test_settle_zero_reads_at_once(policies: Path) -> None:
    engine = Engine(policies, settle=0)
    (policies / "retention.yaml").write_bytes(B)
    engine.reload()
    assert engine.evaluate("retention", TRANSACTION, now=NOW).outputs["due"] == DUE[B]


# -- the watcher ----------------------------------------------------------------------------------


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while not check():
        assert time.monotonic() < deadline, f"the watcher never {what}"
        time.sleep(0.01)


def replace(path: Path, text: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(text)
    os.replace(tmp, path)


def test_the_watcher_reloads_changed_files_and_keeps_the_old_on_failure(policies: Path) -> None:
    engine = Engine(policies, settle=0.05)
    first = engine.bundle_version
    with engine.watch(interval=0.01) as watcher:
        assert watcher.running
        replace(policies / "retention.yaml", B)
        eventually(lambda: watcher.last_version != first, "reloaded the new file")
        good = watcher.last_version
        assert engine.bundle_version == good and watcher.last_error is None
        assert engine.evaluate("retention", TRANSACTION, now=NOW).outputs["due"] == DUE[B]
        replace(policies / "retention.yaml", B.replace(b"obligation: keep", b"obligation: kept"))
        eventually(lambda: watcher.failures > 0, "tried the broken file")
        assert isinstance(watcher.last_error, PolicyErrors)
        assert watcher.last_error.errors[0].location.file == str(policies / "retention.yaml")
        assert engine.bundle_version == good  # the old policies keep serving
        replace(policies / "retention.yaml", A)
        eventually(lambda: watcher.last_error is None, "recovered")
        assert engine.bundle_version == first
    assert not watcher.running


def test_the_watcher_does_not_retry_files_that_did_not_change(policies: Path) -> None:
    engine = Engine(policies, settle=0)
    watcher = PolicyWatcher(engine, settle=0)
    assert watcher.poll() is True and watcher.reloads == 1  # the first look reloads what is there
    assert watcher.poll() is False and watcher.reloads == 1
    replace(policies / "retention.yaml", b"charter: 1\nkind: retention\n")
    assert watcher.poll() is True and watcher.failures == 1
    assert watcher.poll() is False and watcher.failures == 1  # tried once, until the files change
