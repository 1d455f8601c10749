"""Escalation: service-level clocks and their states, calendars, pauses, the ladder, churn patterns."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, POLICIES
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Engine
from engine.domains.escalation import Calendar
from engine.errors import FactErrors, PluginError, PolicyErrors
from engine.plugins import EventPattern, build_registry

NOW = datetime(2025, 6, 30, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def shipped() -> Engine:
    eng = Engine(POLICIES)
    with EXAMPLES.open(encoding="utf-8") as f:
        customers = [json.loads(line) for line in f]
    eng.use_snapshot(eng.build_snapshot(customers, now=NOW))
    return eng


@pytest.fixture(scope="module")
def tiers(shipped: Engine) -> dict[str, dict[str, Any]]:
    """An example customer of each value tier."""
    out: dict[str, dict[str, Any]] = {}
    with EXAMPLES.open(encoding="utf-8") as f:
        for line in f:
            c = json.loads(line)
            out.setdefault(shipped.evaluate("tiering", c, now=NOW).outputs["value_tier"], c)
    return out


def ticket(opened: datetime, **kw: Any) -> dict[str, Any]:
    t = {"id": "T1", "category": "enquiry", "severity": "minor", "opened_at": opened.isoformat(), **kw}
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in t.items()}


def decide(eng: Engine, customer: dict[str, Any], t: dict[str, Any], now: datetime = NOW, **extra: Any) -> Any:
    return eng.evaluate("escalation", {"ticket": t, "customer": customer, **extra}, now=now)


def test_first_response_within_24_hours(shipped: Engine, tiers: dict[str, dict[str, Any]]) -> None:
    low = tiers["low"]
    fresh = decide(shipped, low, ticket(NOW - timedelta(hours=10)))
    assert fresh.outputs["clocks"]["first-response"]["state"] == "in_progress"
    assert fresh.outputs["clocks"]["first-response"]["target_hours"] == 24
    assert fresh.outputs["clocks"]["first-response"]["due"] == NOW + timedelta(hours=14)
    assert (fresh.outputs["level"], fresh.outputs["owner"]) == (1, "first_contact")
    warned = decide(shipped, low, ticket(NOW - timedelta(hours=19), first_contact="agent-7"))
    assert warned.outputs["state"] == "nearing_breach"
    assert (warned.outputs["level"], warned.outputs["owner"], warned.outputs["actions"]) == (
        2,
        "supervisor",
        ["notify_supervisor"],
    )
    late = decide(shipped, low, ticket(NOW - timedelta(hours=25)))
    assert late.outputs["state"] == "breached" and late.outputs["owner"] == "manager"
    day_late = decide(shipped, low, ticket(NOW - timedelta(hours=49)))
    assert (day_late.outputs["level"], day_late.outputs["owner"]) == (4, "compliance")


def test_first_contact_owns_the_case(shipped: Engine, tiers: dict[str, dict[str, Any]]) -> None:
    d = decide(shipped, tiers["low"], ticket(NOW - timedelta(hours=1), first_contact="agent-7"))
    assert d.outputs["owner"] == "agent-7"


def test_major_in_48_and_complex_in_72_hours(shipped: Engine, tiers: dict[str, dict[str, Any]]) -> None:
    t = ticket(
        NOW - timedelta(hours=50), severity="major", complexity="complex", first_response_at=NOW - timedelta(hours=49)
    )
    clocks = decide(shipped, tiers["low"], t).outputs["clocks"]
    assert clocks["first-response"] == {
        "target_hours": 24,
        "elapsed_hours": 1,
        "state": "succeeded",
        "late": False,
        "due": NOW - timedelta(hours=26),
    }
    assert (clocks["major-handling"]["state"], clocks["major-handling"]["target_hours"]) == ("breached", 48)
    assert (clocks["complex-closure"]["state"], clocks["complex-closure"]["target_hours"]) == ("in_progress", 72)


def test_high_value_customers_get_shorter_targets(shipped: Engine, tiers: dict[str, dict[str, Any]]) -> None:
    t = ticket(NOW - timedelta(hours=13))
    high = decide(shipped, tiers["high"], t)
    assert high.outputs["tier"] == "high"
    assert high.outputs["clocks"]["first-response"]["target_hours"] == 12
    assert high.outputs["state"] == "breached"
    assert decide(shipped, tiers["medium"], t).outputs["state"] == "in_progress"
    assert [u.domain for u in high.upstream] == ["tiering"]


def test_late_success_is_recorded_as_late(shipped: Engine, tiers: dict[str, dict[str, Any]]) -> None:
    t = ticket(NOW - timedelta(hours=40), first_response_at=NOW - timedelta(hours=10))
    c = decide(shipped, tiers["low"], t).outputs["clocks"]["first-response"]
    assert (c["state"], c["late"], c["elapsed_hours"]) == ("succeeded", True, 30)


def test_time_waiting_on_the_customer_does_not_count(shipped: Engine, tiers: dict[str, dict[str, Any]]) -> None:
    pauses = [{"from": (NOW - timedelta(hours=20)).isoformat(), "to": (NOW - timedelta(hours=5)).isoformat()}]
    d = decide(shipped, tiers["low"], ticket(NOW - timedelta(hours=30), pauses=pauses))
    c = d.outputs["clocks"]["first-response"]
    assert (c["state"], c["elapsed_hours"], c["due"]) == ("in_progress", 15, NOW + timedelta(hours=9))
    waiting = [{"from": (NOW - timedelta(hours=2)).isoformat()}]
    assert decide(shipped, tiers["low"], ticket(NOW - timedelta(hours=30), pauses=waiting)).outputs["state"] == "paused"


def test_cancelled_clock(shipped: Engine, tiers: dict[str, dict[str, Any]]) -> None:
    d = decide(shipped, tiers["low"], ticket(NOW - timedelta(hours=30), cancelled_at=NOW - timedelta(hours=29)))
    assert d.outputs["state"] == "cancelled"
    assert d.outputs["clocks"]["first-response"]["due"] is None


def test_business_hours_with_holidays(shipped: Engine, tiers: dict[str, dict[str, Any]]) -> None:
    # opened Tue 30 Sep 2025 17:00 Beijing; 1-3 Oct and 6 Oct are holidays, 4-5 Oct a weekend
    opened = datetime(2025, 9, 30, 9, tzinfo=UTC)
    d = decide(shipped, tiers["low"], ticket(opened, category="billing"), now=datetime(2025, 10, 7, 2, tzinfo=UTC))
    c = d.outputs["clocks"]["billing-review"]
    assert c["elapsed_hours"] == 2  # 1 hour on 30 Sep, then 09:00-10:00 on 7 Oct
    assert c["due"] == datetime(2025, 10, 8, 7, tzinfo=UTC)  # 16 working hours: 1 + 9 + 6, 15:00 Beijing


def test_calendar_arithmetic_agrees_both_ways() -> None:
    cal = Calendar(
        timedelta(hours=8),
        frozenset(range(5)),
        datetime(2025, 1, 1, 9).time(),
        datetime(2025, 1, 1, 18).time(),
        frozenset(),
    )
    start = datetime(2025, 3, 7, 8, 30, tzinfo=UTC)  # a Friday, 16:30 Beijing
    for hours in (0.5, 1, 9, 27, 100):
        due = cal.advance(start, hours * 3600)
        assert cal.between(start, due) == hours * 3600


def test_bad_tickets_name_the_field(shipped: Engine, tiers: dict[str, dict[str, Any]]) -> None:
    with pytest.raises(FactErrors) as info:
        decide(shipped, tiers["low"], ticket(NOW, severity="majr"))
    assert (info.value.field, info.value.hint) == ("ticket.severity", "did you mean `major`?")
    with pytest.raises(FactErrors) as info:
        decide(shipped, tiers["low"], ticket(NOW), events=[{"type": "complaint", "at": "last week"}])
    assert info.value.field == "events.0.at"
    with pytest.raises(FactErrors) as info:
        decide(shipped, {"id": "x"}, ticket(NOW))
    assert info.value.field.startswith("customer.")


def events(*items: tuple[str, int] | tuple[str, int, dict[str, Any]]) -> list[dict[str, Any]]:
    base = datetime(2025, 1, 1, tzinfo=UTC)
    out = []
    for i, item in enumerate(items):
        kind, day = item[0], item[1]
        extra = item[2] if len(item) > 2 else {}  # type: ignore[misc]
        out.append({"type": kind, "at": (base + timedelta(days=day)).isoformat(), "id": f"x{i}", **extra})
    return out


def alerts(eng: Engine, customer: dict[str, Any], evs: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    d = decide(eng, customer, ticket(NOW - timedelta(hours=1)), events=evs)
    return [(a["pattern"], a["events"]) for a in d.outputs["churn_alerts"]]


def test_second_complaint_within_14_days_of_an_unanswered_one(shipped: Engine, tiers: dict[str, Any]) -> None:
    c = tiers["low"]
    assert alerts(shipped, c, events(("complaint", 0), ("complaint", 10), ("purchase", 30))) == [
        ("repeat-complaint", ["x0", "x1"])
    ]
    answered = events(("complaint", 0), ("complaint_answered", 2, {"ref": "x0"}), ("complaint", 10), ("purchase", 30))
    assert alerts(shipped, c, answered) == []
    assert alerts(shipped, c, events(("complaint", 0), ("purchase", 5), ("complaint", 20), ("purchase", 30))) == []


def test_no_purchase_in_120_days_after_a_complaint(shipped: Engine, tiers: dict[str, Any]) -> None:
    c = tiers["low"]
    assert alerts(shipped, c, events(("complaint", 0))) == [("silent-after-complaint", ["x0"])]
    assert alerts(shipped, c, events(("complaint", 0), ("purchase", 119))) == []
    # judged at the caller's `now`: 100 days after the complaint the window is still open
    d = decide(
        shipped,
        c,
        ticket(NOW - timedelta(hours=1)),
        now=datetime(2025, 4, 11, tzinfo=UTC),
        events=events(("complaint", 0)),
    )
    assert d.outputs["churn_alerts"] == []


def test_low_scores_and_tier_drops(shipped: Engine, tiers: dict[str, Any]) -> None:
    c = tiers["low"]
    found = alerts(shipped, c, events(("survey", 1, {"score": 4}), ("survey", 2, {"score": 2}), ("tier_drop", 3)))
    assert found == [("low-satisfaction", ["x1"]), ("tier-drop", ["x2"])]


def test_same_history_same_alerts_in_any_input_order(shipped: Engine, tiers: dict[str, Any]) -> None:
    evs = events(("complaint", 0), ("survey", 1, {"score": 1}), ("complaint", 5), ("tier_drop", 9))
    first = alerts(shipped, tiers["low"], evs)
    assert first == alerts(shipped, tiers["low"], list(reversed(evs)))
    assert len(first) == 5  # the silent-after-complaint pattern fires once per complaint


KINDS = ["complaint", "complaint_answered", "purchase", "survey", "tier_drop"]
PATTERNS = [
    EventPattern("repeat", "complaint", then="complaint", within=14 * 86400, unless="complaint_answered"),
    EventPattern("silent", "complaint", absent="purchase", within=120 * 86400),
    EventPattern("low", "survey", score_at_most=2),
    EventPattern("drop", "tier_drop"),
]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(KINDS), st.integers(0, 200), st.integers(0, 5), st.integers(0, 9)),
        max_size=8,
    )
)
def test_durable_rules_agrees_with_the_reference(raw: list[tuple[str, int, int, int]]) -> None:
    """The durable-rules backend and the plain reference give the same alerts on any history."""
    registry = build_registry()
    durable = registry.event_backends["durable_rules"].prepare(PATTERNS, "differential")
    reference = registry.event_backends["python"].prepare(PATTERNS, "differential")
    evs = sorted(
        (
            {"kind": k, "ts": day * 86400 + i, "eid": f"e{i}", "ref": f"e{ref}", "score": score}
            for i, (k, day, score, ref) in enumerate(raw)
        ),
        key=lambda e: (e["ts"], e["eid"]),
    )
    now = 250 * 86400
    assert durable(evs, now) == reference(evs, now)


@pytest.mark.parametrize(
    ("old", "new", "code", "message"),
    [
        ("  - tier: high\n", "  - tier: hihg\n", "P198", "unknown tier `hihg`"),
        ("    calendar: business\n", "    calendar: busines\n", "P194", "unknown calendar `busines`"),
        (
            "event_backend: durable_rules",
            "event_backend: drools",
            "P196",
            "no plugin provides the event backend `drools`",
        ),
        ("severities: [major, critical]\n", "severities: [major, critcal]\n", "P193", "unknown severity `critcal`"),
        ("    absent: purchase\n    within: 120d\n", "    absent: purchase\n", "P195", "`absent` needs `within`"),
    ],
)
def test_policy_mistakes_are_located(
    write_policy: Callable[..., Path], old: str, new: str, code: str, message: str
) -> None:
    for name in ("tiering.yaml", "classification.yaml"):
        write_policy((POLICIES / name).read_text(encoding="utf-8"), name)
    text = (POLICIES / "escalation.yaml").read_text(encoding="utf-8")
    assert old in text
    with pytest.raises(PolicyErrors) as info:
        Engine(write_policy(text.replace(old, new, 1), "escalation.yaml"))
    err = info.value.errors[0]
    assert (err.code, err.message) == (code, message)
    assert err.location.file.endswith("escalation.yaml") and err.location.line > 10


def test_durable_rules_gives_the_same_alerts_every_time_it_is_reused() -> None:
    """Its sessions are emptied after each history: no state leaks into the next, none piles up."""
    durable = build_registry().event_backends["durable_rules"].prepare(PATTERNS, "reuse")
    day = 86400
    history = [
        {"kind": "complaint", "ts": 0, "eid": "a"},
        {"kind": "complaint_answered", "ts": day, "eid": "b", "ref": "a"},
        {"kind": "complaint", "ts": 2 * day, "eid": "c"},
        {"kind": "purchase", "ts": 3 * day, "eid": "d"},
        {"kind": "survey", "ts": 4 * day, "eid": "e", "score": 1},
        {"kind": "complaint", "ts": 5 * day, "eid": "f"},
    ]
    expected = durable(history, 300 * day)
    assert [a.pattern for a in expected] == ["low", "repeat", "silent"]
    for _ in range(5000):  # a new session per history used to exhaust durable-rules' tables (MemoryError)
        assert durable(history, 300 * day) == expected
    assert durable(history[:1], 300 * day) == [durable(history[:1], 300 * day)[0]]


def test_durable_rules_runs_in_a_worker_process_not_in_the_host() -> None:
    """durable-rules' C engine has memory-safety bugs (plugins/events.py lists them): the host
    process never imports it, a worker process runs it, and that worker starts no timer threads."""
    script = f"""
