"""Replay is a pure function of the record: plugin outputs are recorded and replayed, and a
plugin whose installed version answers otherwise is reported, never silently believed.

Real plugins throughout: the built-in scorers, detectors and event backends (``python`` and
``durable_rules``), and "changed" plugins that are the built-ins with one behaviour altered,
installed in their place (the built-in module left out of ``build_registry(builtins=...)``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from charter_plugins import detectors as builtin_detectors
from charter_plugins import events as builtin_events
from charter_plugins import scorers as builtin_scorers
from conftest import EXAMPLES, NOW, POLICIES

from engine import Decision, Engine
from engine.audit import DecisionLog, Protector, verify
from engine.audit.chain import link
from engine.audit.replay import Filters, Replayer, Report, unseal
from engine.domains.classification import _texts, flatten
from engine.domains.escalation import _alerts_json
from engine.hookspecs import Alert, DetectorSpec, EventBackendSpec, EventPattern, ScorerSpec, hookimpl
from engine.plugins import Registry, build_registry, open_store
from engine.storage import Store

KEY = bytes(range(32))
SUPPORT = ("engine.domains", "charter_plugins.storage")  # the built-ins that are not replaced here

SCORING = """\
charter: 1
kind: tiering
id: pinned-scores
facts:
  last_purchase_at: {type: timestamp, required: true}
  purchases_12m: {type: integer, min: 0, required: true}
  annual_sales: {type: number, min: 0, required: true}
  complaints_90d: {type: integer, min: 0, default: 0}
  profit_contribution: {type: number, required: true}
  relationship_years: {type: number, min: 0, max: 100, required: true}
  loyalty_score: {type: number, min: 0, max: 1, required: true}
scores:
  rfm: {scorer: rfm}
  churn: {scorer: churn_risk}
  value: {scorer: clv, args: {horizon_years: 5.0}}
outputs:
  champion: {type: boolean}
  at_risk: {type: boolean}
  valuable: {type: boolean}
tables:
  - id: champions
    hit: first
    output: champion
    default: false
    rules:
      - {id: champion, when: scores.rfm >= 444.0, then: true, message: "recent, frequent and big buyers"}
  - id: churn
    hit: first
    output: at_risk
    default: false
    rules:
      - {id: at-risk, when: scores.churn >= 0.5, then: true, message: "likely to leave"}
  - id: value
    hit: first
    output: valuable
    default: false
    rules:
      - {id: valuable, when: scores.value >= 100000.0, then: true, message: "worth keeping"}
