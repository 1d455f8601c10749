"""Built-in event-pattern backends for churn early warning (escalation domain).

``durable_rules`` (the default) compiles each pattern into a durable-rules rule set and
asserts a customer's events as facts, in time order, each with its own timestamp; an
absence pattern is judged by one last ``clock`` fact at the caller's ``now``. No
durable-rules timer is used, so the same history always yields the same alerts.
durable-rules runs only in a worker process (``durable_worker.py``, started on first use;
see ``DurableWorker`` for why), so it can neither crash the host nor be imported by it, and
can be replaced by another backend plugin without touching the engine.

``python`` is a plain reference implementation of the same semantics; the test suite
checks that the two agree on random histories.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.errors import PluginError
from engine.hookspecs import Alert, EventBackendSpec, EventMatcher, EventPattern, hookimpl

# --------------------------------------------------------------------------------------------
# durable-rules, in a worker process
# --------------------------------------------------------------------------------------------

WORKER = Path(__file__).with_name("durable_worker.py")
RECYCLE_AFTER = 10_000  # histories a worker matches before a fresh one takes over
MAX_VERSIONS = 8  # policy versions compiled in one worker (hot reloads) before a fresh one
TIMEOUT = 60.0  # seconds one history may take before the worker is judged hung


class DurableWorker:
    """One durable-rules worker process (``durable_worker.py``), started on first use.

    durable-rules 2.0.28's C engine has memory-safety bugs (found with valgrind on our rule
    sets, each worked around in ``durable_worker.py``): it read past the end of a
    conjunction's expression array when the last comparison was false (it crashed the
    process now and then), it kept pointers into strings Python had already freed, its
    ``delete_state`` frees a pointer it never initialised, retracting a fact whose rule had
    fired scans past the end of a freed frame, and its JSON reader refuses numbers written
    with an exponent (1e-05) and overflows past 64 bits. So it never runs in the host's process:
    a fault ends the worker; the history is matched again by a fresh one (matching is a pure
    function of the history and ``now``), and a history that fails twice is a
    ``PluginError`` for that decision, never a crash of the application. A worker is
    replaced after ``RECYCLE_AFTER`` histories or ``MAX_VERSIONS`` policy versions (each hot
    reload of a changed escalation policy compiles new rule sets), and after a fork the child
    starts its own.
    """

    def __init__(self, command: Sequence[str] | None = None) -> None:
        # a host embedding Python (uWSGI, mod_wsgi) may have no usable sys.executable
        python = os.environ.get("CHARTER_WORKER_PYTHON") or sys.executable
        self.command = list(command) if command else [python, str(WORKER)]
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._compiled: set[str] = set()
        self._served = 0
        self.restarts = 0  # workers replaced after a fault (for tests and diagnostics)
        me = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forked(me))

    def _forget_parent_worker(self) -> None:
        """In a forked child: the parent's worker and lock (perhaps held by a parent thread
        that does not exist here) are the parent's; the child starts its own on first use."""
        self._lock = threading.Lock()
        self._proc = None

    def match(
        self, key: str, patterns: Sequence[EventPattern], events: Sequence[Mapping[str, Any]], now: int
    ) -> list[Alert]:
        request = {"op": "match", "key": key, "events": [dict(e) for e in events], "now": now}
        with self._lock:
            for attempt in (1, 2):
                try:
                    answer = self._ask(key, patterns, request)
                    break
                except _WorkerDied as died:
                    self._stop()
                    self.restarts += 1
                    if attempt == 2:
                        raise PluginError(
                            f"the durable-rules worker failed twice on one history ({died})",
                            plugin="charter_plugins.events",
                            code="X005",
                            hint="the `python` event backend has the same semantics: `event_backend: python`",
                        ) from None
        return sorted(Alert(int(at), str(p), tuple(str(i) for i in ids)) for at, p, ids in answer["alerts"])

    def close(self) -> None:
        with self._lock:
            self._stop()

    @property
    def pid(self) -> int | None:
        """The worker's process id while one runs in this process."""
        return self._proc.pid if self._proc is not None else None

    def _ask(self, key: str, patterns: Sequence[EventPattern], request: dict[str, Any]) -> dict[str, Any]:
        stale = self._served >= RECYCLE_AFTER or (key not in self._compiled and len(self._compiled) >= MAX_VERSIONS)
        if stale:
            self._stop()
        if self._proc is None:
            self._start()
        if key not in self._compiled:
            self._call({"op": "compile", "key": key, "patterns": [dataclasses.asdict(p) for p in patterns]})
            self._compiled.add(key)
        self._served += 1
        return self._call(request)

    def _start(self) -> None:
        self._proc = subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0
        )
        self._compiled = set()
        self._served = 0

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps(request, separators=(",", ":")).encode() + b"\n")
        except OSError:
            raise _WorkerDied(self._exit_status(proc)) from None
        line = self._readline(proc)
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise PluginError(
                f"the durable-rules worker refused a request: {answer['error']}",
                plugin="charter_plugins.events",
                code="X006",
            )
        return answer

    def _readline(self, proc: subprocess.Popen[bytes]) -> bytes:
        assert proc.stdout is not None
        chunks: list[bytes] = []
        deadline = time.monotonic() + TIMEOUT
        fd = proc.stdout.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                proc.kill()
                raise _WorkerDied(f"no answer within {TIMEOUT:g} s")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise _WorkerDied(self._exit_status(proc))
            chunks.append(chunk)
            if chunk.endswith(b"\n"):
                return b"".join(chunks)

    @staticmethod
    def _exit_status(proc: subprocess.Popen[bytes]) -> str:
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            return "it stopped answering"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"it died of {signal.Signals(-code).name}"
        return f"it exited with status {code}"


