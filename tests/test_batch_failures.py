"""A decision that cannot be made ends nothing but itself (#20): ``Engine.evaluate_batch(...,
failures="yield")`` yields its ``EvaluationError`` in its place, naming the customer, and decides
the rest, logged or not; ``charter evaluate`` does so, and reports it on its line. Proved with a
real durable-rules worker that dies on one customer's history, every time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, NOW, POLICIES

from engine import Decision, Engine
from engine.audit import DecisionLog, Protector
from engine.core.domain import Domain, DomainResult
from engine.core.model import Policy
from engine.errors import EvaluationError, FactErrors
from engine.hookspecs import Registry, hookimpl
from engine.plugins import open_store

REQUESTS = EXAMPLES.parent / "requests" / "escalation.jsonl"


class _Fragile:
    """A domain whose code fails (its own bug) on the request with id `bad`."""

    def __call__(
        self, facts: Mapping[str, Any], now: datetime, upstream: Mapping[str, Decision], explain: bool
    ) -> DomainResult:
        if facts.get("id") == "bad":
            raise RuntimeError("a bug in the plugin")
        return DomainResult({"ok": True}, [])


class _Plugin:
    @hookimpl
    def charter_domains(self) -> list[Domain]:
        return [Domain("fragile", "fails on one request", shared=False, build=self.build)]

    @staticmethod
    def build(policy: Policy, registry: Registry) -> _Fragile:
        return _Fragile()


@pytest.fixture
def fragile(tmp_path: Path) -> Path:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "fragile.yaml").write_text("charter: 1\nkind: fragile\nid: f\n", encoding="utf-8")
    return tmp_path / "p"


BATCH = [{"id": "a"}, {"id": "bad"}, {"id": "c"}, {"x": 1, "id": "d"}]


@pytest.mark.parametrize("logged", [False, True])
def test_a_failed_decision_is_yielded_in_its_place_and_the_rest_decided(
    tmp_path: Path, fragile: Path, logged: bool
) -> None:
    log = None
    if logged:
        store = open_store(f"sqlite:///{tmp_path / 'log.db'}")
        log = DecisionLog(store, Protector(store, os.urandom(32)))
    engine = Engine(fragile, plugins=[_Plugin()], log=log)
    got = list(engine.evaluate_batch("fragile", BATCH, now=NOW, failures="yield"))
    assert [type(g).__name__ for g in got] == ["Decision", "EvaluationError", "Decision", "Decision"]
    failed = got[1]
    assert isinstance(failed, EvaluationError) and failed.code == "V006" and failed.subject == "bad"
    assert "a bug in the plugin" in failed.message and failed.to_dict()["subject"] == "bad"
    decided = [g for g in got if isinstance(g, Decision)]
    assert [d.subject for d in decided] == ["a", "c", "d"]
    if logged:
        assert all(d.record_id for d in decided)  # durable, as any batch's decisions
        assert log is not None and sum(1 for _ in log.store.read()) == 3  # nothing logged for the failure
    with pytest.raises(EvaluationError):  # the default is as before: the batch stops there
        list(engine.evaluate_batch("fragile", BATCH, now=NOW))


def test_failures_yielded_and_bad_facts_yielded_are_told_apart(fragile: Path) -> None:
    engine = Engine(fragile, plugins=[_Plugin()])
    got = list(engine.evaluate_batch("fragile", [{"id": "bad"}, "not an object"], now=NOW, failures="yield"))  # type: ignore[list-item]
    assert isinstance(got[0], EvaluationError) and isinstance(got[1], FactErrors)


WRAPPER = """\
import os, sys
sys.path.insert(0, os.path.dirname(sys.argv[1]))
import durable_worker as w
real = w.match
def match(key, events, now):
    if any(e.get("eid") == "poison" for e in events):
        os._exit(3)  # the worker dies on this history, every time
    return real(key, events, now)
w.match = match
w.serve(sys.stdin, sys.stdout)
"""


def test_charter_evaluate_reports_a_history_the_worker_dies_on_and_decides_the_rest(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WRAPPER, encoding="utf-8")
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n', encoding="utf-8")
    python.chmod(0o755)
    lines = [json.loads(line) for line in REQUESTS.read_text(encoding="utf-8").splitlines()[:8]]
    with_events = [i for i, r in enumerate(lines) if r.get("events")]
    poisoned = with_events[1]
    lines[poisoned]["events"].append({"type": "complaint", "at": "2025-06-01T00:00:00Z", "id": "poison"})
    facts = tmp_path / "tickets.jsonl"
    facts.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8")
    env = {**os.environ, "CHARTER_WORKER_PYTHON": str(python), "CHARTER_LOG_KEY": os.urandom(32).hex()}
    cmd = [sys.executable, "-m", "engine.cli", "evaluate", "--domain", "escalation", "--facts", str(facts)]
    cmd += ["--policies", str(POLICIES), "--population", str(EXAMPLES), "--now", "2025-06-30T00:00:00Z"]
    cmd += ["--store", f"sqlite:///{tmp_path / 'log.db'}"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert "Traceback" not in done.stderr, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == len(lines) and done.returncode == 1, done.stderr
    errors = [i for i, r in enumerate(results) if "error" in r]
    assert errors == [poisoned], (errors, done.stderr)
    failure = results[poisoned]
    assert failure["subject"] == lines[poisoned]["customer"]["id"] and failure["error"]["code"].startswith("X")
    assert f"{facts}:{poisoned + 1}: " in done.stderr and "could not be decided" in done.stderr
    assert all(r.get("record_id") for i, r in enumerate(results) if i != poisoned)  # the others logged


def test_a_budget_failure_is_yielded_in_place_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.core.expr.cost import Meter

    (tmp_path / "tiering.yaml").write_text(
        "charter: 1\nkind: tiering\nid: t\nfacts:\n  tags: {type: list, items: string, default: []}\n"
        "outputs:\n  tier: {type: string, values: [gold, silver]}\ntables:\n  - id: t\n    hit: first\n"
        "    output: tier\n    rules:\n      - {id: gold, when: 'customer.tags.exists(t, t == \"vip\")', then: gold}\n"
        "      - {id: silver, when: 'true', then: silver}\n",
        encoding="utf-8",
    )
    engine = Engine(tmp_path)
    monkeypatch.setattr(Meter, "budget", 100)
    batch = [{"id": "a", "tags": ["vip"]}, {"id": "b", "tags": ["x"] * 200}, {"id": "c", "tags": []}]
    got = list(engine.evaluate_batch("tiering", batch, now=NOW, failures="yield"))
    assert isinstance(got[1], EvaluationError) and got[1].code == "V008" and got[1].subject == "b"
    assert [g.outputs["tier"] for g in got if isinstance(g, Decision)] == ["gold", "silver"]


def test_a_run_of_failures_is_streamed_not_held(tmp_path: Path, fragile: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'log.db'}")
    engine = Engine(fragile, plugins=[_Plugin()], log=DecisionLog(store, Protector(store, os.urandom(32))), log_batch=4)
    read = 0

    def requests() -> Any:
        nonlocal read
        for _ in range(40):
            read += 1
            yield {"id": "bad"}

    results = engine.evaluate_batch("fragile", requests(), now=NOW, failures="yield")
    first = next(results)
    assert isinstance(first, EvaluationError) and read <= 4  # yielded once a batch's worth is in hand
    assert sum(1 for _ in results) == 39