"""


def _read(name: str) -> list[dict[str, Any]]:
    with (EXAMPLES.parent / name).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# --------------------------------------------------------------------------------------------
# changed plugins: the built-ins, one behaviour altered, under the same names
# --------------------------------------------------------------------------------------------


def _builtin(hook: Any) -> dict[str, Any]:
    return {s.name: s for s in hook()}


class ChangedScorers:
    """``clv`` a hundredth of what it was (and version 2), ``churn_risk`` inverted, ``rfm`` as it was."""

    @hookimpl
    def charter_scorers(self) -> list[ScorerSpec]:
        was = _builtin(builtin_scorers.charter_scorers)
        clv, churn = was["clv"].func, was["churn_risk"].func
        return [
            dataclasses.replace(was["clv"], func=lambda f, a, now: clv(f, a, now) / 100.0, version="2"),
            dataclasses.replace(was["churn_risk"], func=lambda f, a, now: 1.0 - churn(f, a, now)),
            was["rfm"],
        ]


class ChangedDetectors:
    """``national_id`` now says yes to anything; ``medical_terms`` left out unless ``all``."""

    def __init__(self, *, medical: bool = True) -> None:
        self.medical = medical

    @hookimpl
    def charter_detectors(self) -> list[DetectorSpec]:
        was = _builtin(builtin_detectors.charter_detectors)
        out = [dataclasses.replace(was["national_id"], func=lambda text: True, screen="")]
        out += [s for n, s in was.items() if n != "national_id" and (self.medical or n != "medical_terms")]
        return out


def _no_alerts(patterns: Any, key: str) -> Any:
    def match(events: Any, now: int) -> list[Alert]:
        return []

    return match


class ChangedEvents:
    """``python`` now never alerts; ``durable_rules`` as it was (or left out: ``durable=False``)."""

    def __init__(self, *, durable: bool = True) -> None:
        self.durable = durable

    @hookimpl
    def charter_event_backends(self) -> list[EventBackendSpec]:
        was = _builtin(builtin_events.charter_event_backends)
        out = [dataclasses.replace(was["python"], prepare=_no_alerts)]
        return out + ([was["durable_rules"]] if self.durable else [])


def changed(*, medical: bool = True, durable: bool = True) -> Registry:
    registry = build_registry(
        [ChangedScorers(), ChangedDetectors(medical=medical), ChangedEvents(durable=durable)],
        builtins=SUPPORT,
        entry_points=False,
    )
    assert registry.problems == []
    return registry


# --------------------------------------------------------------------------------------------
# one log of every kind of plugin call
# --------------------------------------------------------------------------------------------


@dataclass
class Logged:
    url: str
    store: Store
    decisions: list[Decision]  # in log order
    python_escalations: list[Decision]
    durable_escalations: list[Decision]
    durable_requests: list[dict[str, Any]]
    scoring: list[Decision]  # decided by the policy with rfm, churn_risk and clv


def _policies(tmp: Path) -> tuple[Path, Path]:
    """The shipped policies with the escalation backend ``python``, and the scoring policy."""
    python = tmp / "python"
    shutil.copytree(POLICIES, python, ignore=shutil.ignore_patterns("tests"))
    escalation = python / "escalation.yaml"
    text = escalation.read_text(encoding="utf-8")
    assert "event_backend: durable_rules" in text
    escalation.write_text(text.replace("event_backend: durable_rules", "event_backend: python"), encoding="utf-8")
    scoring = tmp / "scoring"
    scoring.mkdir()
    (scoring / "tiering.yaml").write_text(SCORING, encoding="utf-8")
    return python, scoring


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    tmp = tmp_path_factory.mktemp("pinning")
    python, scoring = _policies(tmp)
    url = f"sqlite:///{tmp / 'log.db'}"
    store = open_store(url)
    customers = _read("customers.jsonl")
    escalations = _read("requests/escalation.jsonl")
    decisions: list[Decision] = []

    def engine(policies: Path) -> Engine:
        eng = Engine(policies, log=DecisionLog(store, Protector(store, KEY)))
        eng.use_snapshot(eng.build_snapshot(customers, now=NOW))
        return eng

    def run(eng: Engine, domain: str, items: list[dict[str, Any]]) -> list[Decision]:
        made = [d for d in eng.evaluate_batch(domain, items, now=NOW) if isinstance(d, Decision)]
        assert len(made) == len(items)
        decisions.extend(made)
        return made

    main = engine(python)
    run(main, "tiering", customers[:40])
    run(main, "classification", customers[:40])
    run(main, "access", _read("requests/access.jsonl")[:40])
    py = run(main, "escalation", escalations[:40])
    scored = run(engine(scoring), "tiering", customers[:40])
    durable = run(engine(POLICIES), "escalation", escalations[:8])
    yield Logged(url, store, decisions, py, durable, escalations[:8], scored)
    store.close()


def bodies(store: Store) -> list[dict[str, Any]]:
    return [json.loads(json.loads(data)["body"]) for _, data in store.read()]


def replay(store: Store, registry: Registry | None = None) -> Report:
    with Replayer(store, Protector(store, KEY), registry=registry) as replayer:
        return replayer.run()


def differences(report: Report) -> dict[tuple[str, str], dict[str, Any]]:
    return {(p["kind"], p["name"]): p for p in report.plugin_differences()}


def _scores(d: Decision, name: str) -> list[float]:
    """The score ``name`` of ``d`` and of every decision it used."""
    return ([d.scores[name]] if name in d.scores else []) + [s for u in d.upstream for s in _scores(u, name)]


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------


def test_records_hold_every_plugin_answer_in_the_hashed_body(logged: Logged) -> None:
    rows = list(logged.store.read())
    assert verify(rows).ok
    kinds = set()
    for (_, data), decision in zip(rows, logged.decisions, strict=True):
        body = json.loads(json.loads(data)["body"])
        assert body["v"] == 2
        for entry in body["plugin_outputs"]:
            kinds.add((entry["kind"], entry["name"]))
            assert entry["version"] and entry["calls"] and entry["at"].split("/")[0] == decision.domain
    assert kinds >= {
        ("scorer", "clv"),
        ("scorer", "rfm"),
        ("scorer", "churn_risk"),
        ("detector", "national_id"),
        ("detector", "bank_card"),
        ("event_backend", "python"),
        ("event_backend", "durable_rules"),
    }
    # the answers are in the body the chain hashes: changing one breaks the chain at that record
    seq, data = next((s, d) for s, d in rows if '"detector"' in json.loads(d)["body"])
    rec = json.loads(data)
    forged = (
        rec["body"].replace("true", "false", 1) if "true" in rec["body"] else rec["body"].replace("false", "true", 1)
    )
    assert forged != rec["body"]
    tampered = [(s, json.dumps({**rec, "body": forged}).encode() if s == seq else d) for s, d in rows]
    result = verify(tampered)
    assert not result.ok and result.bad_seq == seq


def test_recorded_detector_answers_are_the_detectors_own(logged: Logged) -> None:
    """Each recorded answer is what the built-in detector (with its screen) says of that
    field's texts in the logged facts: the log records the detectors, not a guess."""
    protector = Protector(logged.store, KEY)
    detectors = build_registry().detectors
    checked = 0
    for body in bodies(logged.store):
        facts = unseal(body["facts"], "", body["subject"] or "", protector)
        for entry in body["plugin_outputs"]:
            if entry["kind"] != "detector":
                continue
            part = facts if entry["at"] == "classification" else facts["resource"]["record"]
            assert entry["at"] in ("classification", "access/classification")
            texts: dict[str, list[str]] = {}
            for path, value in flatten(part):
                texts.setdefault(path, []).extend(_texts(value))
            spec = detectors[entry["name"]]
            for path, answer in entry["calls"].items():
                assert answer == any(spec.func(t) for t in texts[path]), (entry["name"], path)
                checked += 1
    assert checked > 1000