import json, sys, threading
from datetime import datetime, timezone
from engine import Engine
from charter_plugins import events
now = datetime(2025, 6, 30, tzinfo=timezone.utc)
eng = Engine({str(POLICIES)!r})
with open({str(EXAMPLES)!r}, encoding="utf-8") as f:
    eng.use_snapshot(eng.build_snapshot([json.loads(x) for x in f], now=now))
with open({str(EXAMPLES.parent / "requests" / "escalation.jsonl")!r}, encoding="utf-8") as f:
    requests = [json.loads(x) for x in f][:40]
alerts = sum(len(eng.evaluate("escalation", r, now=now).outputs.get("churn_alerts") or []) for r in requests)
timers = [t.name for t in threading.enumerate() if isinstance(t, threading.Timer)]
seen = {{"durable_imported": "durable" in sys.modules, "worker": events._worker.pid, "alerts": alerts}}
print(json.dumps({{**seen, "timers": timers}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    seen = json.loads(out.stdout)
    assert seen["durable_imported"] is False
    assert seen["timers"] == []
    assert isinstance(seen["worker"], int) and seen["worker"] != os.getpid()
    assert seen["alerts"] > 0  # the worker did match the examples' histories


REPEAT_HISTORY = [
    {"kind": "complaint", "ts": 0, "eid": "a"},
    {"kind": "complaint", "ts": 86400, "eid": "b"},
]


def test_a_crashed_worker_is_replaced_and_the_history_matched_again() -> None:
    """A worker killed by a segmentation fault (as durable-rules did) costs no decision."""
    from charter_plugins.events import DurableWorker

    worker = DurableWorker()
    try:
        expected = worker.match("crash", PATTERNS, REPEAT_HISTORY, 300 * 86400)
        assert [a.pattern for a in expected] == ["repeat", "silent", "silent"]
        first = worker.pid
        assert first is not None
        os.kill(first, signal.SIGSEGV)
        assert worker.match("crash", PATTERNS, REPEAT_HISTORY, 300 * 86400) == expected
        assert worker.restarts == 1 and worker.pid not in (None, first)
    finally:
        worker.close()


def test_a_history_that_kills_the_worker_twice_is_a_plugin_error(tmp_path: Path) -> None:
    """Never a crash of the host: the decision fails with a located plugin error and a hint."""
    from charter_plugins.events import DurableWorker

    dying = tmp_path / "dying_worker.py"
    dying.write_text(
        "import os, signal, sys\n"
        "for line in sys.stdin:\n"
        "    if '\"match\"' in line:\n"
        "        os.kill(os.getpid(), signal.SIGSEGV)\n"
        "    print('{\"ok\": true}', flush=True)\n",
        encoding="utf-8",
    )
    worker = DurableWorker([sys.executable, str(dying)])
    try:
        with pytest.raises(PluginError) as info:
            worker.match("dying", PATTERNS, REPEAT_HISTORY, 300 * 86400)
        assert info.value.code == "X005"
        assert "died of SIGSEGV" in info.value.message and "event_backend: python" in (info.value.hint or "")
        assert worker.restarts == 2
    finally:
        worker.close()


def test_a_forked_child_starts_its_own_worker() -> None:
    """Two processes never share one worker's pipes (batch runs fork on two cores)."""
    from charter_plugins.events import DurableWorker

    worker = DurableWorker()
    try:
        expected = worker.match("fork", PATTERNS, REPEAT_HISTORY, 300 * 86400)
        parent_worker = worker.pid
        read, write = os.pipe()
        worker._lock.acquire()  # as if another parent thread were matching at the fork
        child = os.fork()
        if child:
            worker._lock.release()
        if child == 0:  # pragma: no cover - runs in the child
            try:
                ok = worker.match("fork", PATTERNS, REPEAT_HISTORY, 300 * 86400) == expected
                os.write(write, json.dumps([ok, worker.pid]).encode())
            finally:
                os._exit(0)
        os.close(write)
        if not select.select([read], [], [], 60)[0]:
            os.kill(child, signal.SIGKILL)
            pytest.fail("the forked child hung on the lock a parent thread held at the fork")
        ok, child_worker = json.loads(os.read(read, 1000))
        os.waitpid(child, 0)
        assert ok and child_worker not in (None, parent_worker)
        assert worker.pid == parent_worker  # the parent's worker still serves the parent
        assert worker.match("fork", PATTERNS, REPEAT_HISTORY, 300 * 86400) == expected
    finally:
        worker.close()


def test_event_ids_are_compared_as_the_reference_compares_them() -> None:
    """The worker hands durable-rules numbers for event ids (its stored strings point into freed
    memory): repeated ids, references to unknown ids and ids that look like numbers still
    match exactly as the plain reference matches them."""
    registry = build_registry()
    durable = registry.event_backends["durable_rules"].prepare(PATTERNS, "ids")
    reference = registry.event_backends["python"].prepare(PATTERNS, "ids")
    day = 86400
    history = [
        {"kind": "complaint", "ts": 0, "eid": "7"},
        {"kind": "complaint_answered", "ts": day, "eid": "x", "ref": "7"},
        {"kind": "complaint", "ts": 2 * day, "eid": "7"},  # the same id again
        {"kind": "complaint_answered", "ts": 3 * day, "eid": "y", "ref": "nowhere"},
        {"kind": "complaint", "ts": 4 * day, "eid": "-1"},  # the id the clock fact would have
        {"kind": "complaint", "ts": 5 * day, "eid": "z", "ref": "-1"},
    ]
    for n in range(1, len(history) + 1):
        assert durable(history[:n], 300 * day) == reference(history[:n], 300 * day), n


def test_a_hung_worker_is_killed_and_the_decision_fails_in_bounded_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from charter_plugins import events

    hung = tmp_path / "hung_worker.py"
    hung.write_text(
        "import sys, time\nfor line in sys.stdin:\n    if '\"match\"' in line:\n        time.sleep(3600)\n"
        "    print('{\"ok\": true}', flush=True)\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(events, "TIMEOUT", 0.5)
    worker = events.DurableWorker([sys.executable, str(hung)])
    try:
        with pytest.raises(PluginError) as info:
            worker.match("hung", PATTERNS, REPEAT_HISTORY, 300 * 86400)
        assert info.value.code == "X005" and "no answer within 0.5 s" in info.value.message
        assert worker.restarts == 2 and worker.pid is None
    finally:
        worker.close()


def test_the_worker_interpreter_can_be_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """For hosts that embed Python, where sys.executable is not an interpreter."""
    from charter_plugins.events import WORKER, DurableWorker

    named = tmp_path / "python"
    named.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n', encoding="utf-8")
    named.chmod(0o755)
    monkeypatch.setenv("CHARTER_WORKER_PYTHON", str(named))
    worker = DurableWorker()
    try:
        assert worker.command == [str(named), str(WORKER)]
        assert [a.pattern for a in worker.match("named", PATTERNS, REPEAT_HISTORY, 300 * 86400)] == [
            "repeat",
            "silent",
            "silent",
        ]
    finally:
        worker.close()


AWKWARD_SCORES = [1e-05, 2e-05, 3e-05, 1e16, 1e308, -1e308, 10**30, -(10**30), 2**63, -0.0, 5e-324, 2, 2.0000001]


@pytest.mark.parametrize("at_most", [2, 2e-05, 1e16, -1e300, 10**30])
def test_scores_and_kinds_durable_rules_cannot_read_are_matched_like_the_reference(at_most: float) -> None:
    """durable-rules' JSON reader refused numbers with an exponent (Python writes 1e-05, 1e+16)
    and overflowed past 64 bits: a score of 0.00001 failed the decision, a threshold of
    0.00002 failed every decision. Scores now reach it as at-most-or-not, kinds as tokens."""
    patterns = [
        EventPattern("low", "survey", score_at_most=at_most),
        EventPattern("odd", 'kind with "quotes", 中文 and\nnewline', then="__clock__", within=86400),
    ]
    registry = build_registry()
    durable = registry.event_backends["durable_rules"].prepare(patterns, f"awkward{at_most!r}")
    reference = registry.event_backends["python"].prepare(patterns, "awkward")
    history = [{"kind": "survey", "ts": i, "eid": f"s{i}", "score": s} for i, s in enumerate(AWKWARD_SCORES)]
    history += [
        {"kind": "survey", "ts": 100, "eid": "none"},  # no score: never low
        {"kind": 'kind with "quotes", 中文 and\nnewline', "ts": 200, "eid": "q"},
        {"kind": "__clock__", "ts": 300, "eid": "c"},  # an event kind like any other
        {"kind": "x" * 10_000, "ts": 400, "eid": "long"},
    ]
    got = durable(history, 10**6)
    assert got == reference(history, 10**6)
    assert {a.events for a in got if a.pattern == "low"} == {
        (f"s{i}",) for i, s in enumerate(AWKWARD_SCORES) if s <= at_most
    }
    assert [a.events for a in got if a.pattern == "odd"] == [("q", "c")]


def test_a_worker_is_replaced_after_many_policy_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each hot reload of a changed escalation policy compiles new rule sets in the worker:
    a fresh worker takes over before they pile up."""
    from charter_plugins import events

    monkeypatch.setattr(events, "MAX_VERSIONS", 3)
    worker = events.DurableWorker()
    try:
        pids = []
        for version in range(7):
            assert [a.pattern for a in worker.match(f"v{version}", PATTERNS, REPEAT_HISTORY, 300 * 86400)] == [
                "repeat",
                "silent",
                "silent",
            ]
            pids.append(worker.pid)
        assert len(set(pids)) == 3 and pids[0] == pids[2] != pids[3] == pids[5] != pids[6]
        assert worker.restarts == 0  # replaced, not failed
    finally:
        worker.close()
