"""The run-time guard of bounded cost (#19): each evaluation of an expression spends from a
meter (a step per item a comprehension walks, the length of each text or list it builds),
never a clock; over ``Meter.budget`` or building past ``Meter.max_size`` fails the decision
with ``BudgetExceeded`` (V008), on the generated code, the closures and the traced closures
alike, and the same facts fail the same way again. Tests lower the budget so that small
facts reach it; the static model (E160) still checks the real one when the policy loads."""

from __future__ import annotations

import json
import shutil
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import POLICIES

from engine import Engine
from engine.core.expr import BudgetExceeded, check, compile_expr, compile_traced, parse
from engine.core.expr.cost import BUDGET, MAX_SIZE, Meter
from engine.core.expr.types import STRING, ListType, ObjectType
from engine.errors import EvaluationError

NOW = datetime(2025, 6, 30, tzinfo=UTC)

POLICY = """\
charter: 1
kind: tiering
id: t
facts:
  clv: {type: number, min: 0, required: true}
  name: {type: string, default: ""}
  tags: {type: list, items: string, default: []}
outputs:
  tier: {type: string, values: [gold, silver]}
tables:
  - id: tiering
    hit: first
    output: tier
    rules:
      - id: gold
        when: WHEN
        then: gold
      - id: silver
        when: "true"
        then: silver
"""

VIP = 'customer.tags.exists(t, t == "vip")'
ENV = {"customer": ObjectType("customer", {"tags": ListType(STRING), "name": STRING})}


def engine_for(tmp_path: Path, when: str) -> Engine:
    (tmp_path / "tiering.yaml").write_text(POLICY.replace("WHEN", json.dumps(when)), encoding="utf-8")
    return Engine(tmp_path)


def facts(tags: int, name: str = "") -> dict[str, Any]:
    return {"id": "c1", "clv": 1.0, "name": name, "tags": [f"t{i}" for i in range(tags)] + ["vip"]}


def failure(engine: Engine, customer: dict[str, Any], explain: bool) -> BudgetExceeded:
    with pytest.raises(BudgetExceeded) as info:
        engine.evaluate("tiering", customer, now=NOW, explain=explain)
    return info.value


@pytest.mark.parametrize("explain", [False, True], ids=["generated", "traced"])
def test_a_comprehension_over_the_budget_fails_its_decision_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, explain: bool
) -> None:
    engine = engine_for(tmp_path, VIP)
    source = engine.program("tiering").decide.source  # type: ignore[union-attr]
    assert "except COST:" in source  # the generated code lets the guard through, untried again
    monkeypatch.setattr(Meter, "budget", 100)
    assert engine.evaluate("tiering", facts(98), now=NOW, explain=explain).outputs["tier"] == "gold"  # 99 + 1
    err = failure(engine, facts(99), explain)
    assert isinstance(err, EvaluationError) and err.code == "V008"
    assert err.message == f"`{VIP}` goes over the 100 steps one expression may take for one decision"
    assert err.expression == VIP and "max_length" in (err.hint or "")
    again = failure(engine, facts(99), not explain)  # the other path, and a replay: the same failure
    assert (again.code, again.message) == (err.code, err.message)


def test_the_guard_stops_one_decision_of_a_batch_and_not_the_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = engine_for(tmp_path, VIP)
    monkeypatch.setattr(Meter, "budget", 100)
    small, large = facts(3), facts(500)
    decided: list[Any] = []
    with pytest.raises(BudgetExceeded) as info:  # an EvaluationError stops the batch (FactErrors are yielded)
        for item in engine.evaluate_batch("tiering", [small, large, small], now=NOW, errors="yield"):
            decided.append(item)
    assert info.value.code == "V008"
    assert [d.outputs["tier"] for d in decided] == ["gold"]  # what was decided before it stands
    after = list(engine.evaluate_batch("tiering", [small, small], now=NOW, errors="yield"))
    assert [d.outputs["tier"] for d in after] == ["gold", "gold"]  # the next batch decides as before