def test_recorded_scores_and_alerts_are_those_the_decisions_used(logged: Logged) -> None:
    for body, decision in zip(bodies(logged.store), logged.decisions, strict=True):
        entries = {(e["kind"], e["name"], e["at"]): e["calls"] for e in body["plugin_outputs"]}
        if decision.domain == "escalation":
            backend = "python" if decision in logged.python_escalations else "durable_rules"
            calls = entries.get(("event_backend", backend, "escalation"))
            alerts = decision.outputs["churn_alerts"]
            assert calls is not None or not alerts
            if calls is not None:
                assert [(a["pattern"], a["events"]) for a in calls["events"]] == [
                    (a["pattern"], a["events"]) for a in alerts
                ]
            assert list(entries[("scorer", "clv", "escalation/tiering")].values()) == _scores(decision, "value")
        elif decision.domain == "tiering":
            scorers = (("value", "clv"), ("rfm", "rfm"), ("churn", "churn_risk"))
            for score, scorer in scorers if decision in logged.scoring else scorers[:1]:
                assert list(entries[("scorer", scorer, "tiering")].values()) == [decision.scores[score]]


def test_replay_reproduces_and_reports_nothing_with_the_plugins_that_logged(logged: Logged) -> None:
    report = replay(logged.store)
    assert report.ok and report.same == report.total == len(logged.decisions)
    assert report.plugin_differences() == [] and report.live == 0


def test_changed_plugins_cannot_change_history_and_are_reported(logged: Logged) -> None:
    report = replay(logged.store, changed())
    assert report.errors == [] and report.changed == []
    assert report.same == report.total == len(logged.decisions)  # every decision, from the recorded answers
    found = differences(report)
    # clv: a hundredth of every non-zero value, in tiering and in escalation's upstream tiering
    clv_calls = [v for d in logged.decisions for v in _scores(d, "value") if v != v / 100.0]
    assert found[("scorer", "clv")]["calls"] == len(clv_calls) > 100
    assert (found[("scorer", "clv")]["version_then"], found[("scorer", "clv")]["version_now"]) == ("1", "2")
    churn = [v for d in logged.scoring for v in _scores(d, "churn") if v != 1.0 - v]
    assert found[("scorer", "churn_risk")]["calls"] == found[("scorer", "churn_risk")]["records"] == len(churn) == 40
    # national_id now says yes to everything: every question the real one said no to differs
    said_no = sum(
        1
        for body in bodies(logged.store)
        for e in body["plugin_outputs"]
        if e["name"] == "national_id"
        for answer in e["calls"].values()
        if answer is False
    )
    assert found[("detector", "national_id")]["calls"] == said_no > 100
    # python never alerts now: it differs on every escalation that had alerts
    alerting = [d for d in logged.python_escalations if d.outputs["churn_alerts"]]
    assert found[("event_backend", "python")]["calls"] == found[("event_backend", "python")]["records"]
    assert found[("event_backend", "python")]["calls"] == len(alerting) > 0
    # the unchanged ones are compared and not named
    assert set(found) == {
        ("scorer", "clv"),
        ("scorer", "churn_risk"),
        ("detector", "national_id"),
        ("event_backend", "python"),
    }


