"""`--explain` traces of access, retention and escalation: every decision on the shipped examples
is traced, the trace agrees with the decision it explains, and tracing never changes a decision."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import EXAMPLES, NOW, POLICIES

from engine import Engine
from engine.core.decision import Decision, TraceStep, scope_test

REQUESTS = EXAMPLES.parent / "requests"


@pytest.fixture(scope="module")
def engine(customers: list[dict[str, Any]]) -> Engine:
    eng = Engine(POLICIES)
    eng.use_snapshot(eng.build_snapshot(customers, now=NOW))
    return eng


def requests(domain: str) -> list[dict[str, Any]]:
    with (REQUESTS / f"{domain}.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f][:120]


def traced(engine: Engine, domain: str) -> list[tuple[Decision, tuple[TraceStep, ...]]]:
    out = []
    for r in requests(domain):
        plain = engine.evaluate(domain, r, now=NOW)
        explained = engine.evaluate(domain, r, now=NOW, explain=True)
        assert plain.trace is None and explained.trace, "traced only on request, and then never empty"
        assert (explained.outputs, explained.fired, explained.notes) == (plain.outputs, plain.fired, plain.notes)
        out.append((explained, explained.trace))
    return out


def result(step: TraceStep, text: str) -> Any:
    [hit] = [r for t, _, r in step.tests if t == text]
    return hit


def test_access_traces_each_field_with_the_grants_it_weighed(engine: Engine) -> None:
    for decision, trace in traced(engine, "access"):
        by_field = {s.step.removeprefix("field "): s for s in trace if s.step.startswith("field ")}
        assert set(by_field) == set(decision.outputs["fields"])
        for path, out in decision.outputs["fields"].items():
            step = by_field[path]
            assert step.rule == (out["rule"] or "default-deny")
            if out["class"] is not None:
                assert result(step, "effect") == out["effect"]
        conditions = {s.rule: s for s in trace if s.step == "condition"}
        for rule_id in {f["rule"] for f in decision.outputs["fields"].values()} - {None}:
            assert conditions[rule_id].matched is True, "the deciding grant's condition held"


def test_access_conditions_show_the_values_compared(engine: Engine) -> None:
    steps = [s for _, trace in traced(engine, "access") for s in trace if s.step == "condition"]
    compared = [t for s in steps for t in s.tests if t[1]]
    assert compared, "some shipped grant condition compares request values"
    waivers = [t for s in steps for t in s.tests if t[0].startswith("now < expires")]
    assert waivers and all(t[1] == (NOW,) for t in waivers)


def test_retention_traces_every_rule_and_what_decided(engine: Engine) -> None:
    for decision, trace in traced(engine, "retention"):
        rules = [s for s in trace if s.step == "retention"]
        assert [s.rule for s in rules] == [r.id for r in engine.program("retention").policy.extra.rules]
        decided = [s for s in trace if s.step == "decided"]
        if decision.outputs["status"] == "no_rule":
            assert not decided and not any(s.matched for s in rules)
            continue
        [step] = decided
        assert step.rule == decision.outputs["rule"] and result(step, "status") == decision.outputs["status"]
        assert next(s for s in rules if s.rule == decision.outputs["rule"]).matched is True


def test_escalation_traces_clocks_ladder_and_patterns(engine: Engine) -> None:
    for decision, trace in traced(engine, "escalation"):
        clocks = {s.rule: s for s in trace if s.step == "service-level" and s.matched}
        assert set(clocks) == set(decision.outputs["clocks"])
        for cid, entry in decision.outputs["clocks"].items():
            assert result(clocks[cid], "state") == entry["state"]
        ladder = [s.rule for s in trace if s.step == "ladder" and s.matched]
        level = decision.outputs["level"]
        assert ladder == ([f"ladder-{level}"] if level is not None else [])
        alerts = {a["pattern"] for a in decision.outputs["churn_alerts"]}
        assert {s.rule for s in trace if s.step == "churn" and s.matched} == alerts


@pytest.mark.parametrize(
    ("names", "value", "expected"),
    [
        (("a", "b"), "b", ("noun in [a, b]", ("b",), True)),
        (("a",), "c", ("noun in [a]", ("c",), False)),
        (("*",), "c", ("any noun", ("c",), True)),
        (("a",), {"c", "a"}, ("some noun in [a]", (["a", "c"],), True)),
        (("*",), {"c", "a"}, ("any noun", (["a", "c"],), True)),
    ],
)
def test_scope_tests(names: tuple[str, ...], value: Any, expected: Any) -> None:
    assert scope_test("noun", names, value) == expected
