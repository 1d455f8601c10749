"""Group commit in `charter serve`: concurrent requests' decisions share one durable commit.

A real server on a loopback port answers many concurrent requests, is killed (SIGKILL) right
after the last response, and every decision id it gave is then found in its log, whose chain
verifies; its metrics show fewer commits than requests. In process, a commit that fails fails
exactly the requests whose records it held (503, C079), never acknowledging them, and the
requests before and after it are answered and logged.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import POLICIES, ROOT

from engine.api import Engine
from engine.audit.chain import verify
from engine.audit.protect import Protector
from engine.errors import CharterError
from engine.plugins import open_store
from engine.serve.errors import ServeError
from engine.serve.service import Service, TimedLog
from engine.storage import Link, StorageError, Store

STAMP = "2025-06-30T00:00:00Z"
KEY = bytes(range(32))


def access_requests(n: int) -> list[dict[str, Any]]:
    with (ROOT / "examples" / "requests" / "access.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(n), f, strict=False)]


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head == name:
            return float(value)
    return 0.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    db = tmp_path / "served.db"
    cmd = [sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--policies", str(POLICIES)]
    cmd += ["--store", f"sqlite:///{db}", "--key-file", str(tmp_path / "k"), "--watch-interval", "0"]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        assert m, line
        yield proc, int(m.group(1)), db
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=20)


def test_a_killed_server_loses_no_acknowledged_decision_and_commits_in_groups(
    server: tuple[subprocess.Popen[str], int, Path],
) -> None:
    proc, port, db = server
    clients, each = 16, 12
    requests = access_requests(clients * each)
    ids: list[list[str]] = [[] for _ in range(clients)]
    failures: list[str] = []
    start = threading.Barrier(clients)

    def run(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            start.wait()
            for j in range(each):
                body = json.dumps({"facts": requests[i * each + j], "now": STAMP})
                conn.request("POST", "/v1/decide/access", body, {"content-type": "application/json"})
                resp = conn.getresponse()
                got = json.loads(resp.read())
                if resp.status != 200 or not got.get("decision_id"):
                    failures.append(f"{resp.status}: {got}")
                else:
                    ids[i].append(got["decision_id"])
        finally:
            conn.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    proc.send_signal(signal.SIGKILL)  # no graceful shutdown: what was acknowledged must be on disk
    proc.wait(timeout=20)

    assert not failures, failures[:3]
    acknowledged = [rid for part in ids for rid in part]
    assert len(acknowledged) == clients * each == len(set(acknowledged))
    commits = metric(text, "charter_log_commits_total")
    assert metric(text, "charter_log_batch_records_sum") == len(acknowledged)
    assert 1 <= commits < len(acknowledged)  # concurrent requests shared commits
    assert metric(text, "charter_log_batch_records_count") == commits
    store = open_store(f"sqlite:///{db}")
    try:
        result = verify(store.read())
        logged = [json.loads(data)["hash"] for _, data in store.read()]
    finally:
        store.close()
    assert result.ok and result.count == len(acknowledged)
    assert sorted(logged) == sorted(acknowledged)


class GatedStore:
    """A store whose commits can be held (``gate``) and made to fail (``fail``)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.url = inner.url
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail = False
        self.commits: list[int] = []

    def append_linked(self, bodies: Sequence[bytes], link: Link) -> list[int]:
        self.entered.set()
        self.gate.wait(30)
        self.commits.append(len(bodies))
        if self.fail:
            raise StorageError("the disk is full", code="D004")
        return self.inner.append_linked(bodies, link)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_failed_commit_fails_exactly_its_requests_with_503(tmp_path: Path) -> None:
    inner = open_store(f"sqlite:///{tmp_path / 'log.db'}")
    store = GatedStore(inner)
    protector = Protector(store, KEY)  # type: ignore[arg-type]
    log = TimedLog(store, protector)  # type: ignore[arg-type]
    service = Service(Engine(POLICIES, log=log), store=store, watch_interval=None)  # type: ignore[arg-type]
    requests = access_requests(7)
    for r in requests:  # keys made beforehand: only the appends below go through the gate
        service.decide("access", {"facts": r, "now": STAMP})
    before = len(store.commits)
    answers: dict[int, dict[str, Any] | CharterError] = {}

    def ask(i: int) -> None:
        try:
            answers[i] = service.decide("access", {"facts": requests[i], "now": STAMP})
        except CharterError as exc:
            answers[i] = exc

    store.gate.clear()
    store.entered.clear()
    first = threading.Thread(target=ask, args=(0,))
    first.start()
    assert store.entered.wait(30)  # request 0's commit is under way, held at the gate
    rest = [threading.Thread(target=ask, args=(i,)) for i in range(1, 6)]
    for t in rest:
        t.start()
    deadline = time.monotonic() + 30
    while len(log._queue) < 5 and time.monotonic() < deadline:  # all five wait for the next commit
        time.sleep(0.01)
    assert len(log._queue) == 5
    original = store.append_linked

    def then_fail(bodies: Sequence[bytes], link: Link) -> list[int]:
        store.fail = len(store.commits) > before  # the second commit (the five's) fails
        return original(bodies, link)

    store.append_linked = then_fail  # type: ignore[method-assign]
    store.gate.set()
    for t in [first, *rest]:
        t.join(timeout=60)
    assert store.commits[before:] == [1, 5]  # one commit for the five waiting requests
    ok = answers[0]
    assert isinstance(ok, dict) and ok["decision_id"]
    for i in range(1, 6):
        err = answers[i]
        assert isinstance(err, ServeError) and err.status == 503 and err.code == "C079", err
    store.fail = False
    store.append_linked = original  # type: ignore[method-assign]
    after = service.decide("access", {"facts": requests[6], "now": STAMP})
    text = service.metrics.render().decode()
    assert metric(text, 'charter_decisions_total{domain="access",outcome="unrecorded"}') == 5
    hashes = [json.loads(data)["hash"] for _, data in inner.read()]
    assert verify(inner.read()).ok and len(hashes) == len(requests) + 2  # the five were never logged
    assert hashes[-2:] == [ok["decision_id"], after["decision_id"]]
    inner.close()