def test_uninstalled_plugins_still_replay_from_the_record(logged: Logged) -> None:
    report = replay(logged.store, changed(medical=False, durable=False))
    assert report.errors == [] and report.changed == []
    assert report.same == report.total
    found = differences(report)
    durable = found[("event_backend", "durable_rules")]
    with_events = [r for r in logged.durable_requests if r.get("events")]  # asked: the stand-in fails
    assert durable["version_now"] is None and durable["calls"] == len(with_events) > 0
    medical = found[("detector", "medical_terms")]
    assert medical["version_now"] is None and medical["version_then"] == "1" and medical["calls"] > 0


def _as_version_1(source: Path, copy: Path) -> int:
    """A copy of the SQLite log at ``source`` with its records as an earlier Charter wrote them:
    no plugin outputs, record version 1, chained anew (blobs and keys copied as they are)."""
    with sqlite3.connect(source) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    with sqlite3.connect(copy) as db:
        prev: bytes | None = None
        rows = db.execute("SELECT seq, data FROM charter_records ORDER BY seq").fetchall()
        for seq, data in rows:
            body = json.loads(json.loads(data)["body"])
            del body["plugin_outputs"]
            body["v"] = 1
            prev = link(prev, json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())
            db.execute("UPDATE charter_records SET data = ? WHERE seq = ?", (prev, seq))
    return len(rows)