def meter_of(text: str, tags: int, budget: int, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run ``text`` on ``tags`` tags with the budget at ``budget`` on both closures: their outcomes."""
    node = parse(text)
    check(node, ENV)
    fast, traced = compile_expr(node), compile_traced(node)
    activation = {"customer": {"tags": [f"t{i}" for i in range(tags)], "name": "n"}}
    monkeypatch.setattr(Meter, "budget", budget)
    outcomes = []
    for run in (lambda: fast(activation), lambda: traced(activation, [])):
        try:
            outcomes.append(repr(run()))
        except BudgetExceeded as exc:
            outcomes.append(exc.code)
    return outcomes


@pytest.mark.parametrize(
    ("text", "spent"),
    [
        ('customer.tags.exists(t, t == "t3")', 11),  # 10 items and the comprehension
        ("customer.tags.map(t, t).size() > 0", 21),  # map also builds a list of 10
        ('customer.tags.filter(t, t != "t0").size() > 0', 20),  # filter builds what it keeps: 9
        ("customer.tags.all(a, customer.tags.all(b, true))", 11 + 10 * 11),  # the inner one runs 10 times
        ("size(customer.tags + customer.tags) == 20", 20),  # a list built by `+`: its length
        ('size(customer.name + "abc") == 4', 4),  # a text built by `+`: its length
    ],
)
def test_the_meter_spends_what_the_documentation_says(text: str, spent: int, monkeypatch: pytest.MonkeyPatch) -> None:
    assert meter_of(text, 10, spent, monkeypatch) == ["True", "True"]
    assert meter_of(text, 10, spent - 1, monkeypatch) == ["V008", "V008"]


@pytest.mark.parametrize(
    "text",
    [
        f"{VIP} || true",  # `||` absorbs an error when the other side decides: not this one
        f"{VIP} && false",
        f'customer.tags.exists(t, t == "vip" && {VIP})',  # nor does `exists`
        f'customer.tags.all(t, t != "vip" || {VIP})',
        f"!({VIP}) ? true : false",
    ],
)
def test_no_comprehension_or_logic_absorbs_the_guard(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert meter_of(text, 40, 30, monkeypatch) == ["V008", "V008"]
    assert meter_of(text, 40, BUDGET, monkeypatch)[0] in ("True", "False")


def test_plain_comparisons_spend_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    text = 'size(customer.tags) > 3 && customer.name == "n" && customer.tags[0] in ["t0", "t1"]'
    assert meter_of(text, 10, 0, monkeypatch) == ["True", "True"]


def doubled(times: int) -> str:
    """``[customer.name].map(a0, a0 + a0).map(a1, a1 + a1)...``: the text doubles each time."""
    text = "[customer.name]"
    for i in range(times):
        text += f".map(a{i}, a{i} + a{i})"
    return f"size({text}[0]) > 0"


def test_doubling_a_text_is_stopped_before_it_is_built(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, doubled(40))  # within the static budget: text lengths are not known at load
    name = "x" * 1000  # unguarded, 2**40 KB
    tracemalloc.start()
    try:
        err = failure(engine, facts(0, name), explain=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.code == "V008" and f"more than the {MAX_SIZE:,} allowed" in err.message
    assert "would build a text of 128,000 characters" in err.message  # 1000 doubled 7 times
    assert peak < 1_000_000  # bytes: the 64,000-character text and change, never the 128,000 one


def test_a_long_chain_of_concatenations_spends_the_budget_on_what_it_copies(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, " + ".join(["customer.name"] * 90) + ' != ""')  # 90: nested under 100 deep
    name = "y" * 5000  # unguarded: a 450,000-character text, 20 MB copied on the way
    tracemalloc.start()
    try:
        err = failure(engine, facts(0, name), explain=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 10,000 + 15,000 + ... + 95,000 characters copied is 945,000 steps: the next 100,000 go over
    assert err.message.endswith(f"goes over the {BUDGET:,} steps one expression may take for one decision")
    assert err.message.count("customer.name") <= 10  # the chain's text is cut, not echoed whole
    assert peak < 1_000_000


def test_within_the_budget_nothing_changes(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, doubled(3))
    for explain in (False, True):
        assert engine.evaluate("tiering", facts(0, "ab"), now=NOW, explain=explain).outputs["tier"] == "gold"


def test_an_access_condition_over_the_budget_fails_the_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for path in POLICIES.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    access = tmp_path / "access.yaml"
    text = access.read_text(encoding="utf-8")
    assert 'when: resource.tier == "high"' in text
    when = 'subject.roles.exists(r, r == "auditor")'
    access.write_text(text.replace('when: resource.tier == "high"', f"when: {json.dumps(when)}"), encoding="utf-8")
    engine = Engine(tmp_path)
    monkeypatch.setattr(Meter, "budget", 100)
    req = {
        "subject": {"id": "u1", "roles": ["key_account_manager"] * 20, "department": "east"},
        "action": "read",
        "purpose": "sales",
        "resource": {"customer": "C1", "record": {"name": "Wang Fang"}},
    }
    assert engine.evaluate("access", req, now=NOW).outputs["effect"] == "deny"  # not an auditor: not granted
    req["subject"]["roles"] = ["key_account_manager"] * 200
    for explain in (False, True):
        with pytest.raises(BudgetExceeded) as info:
            engine.evaluate("access", req, now=NOW, explain=explain)
        assert info.value.code == "V008" and info.value.expression == when


def test_a_score_over_the_budget_is_treated_alike_on_every_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    score = 'scores:\n  n:\n    expr: "double(size(customer.tags.filter(x, x != \\"\\")))"\noutputs:'
    text = POLICY.replace("outputs:", score).replace("WHEN", json.dumps("scores.n > 1.0"))
    (tmp_path / "tiering.yaml").write_text(text, encoding="utf-8")
    engine = Engine(tmp_path)
    monkeypatch.setattr(Meter, "budget", 50)

    def outcome(explain: bool) -> tuple[Any, ...]:
        try:
            d = engine.evaluate("tiering", facts(100), now=NOW, explain=explain)
        except BudgetExceeded as exc:
            return (exc.code, exc.message)
        return (d.outputs, d.scores, d.notes)

    fast, traced = outcome(False), outcome(True)
    assert fast == traced and "goes over the 50 steps" in repr(fast)


def test_one_condition_of_two_comprehensions_spends_one_count_on_every_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The generated code calls such a condition's closure whole (one count for all of it), as
    the exact and traced paths do: 61 + 61 steps are over a budget of 100 on every path."""
    both = 'customer.tags.exists(t, t == "vip") || customer.tags.exists(t, t == "vvip")'
    engine = engine_for(tmp_path, both)
    monkeypatch.setattr(Meter, "budget", 100)
    customer = {"id": "c1", "clv": 1.0, "tags": [f"t{i}" for i in range(60)]}
    for explain in (False, True):
        with pytest.raises(BudgetExceeded) as info:
            engine.evaluate("tiering", customer, now=NOW, explain=explain)
        assert info.value.code == "V008", explain
    monkeypatch.setattr(Meter, "budget", 200)
    decided = {explain: engine.evaluate("tiering", customer, now=NOW, explain=explain).outputs for explain in (0, 1)}
    assert decided[0] == decided[1] == {"tier": "silver"}
