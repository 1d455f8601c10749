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
        self._unread = bytearray()  # what the worker wrote past the last line read
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
                    self._ready(key, patterns, 1)
                    answer = self._call(request)
                    break
                except _WorkerDied as died:
                    self._stop()
                    self.restarts += 1
                    if attempt == 2:
                        raise _failed_twice(died) from None
        return _alerts(answer["alerts"])

    def match_many(
        self, key: str, patterns: Sequence[EventPattern], histories: Sequence[tuple[Sequence[Mapping[str, Any]], int]]
    ) -> list[list[Alert] | PluginError]:
        """The alerts of many histories, sent in one message (``evaluate_batch``). The worker
        answers each history on a line of its own as soon as it is matched, so each still has
        ``TIMEOUT`` seconds, and a fault is known to be the history being matched: a fresh
        worker matches it again and then the rest; a history that fails twice is a
        ``PluginError`` in its place, and the others are matched all the same."""
        results: list[list[Alert] | PluginError | None] = [None] * len(histories)
        deaths: dict[int, int] = {}
        with self._lock:
            start = 0
            while start < len(histories):
                try:
                    self._ask_many(key, patterns, histories, start, results)
                    break
                except _WorkerDied as died:
                    self._stop()
                    self.restarts += 1
                    start = results.index(None, start)  # the history it was matching
                    deaths[start] = deaths.get(start, 0) + 1
                    if deaths[start] == 2:
                        results[start] = _failed_twice(died)
                        start += 1
        return [r if r is not None else [] for r in results]

    def _ask_many(
        self,
        key: str,
        patterns: Sequence[EventPattern],
        histories: Sequence[tuple[Sequence[Mapping[str, Any]], int]],
        start: int,
        results: list[list[Alert] | PluginError | None],
    ) -> None:
        todo = histories[start:]
        self._ready(key, patterns, len(todo))
        self._send(
            {
                "op": "match_many",
                "key": key,
                "histories": [{"events": [dict(e) for e in events], "now": now} for events, now in todo],
            }
        )
        assert self._proc is not None
        for i in range(start, len(histories)):
            answer = json.loads(self._readline(self._proc))
            results[i] = _refused(answer["error"]) if "error" in answer else _alerts(answer["alerts"])

    def close(self) -> None:
        with self._lock:
            self._stop()

    @property
    def pid(self) -> int | None:
        """The worker's process id while one runs in this process."""
        return self._proc.pid if self._proc is not None else None

    def _ready(self, key: str, patterns: Sequence[EventPattern], histories: int) -> None:
        """A worker that has compiled ``key`` and may match ``histories`` more."""
        stale = self._served >= RECYCLE_AFTER or (key not in self._compiled and len(self._compiled) >= MAX_VERSIONS)
        if stale:
            self._stop()
        if self._proc is None:
            self._start()
        if key not in self._compiled:
            self._call({"op": "compile", "key": key, "patterns": [dataclasses.asdict(p) for p in patterns]})
            self._compiled.add(key)
        self._served += histories

    def _start(self) -> None:
        self._proc = subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0
        )
        self._compiled = set()
        self._served = 0
        self._unread = bytearray()

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
        self._send(request)
        assert self._proc is not None
        answer: dict[str, Any] = json.loads(self._readline(self._proc))
        if "error" in answer:
            raise _refused(answer["error"])
        return answer

    def _send(self, request: dict[str, Any]) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(request, separators=(",", ":")).encode() + b"\n")
        except OSError:
            raise _WorkerDied(self._exit_status(proc)) from None

    def _readline(self, proc: subprocess.Popen[bytes]) -> bytes:
        """The worker's next line, within ``TIMEOUT`` seconds (several may come in one read)."""
        assert proc.stdout is not None
        unread = self._unread
        deadline = time.monotonic() + TIMEOUT
        fd = proc.stdout.fileno()
        while (end := unread.find(b"\n")) < 0:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                proc.kill()
                raise _WorkerDied(f"no answer within {TIMEOUT:g} s")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise _WorkerDied(self._exit_status(proc))
            unread += chunk
        line = bytes(unread[: end + 1])
        del unread[: end + 1]
        return line

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


def _alerts(answer: Sequence[Sequence[Any]]) -> list[Alert]:
    return sorted(Alert(int(at), str(p), tuple(str(i) for i in ids)) for at, p, ids in answer)


def _failed_twice(died: _WorkerDied) -> PluginError:
    return PluginError(
        f"the durable-rules worker failed twice on one history ({died})",
        plugin="charter_plugins.events",
        code="X005",
        hint="the `python` event backend has the same semantics: `event_backend: python`",
    )


def _refused(error: str) -> PluginError:
    return PluginError(
        f"the durable-rules worker refused a request: {error}", plugin="charter_plugins.events", code="X006"
    )


_worker = DurableWorker()
atexit.register(_worker.close)