def test_a_version_1_record_replays_live_and_says_so(logged: Logged, tmp_path: Path) -> None:
    n = _as_version_1(Path(logged.url.removeprefix("sqlite:///")), tmp_path / "old.db")
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = open_store(url)
    try:
        assert verify(old.read()).ok
        live = replay(old)
        assert live.ok and live.same == n == len(logged.decisions) and live.live == n
        assert live.plugin_differences() == []
        # live plugins, as before: a changed plugin now changes what the old records replay to
        drifted = replay(old, changed())
        assert not drifted.ok and drifted.live == n
    finally:
        old.close()
    r = subprocess.run(
        [sys.executable, "-m", "engine.cli", "replay", "--store", url],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CHARTER_LOG_KEY": KEY.hex()},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{n} decision(s): {n} reproduced, 0 diverged" in r.stdout
    assert f"note: {n} record(s) logged without plugin outputs (record version 1)" in r.stdout


def test_charter_replay_names_the_plugin_that_now_answers_otherwise(tmp_path: Path) -> None:
    """Logged with changed plugins, replayed by the command line with the installed built-ins."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    store = open_store(url)
    try:
        customers = _read("customers.jsonl")[:30]
        eng = Engine(POLICIES, registry=changed(), log=DecisionLog(store, Protector(store, KEY)))
        eng.use_snapshot(eng.build_snapshot(_read("customers.jsonl"), now=NOW))
        tiers = list(eng.evaluate_batch("tiering", customers, now=NOW))
        classes = list(eng.evaluate_batch("classification", customers, now=NOW))
        assert len(tiers) == len(classes) == 30
        clv_changed = sum(1 for d in tiers if isinstance(d, Decision) and d.scores["value"] != d.scores["value"] * 100)
    finally:
        store.close()
    r = subprocess.run(
        [sys.executable, "-m", "engine.cli", "replay", "--store", url],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CHARTER_LOG_KEY": KEY.hex()},
    )
    assert r.returncode == 0, r.stdout + r.stderr  # reproduced from the recorded answers
    assert "60 decision(s): 60 reproduced, 0 diverged" in r.stdout
    assert (
        f"plugin: scorer `clv` (version 2 when logged, version 1 now) answers otherwise in {clv_changed} call(s) "
        f"of {clv_changed} record(s); the recorded answers were used" in r.stdout
    )
    line = next(x for x in r.stdout.splitlines() if "detector `national_id`" in x)
    assert "(version 1 when logged, version 1 now)" in line and "of 30 record(s)" in line
    assert int(line.split(" answers otherwise in ")[1].split(" ")[0]) > 30  # several fields each
    assert "churn_risk" not in r.stdout and "`phone`" not in r.stdout  # unchanged: compared, not named


def test_what_if_uses_the_recorded_answers_where_the_question_is_the_same(logged: Logged) -> None:
    """``against`` the same policies, with changed plugins: nothing changes."""
    with Replayer(logged.store, Protector(logged.store, KEY), against=POLICIES, registry=changed()) as replayer:
        report = replayer.run(Filters(domain="classification"))
    assert report.errors == [] and report.total == 40 and report.same == 40


def test_an_event_pattern_is_recorded_as_the_backend_returned_it() -> None:
    """The recorded alerts round-trip to the backend's own ``Alert`` values."""
    was = _builtin(builtin_events.charter_event_backends)
    match = was["python"].prepare([EventPattern("p", "complaint")], "k")
    alerts = match([{"kind": "complaint", "ts": 100, "eid": "e1", "ref": None, "score": None}], 200)
    assert alerts
    assert [Alert(int(a["at"]), str(a["pattern"]), tuple(a["events"])) for a in _alerts_json(alerts)] == alerts


FAILING = {
    "classification.yaml": """\
charter: 1
kind: classification
id: flaky-classes
classes:
  - id: public
    handling: {encrypt_at_rest: false, mask: none, export: true}
  - id: sensitive
    handling: {encrypt_at_rest: true, mask: full, export: false}
rules:
  - {id: by-name, class: public, fields: ["*"]}
  - {id: flaky-rule, class: sensitive, detector: flaky}
""",
    "tiering.yaml": """\
charter: 1
kind: tiering
id: boom
facts:
  purchases_12m: {type: integer, min: 0, required: true}
scores:
  b: {scorer: boom}
outputs:
  big: {type: boolean}
tables:
  - id: big
    hit: first
    output: big
    default: false
    rules:
      - {id: big-buyer, when: scores.b >= 5.0, then: true, message: "big"}
""",
}


class Failing:
    """A detector that fails on a text with an ``@`` and a scorer that fails on an odd count
    (``fixed``: neither fails any more)."""

    def __init__(self, *, fixed: bool) -> None:
        self.fixed = fixed

    def flaky(self, text: str) -> bool:
        if "@" in text and not self.fixed:
            raise ValueError("no at signs")
        return text.isdigit()

    def boom(self, facts: Any, args: Any, now: Any) -> float:
        if facts["purchases_12m"] % 2 and not self.fixed:
            raise ValueError("odd")
        return float(facts["purchases_12m"])

    @hookimpl
    def charter_detectors(self) -> list[DetectorSpec]:
        return [DetectorSpec("flaky", self.flaky)]

    @hookimpl
    def charter_scorers(self) -> list[ScorerSpec]:
        return [ScorerSpec("boom", self.boom, reads={"purchases_12m": "integer"})]


def test_plugin_failures_are_recorded_and_replayed_as_they_were(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    for name, text in FAILING.items():
        (policies / name).write_text(text, encoding="utf-8")
    store = open_store(f"sqlite:///{tmp_path / 'log.db'}")
    try:
        customers = _read("customers.jsonl")[:30]
        eng = Engine(
            policies, registry=build_registry([Failing(fixed=False)]), log=DecisionLog(store, Protector(store, KEY))
        )
        tiers = [d for d in eng.evaluate_batch("tiering", customers, now=NOW) if isinstance(d, Decision)]
        classes = [d for d in eng.evaluate_batch("classification", customers, now=NOW) if isinstance(d, Decision)]
        odd = [c for c in customers if c["purchases_12m"] % 2]
        assert 0 < len(odd) < 30
        assert sum("scorer `boom` failed: ValueError: odd" in d.notes for d in tiers) == len(odd)
        raised = 0  # (customer, field) the detector failed on, as the rule asks it: texts in turn, first yes wins
        for c in customers:
            texts: dict[str, list[str]] = {}
            for path, value in flatten(c):
                texts.setdefault(path, []).extend(_texts(value))
            for field in texts.values():
                for t in field:
                    if "@" in t:
                        raised += 1
                        break
                    if t.isdigit():
                        break
        assert raised >= 30 and all(any("detector `flaky` failed on `email`" in n for n in d.notes) for d in classes)
        recorded = [
            answer
            for body in bodies(store)
            for e in body["plugin_outputs"]
            for answer in e["calls"].values()
            if isinstance(answer, dict)
        ]
        assert recorded.count({"raised": "ValueError"}) == raised
        assert recorded.count({"note": "scorer `boom` failed: ValueError: odd"}) == len(odd)
        # the plugins are fixed: history keeps its failures, and the change is reported
        report = replay(store, build_registry([Failing(fixed=True)]))
        assert report.errors == [] and report.changed == [] and report.same == 60
        found = differences(report)
        assert found[("scorer", "boom")]["calls"] == len(odd)
        assert found[("detector", "flaky")]["calls"] == raised and found[("detector", "flaky")]["records"] == 30
        # and with the failing plugins installed, nothing is reported
        assert replay(store, build_registry([Failing(fixed=False)])).plugin_differences() == []
    finally:
        store.close()
