"""`charter serve --workers N`: several processes on one port and one store — every
acknowledged decision in the one chain, /metrics summing every worker, a worker that dies
replaced, a stop that waits for each worker, a start that fails as a whole, and a replay job
that every worker answers for (its worker killed or not)."""

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
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, POLICIES

from engine.serve.errors import ServeError

NOW = "2025-06-30T00:00:00Z"


def _children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii")
    return {int(p) for p in text.split()}


def _start(tmp: Path, *extra: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--workers", "2", "--watch-interval", "0"]
    cmd += ["--key-file", str(tmp / "k"), *extra]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=tmp, env=env)


def _post(conn: http.client.HTTPConnection, facts: dict[str, object]) -> dict[str, object]:
    conn.request(
        "POST", "/v1/decide/access", json.dumps({"facts": facts, "now": NOW}), {"content-type": "application/json"}
    )
    response = conn.getresponse()
    body = json.loads(response.read())
    assert response.status == 200, body
    return body


def _decided(metrics: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith("charter_decisions_total")
    )


def test_two_workers_share_the_port_the_log_and_the_metrics(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'log.db'}"
    proc = _start(tmp_path, "--policies", str(POLICIES), "--store", store, "--population", str(EXAMPLES))
    assert proc.stderr is not None
    drain = threading.Thread(target=proc.stderr.read, daemon=True)  # keeps the pipe from filling
    try:
        line = proc.stderr.readline()
        m = re.search(r"listening on http://(127\.0\.0\.1):(\d+) .*, 2 workers", line)
        assert m, line + proc.stderr.read()
        drain.start()
        host, port = m.group(1), int(m.group(2))
        workers = _children(proc.pid)
        assert len(workers) == 2
        requests = [
            json.loads(x) for x in (EXAMPLES.parent / "requests" / "access.jsonl").read_text().splitlines()[:25]
        ]
        ids: list[str] = []
        lock = threading.Lock()

        def client() -> None:
            conn = http.client.HTTPConnection(host, port, timeout=30)
            for facts in requests:
                body = _post(conn, facts)
                with lock:
                    ids.append(str(body["decision_id"]))
            conn.close()

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(ids)) == 100  # every acknowledged decision has its own record
        for _ in range(4):  # whichever worker answers, the counts are both workers' together
            conn = http.client.HTTPConnection(host, port, timeout=30)
            conn.request("GET", "/metrics")
            assert _decided(conn.getresponse().read().decode()) == 100
            conn.close()
        # a replay job: whichever worker a poll reaches answers for it (their shared job files)
        conn = http.client.HTTPConnection(host, port, timeout=30)
        conn.request("POST", "/v1/log/replay", "{}", {"content-type": "application/json"})
        response = conn.getresponse()
        job = json.loads(response.read())
        assert response.status == 202, job
        conn.close()
        polls: list[dict[str, Any]] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not polls or polls[-1]["state"] in ("queued", "running")):
            conn = http.client.HTTPConnection(host, port, timeout=30)  # a new connection: any worker
            conn.request("GET", f"/v1/jobs/{job['id']}")
            response = conn.getresponse()
            polls.append(json.loads(response.read()))
            assert response.status == 200, polls[-1]
            conn.close()
            time.sleep(0.05)
        report = polls[-1]["report"]
        assert polls[-1]["state"] == "done" and report["total"] == report["reproduced"] == 100, polls[-1]
        # a worker killed outright is replaced; the service keeps answering meanwhile. The one
        # killed is the job's: the others still answer for the job it ran
        victim = int(job["worker"])
        assert victim in workers
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (len(_children(proc.pid)) < 2 or victim in _children(proc.pid)):
            time.sleep(0.1)
        assert len(_children(proc.pid)) == 2 and victim not in _children(proc.pid)
        conn = http.client.HTTPConnection(host, port, timeout=30)
        for facts in requests[:10]:
            ids.append(str(_post(conn, facts)["decision_id"]))
        conn.close()
        for _ in range(4):
            conn = http.client.HTTPConnection(host, port, timeout=30)
            conn.request("GET", f"/v1/jobs/{job['id']}")
            response = conn.getresponse()
            after = json.loads(response.read())
            assert response.status == 200 and after["state"] == "done" and after["worker"] == victim, after
            conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        if drain.is_alive():
            drain.join(timeout=10)
        proc.stderr.close()
    assert code == 0
    verify = subprocess.run(
        [sys.executable, "-m", "engine.cli", "log", "verify", "--store", store],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "ok: 110 record(s)" in verify.stdout  # the one chain holds every acknowledged decision


def test_workers_that_cannot_start_stop_the_whole_service(tmp_path: Path) -> None:
    bad = tmp_path / "policies"
    bad.mkdir()
    (bad / "tiering.yaml").write_text("charter: 1\nkind: tiering\nid: [\n", encoding="utf-8")
    proc = _start(tmp_path, "--policies", str(bad))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "--workers 2` could not start" in err and "tiering.yaml" in err
    assert "listening on" not in err


def test_a_job_whose_worker_stopped_is_reported_failed_by_the_others(tmp_path: Path) -> None:
    from engine.serve.jobs import Job, Jobs

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)  # a process that has exited: its pid names no process now
    shared = Jobs(None, tmp_path)  # type: ignore[arg-type]  # a worker's view: only the files
    running = Job("ab" * 16, "replay", {}, state="running", done=7, worker=dead)
    finished = Job("cd" * 16, "replay", {}, state="done", done=9, worker=dead, report={"total": 9})
    for job in (running, finished):
        shared.save(job)
    got = shared.get(running.id)
    assert got["state"] == "failed" and got["error"]["code"] == "C071" and str(dead) in got["error"]["message"]
    assert shared.get(finished.id)["state"] == "done" and shared.get(finished.id)["report"] == {"total": 9}
    assert {j["id"] for j in shared.listed()} == {running.id, finished.id}
    live = Job("ef" * 16, "replay", {}, state="running", worker=os.getpid())
    shared.save(live)
    assert shared.get(live.id)["state"] == "running"  # its worker is alive: as it wrote it
    with pytest.raises(ServeError) as missing:
        shared.get("../../etc/passwd")  # not a job id: never a path outside the directory
    assert missing.value.code == "C067"