class DurableMatcher:
    """What ``durable_rules`` prepares for one policy version: ``match(events, now)`` as every
    backend's, and ``many(histories)`` for a batch, one message to the worker for them all."""

    def __init__(self, patterns: Sequence[EventPattern], key: str) -> None:
        self.patterns = tuple(patterns)
        self.key = key

    def __call__(self, events: Sequence[Mapping[str, Any]], now: int) -> list[Alert]:
        return _worker.match(self.key, self.patterns, events, now)

    def many(self, histories: Sequence[tuple[Sequence[Mapping[str, Any]], int]]) -> list[list[Alert] | PluginError]:
        """Each history's alerts, or the ``PluginError`` that history failed with."""
        return _worker.match_many(self.key, self.patterns, histories)


def _durable_compile(patterns: Sequence[EventPattern], key: str) -> EventMatcher:
    return DurableMatcher(patterns, key)


# --------------------------------------------------------------------------------------------
# the plain reference
# --------------------------------------------------------------------------------------------


def _python_compile(patterns: Sequence[EventPattern], key: str) -> EventMatcher:
    frozen = tuple(patterns)

    def match(events: Sequence[Mapping[str, Any]], now: int) -> list[Alert]:
        return _python_match(frozen, events, now, time.monotonic() + TIMEOUT)

    return match


def _python_match(
    patterns: Sequence[EventPattern], events: Sequence[Mapping[str, Any]], now: int, deadline: float
) -> list[Alert]:
    """Every pattern's alerts on one history. The same semantics as the rule sets the worker
    compiles, read straight off ``EventPattern``: each event is looked at only by the patterns
    naming its kind, and an ``unless`` answer is found by the first event referring to the first.
    A history taking longer than ``TIMEOUT`` seconds fails, as a hung worker does (X009)."""
    by_kind: dict[Any, list[int]] = {}
    for i, e in enumerate(events):
        by_kind.setdefault(e["kind"], []).append(i)
    out: set[tuple[int, str, tuple[str, ...]]] = set()  # alerts as tuples: sorted and hashed in C
    budget = _Budget(deadline)
    for p in patterns:
        firsts = [
            i
            for i in by_kind.get(p.first, ())
            if p.score_at_most is None or (events[i].get("score") is not None and events[i]["score"] <= p.score_at_most)
        ]
        if p.then is not None:
            assert p.within is not None
            answered = _first_answers(events, by_kind.get(p.unless, ())) if p.unless is not None else {}
            seconds = by_kind.get(p.then, ())
            for i in firsts:
                a = events[i]
                lo, hi, eid = a["ts"], a["ts"] + p.within, a["eid"]
                answer = answered.get(eid, len(events)) if type(eid) is str else _first_ref(events, p, eid)
                budget.spend(len(seconds))
                out.update(
                    (events[j]["ts"], p.id, (eid, events[j]["eid"]))
                    for j in seconds
                    if j != i and lo < events[j]["ts"] <= hi and not answer < j
                )
        elif p.absent is not None:
            assert p.within is not None
            absents = [events[j]["ts"] for j in by_kind.get(p.absent, ())]
            for i in firsts:
                a = events[i]
                end = a["ts"] + p.within
                budget.spend(len(absents))
                if now >= end and not any(a["ts"] < ts <= end for ts in absents):
                    out.add((end, p.id, (a["eid"],)))
        else:
            out.update((events[i]["ts"], p.id, (events[i]["eid"],)) for i in firsts)
    return [Alert(*a) for a in sorted(out)]


def _first_answers(events: Sequence[Mapping[str, Any]], answers: Sequence[int]) -> dict[Any, int]:
    """The position of the first answer referring to each event id (given as text)."""
    first: dict[Any, int] = {}
    for j in answers:
        ref = events[j].get("ref")
        if isinstance(ref, str):
            first.setdefault(ref, j)
    return first


def _first_ref(events: Sequence[Mapping[str, Any]], p: EventPattern, eid: Any) -> int:
    """The position of the first ``unless`` event referring to ``eid``, an id that is not text."""
    return next((j for j, e in enumerate(events) if e["kind"] == p.unless and e.get("ref") == eid), len(events))


class _Budget:
    """The python backend's per-history timeout: the clock is read once per 64k comparisons."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.left = 1 << 16

    def spend(self, n: int) -> None:
        self.left -= n
        if self.left <= 0:
            self.left = 1 << 16
            if time.monotonic() > self.deadline:
                raise PluginError(
                    f"the `python` event backend took longer than {TIMEOUT:g} s on one history",
                    plugin="charter_plugins.events",
                    code="X009",
                    hint="a history this long needs fewer events or a shorter pattern `within`",
                )


@hookimpl
def charter_event_backends() -> list[EventBackendSpec]:
    return [
        EventBackendSpec(
            "durable_rules", _durable_compile, "durable-rules 2.0, fed the events in time order", "2.0.28"
        ),
        EventBackendSpec("python", _python_compile, "plain Python reference of the same semantics"),
    ]