def _forked(worker: weakref.ref[DurableWorker]) -> None:
    w = worker()
    if w is not None:
        w._forget_parent_worker()


class _WorkerDied(Exception):
    """The worker process ended (or hung) before answering."""


_worker = DurableWorker()
atexit.register(_worker.close)


def _durable_compile(patterns: Sequence[EventPattern], key: str) -> EventMatcher:
    frozen = tuple(patterns)

    def match(events: Sequence[Mapping[str, Any]], now: int) -> list[Alert]:
        return _worker.match(key, frozen, events, now)

    return match


# --------------------------------------------------------------------------------------------
# the plain reference
# --------------------------------------------------------------------------------------------


def _python_compile(patterns: Sequence[EventPattern], key: str) -> EventMatcher:
    def match(events: Sequence[Mapping[str, Any]], now: int) -> list[Alert]:
        out: set[Alert] = set()
        for p in patterns:
            for i, a in enumerate(events):
                if a["kind"] != p.first:
                    continue
                if p.score_at_most is not None and not (a.get("score") is not None and a["score"] <= p.score_at_most):
                    continue
                if p.then is not None:
                    assert p.within is not None
                    for j, b in enumerate(events):
                        if j == i or b["kind"] != p.then or not a["ts"] < b["ts"] <= a["ts"] + p.within:
                            continue
                        answered = p.unless is not None and any(
                            e["kind"] == p.unless and e.get("ref") == a["eid"] for e in events[:j]
                        )
                        if not answered:
                            out.add(Alert(b["ts"], p.id, (a["eid"], b["eid"])))
                elif p.absent is not None:
                    assert p.within is not None
                    end = a["ts"] + p.within
                    if now >= end and not any(e["kind"] == p.absent and a["ts"] < e["ts"] <= end for e in events):
                        out.add(Alert(end, p.id, (a["eid"],)))
                else:
                    out.add(Alert(a["ts"], p.id, (a["eid"],)))
        return sorted(out)

    return match


@hookimpl
def charter_event_backends() -> list[EventBackendSpec]:
    return [
        EventBackendSpec(
            "durable_rules", _durable_compile, "durable-rules 2.0, fed the events in time order", "2.0.28"
        ),
        EventBackendSpec("python", _python_compile, "plain Python reference of the same semantics"),
    ]
