"""HTTP service benchmark: `POST /v1/decide/access` over keep-alive connections to a running server.

    .venv/bin/python bench/bench_serve.py [--requests 5000] [--clients 1 2 8] [--modes inline threadpool logged]

Starts the server (uvicorn, uvloop, httptools) in a process of its own on a free loopback port
for each mode — ``inline``: unlogged, engine calls on the event loop (the default unlogged);
``threadpool``: unlogged, engine calls in Starlette's threadpool; ``logged``: every decision
durably logged to a fresh SQLite store (threadpool, the default when logged); ``unlogged-2w``
and ``logged-2w``: `charter serve --workers 2` as shipped, without and with a SQLite log — then runs
``--clients`` client processes, each one keep-alive connection (``http.client``) sending the 500
example access requests in turn. Reports requests/s (all clients together) and the median
and p99 latency one client saw, and the in-process ``Engine.evaluate`` figure of the same
requests, so the cost of the service is a ratio. Logged, it also reports the log's commits
(``charter_log_commits_total`` from ``/metrics``) and the records per commit: with group
commit, concurrent clients' decisions share commits. Nothing is asserted; ``--json FILE``
writes the figures.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STAMP = "2025-06-30T00:00:00Z"


def read_requests() -> list[dict[str, Any]]:
    with open(ROOT / "examples" / "requests" / "access.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def serve(mode: str, directory: str) -> None:
    """The server process: ``charter serve`` with the engine-call mode forced."""
    import argparse as ap
    import socket

    import uvicorn

    from engine.serve.app import create_app
    from engine.serve.cli import build_service

    args = ap.Namespace(
        policies=str(ROOT / "policies"),
        store=f"sqlite:///{directory}/bench.db" if mode == "logged" else None,
        key_file=f"{directory}/bench.key",
        log=mode == "logged",
        snapshot=None,
        population=None,
        watch_interval=1.0,
        settle=None,
        approvers=None,
        require_approvals=3,
    )
    service = build_service(args)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    print(f"port {sock.getsockname()[1]}", flush=True)
    app = create_app(service, inline=mode == "inline")
    config = uvicorn.Config(app, loop="uvloop", http="httptools", log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def client(port: int, n: int, start: Any, out: Any) -> None:
    """One keep-alive connection (the standard library's ``http.client``: the lightest client,
    so that the figures are the server's; httpx2 costs about 0.6 ms more per request here)."""
    import http.client

    bodies = [json.dumps({"facts": r, "now": STAMP}).encode() for r in read_requests()]
    headers = {"content-type": "application/json"}
    times = []
    conn = http.client.HTTPConnection("127.0.0.1", port)

    def post(body: bytes) -> None:
        conn.request("POST", "/v1/decide/access", body, headers)
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise SystemExit(f"status {r.status}: {data[:200]!r}")

    for body in bodies[:20]:  # warm up the connection and the server
        post(body)
    start.wait()
    t0 = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        post(bodies[i % len(bodies)])
        times.append(time.perf_counter() - t)
    out.put((time.perf_counter() - t0, times))
    conn.close()


def start_server(mode: str, directory: str) -> tuple[subprocess.Popen[str], int]:
    """The server for ``mode`` and its port. ``unlogged-2w`` and ``logged-2w`` are `charter serve
    --workers 2` itself (the second with a SQLite log): two processes on one port and one store."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if mode.endswith("-2w"):
        cmd = [sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--workers", "2"]
        cmd += ["--policies", str(ROOT / "policies"), "--key-file", f"{directory}/bench.key"]
        if mode.startswith("logged"):
            cmd += ["--store", f"sqlite:///{directory}/bench.db"]
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env, cwd=directory)
        assert proc.stderr is not None
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", proc.stderr.readline())
    else:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--server", mode, "--dir", directory], stdout=subprocess.PIPE, text=True, env=env
        )
        assert proc.stdout is not None
        m = re.match(r"port (\d+)", proc.stdout.readline())
    assert m, "the server did not start"
    return proc, int(m.group(1))


def run_mode(mode: str, clients: int, n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        proc, port = start_server(mode, directory)
        try:
            ctx = multiprocessing.get_context("spawn")
            start, out = ctx.Event(), ctx.Queue()
            procs = [ctx.Process(target=client, args=(port, n, start, out)) for _ in range(clients)]
            for p in procs:
                p.start()
            time.sleep(1.0)  # every client connected and warmed up
            start.set()
            results = [out.get(timeout=600) for _ in procs]
            for p in procs:
                p.join()
            commits, records = log_commits(port)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    elapsed = max(r[0] for r in results)
    one = sorted(results[0][1])
    return {
        "requests_per_s": clients * n / elapsed,
        "median_ms": statistics.median(one) * 1000,
        "p99_ms": one[int(len(one) * 0.99) - 1] * 1000,
        "log_commits": commits,
        "records_per_commit": records / commits if commits else 0.0,
    }


def log_commits(port: int) -> tuple[float, float]:
    """(commits, records committed) of the server's decision log, from its ``/metrics``."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    found = {"charter_log_commits_total": 0.0, "charter_log_batch_records_sum": 0.0}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name in found:
            found[name] = float(value)
    return found["charter_log_commits_total"], found["charter_log_batch_records_sum"]


def in_process(n: int) -> float:
    """Median µs of one ``Engine.evaluate`` of the same requests, unlogged."""
    from engine import Engine

    engine = Engine(ROOT / "policies")
    now = datetime(2025, 6, 30, tzinfo=UTC)
    requests = read_requests()
    times = []
    for i in range(n):
        t = time.perf_counter()
        engine.evaluate("access", requests[i % len(requests)], now=now)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=5000, help="per client")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 2, 8])
    p.add_argument("--modes", nargs="+", default=["inline", "threadpool", "logged", "unlogged-2w", "logged-2w"])
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--server", help=argparse.SUPPRESS)
    p.add_argument("--dir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.server:
        serve(args.server, args.dir)
        return
    figures: dict[str, Any] = {"in_process_median_us": in_process(args.requests)}
    print(f"in-process Engine.evaluate (access): median {figures['in_process_median_us']:.1f} µs")
    for mode in args.modes:
        for clients in args.clients:
            f = run_mode(mode, clients, args.requests)
            figures[f"{mode}/{clients}"] = f
            commits = f", {f['records_per_commit']:.1f} records per log commit" if f["log_commits"] else ""
            print(
                f"{mode:10} {clients} client(s): {f['requests_per_s']:8,.0f} requests/s, "
                f"median {f['median_ms']:.2f} ms, p99 {f['p99_ms']:.2f} ms (one client's){commits}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
