"""Escalation (#18): handling ends with feedback to the customer and a satisfaction check
(``closing:``, once every clock has stopped), and the first contact stays named at every
level (``first_contact``, ``owners``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import EXAMPLES, NOW, POLICIES

from engine import Engine

CUSTOMER = {"id": "C9", "industry": "retail", "annual_sales": 1000.0, "profit_contribution": 270.0,
            "relationship_years": 2.0, "loyalty_score": 0.5, "purchases_12m": 3,
            "first_purchase_at": "2023-01-01T00:00:00Z", "last_purchase_at": "2025-06-01T00:00:00Z"}  # fmt: skip
HANDLED = {"id": "T1", "category": "complaint", "severity": "major", "opened_at": "2025-06-28T12:00:00Z",
           "first_response_at": "2025-06-28T15:00:00Z", "handled_at": "2025-06-29T10:00:00Z",
           "first_contact": "agent-7"}  # fmt: skip


def _engine(policies: Path) -> Engine:
    engine = Engine(policies)
    lines = EXAMPLES.read_text(encoding="utf-8").splitlines()
    engine.use_snapshot(engine.build_snapshot([json.loads(x) for x in lines], now=NOW))
    return engine


@pytest.fixture(scope="module")
def shipped() -> Engine:
    return _engine(POLICIES)


def test_a_handled_case_ends_with_the_closing_actions_and_says_why(shipped: Engine) -> None:
    d = shipped.evaluate("escalation", {"ticket": HANDLED, "customer": CUSTOMER}, now=NOW, explain=True)
    assert d.outputs["state"] == "succeeded"
    assert d.outputs["actions"] == ["customer_feedback", "satisfaction_check"]
    closing = next(r for r in d.fired if r.id == "closing")
    assert closing.step == "closing" and "satisfaction check" in closing.message
    assert d.trace is not None and any(t.rule == "closing" and t.matched for t in d.trace)


def test_an_open_case_has_no_closing_actions_and_keeps_its_first_contact(shipped: Engine) -> None:
    late = {**HANDLED, "opened_at": "2025-06-20T12:00:00Z", "first_response_at": "2025-06-20T13:00:00Z"}
    del late["handled_at"]
    d = shipped.evaluate("escalation", {"ticket": late, "customer": CUSTOMER}, now=NOW, explain=True)
    assert d.outputs["state"] == "breached" and "customer_feedback" not in d.outputs["actions"]
    assert "closing" not in d.fired_ids
    assert d.outputs["first_contact"] == "agent-7"
    assert d.outputs["owners"][0] == "agent-7" and d.outputs["owners"][-1] == d.outputs["owner"] != "agent-7"
    assert d.trace is not None and any(t.rule == "closing" and not t.matched for t in d.trace)


def test_without_a_closing_section_nothing_is_added(tmp_path: Path) -> None:
    d = tmp_path / "p"
    shutil.copytree(POLICIES, d, ignore=shutil.ignore_patterns("tests"))
    text = (d / "escalation.yaml").read_text(encoding="utf-8")
    start = text.index("closing:")
    end = text.index("event_backend:")
    (d / "escalation.yaml").write_text(text[:start] + text[end:], encoding="utf-8")
    decision = _engine(d).evaluate("escalation", {"ticket": HANDLED, "customer": CUSTOMER}, now=NOW)
    assert decision.outputs["actions"] == [] and "closing" not in decision.fired_ids


def test_a_cancelled_case_gets_no_closing_actions(shipped: Engine) -> None:
    # its first response was made (that clock succeeded), then it was cancelled
    cancelled = {**HANDLED, "cancelled_at": "2025-06-28T16:00:00Z"}
    del cancelled["handled_at"]
    d = shipped.evaluate("escalation", {"ticket": cancelled, "customer": CUSTOMER}, now=NOW)
    states = {c["state"] for c in d.outputs["clocks"].values()}
    assert states == {"succeeded", "cancelled"}, d.outputs["clocks"]
    assert "customer_feedback" not in d.outputs["actions"] and "closing" not in d.fired_ids


@pytest.mark.parametrize("impact", [["public"], {"a": 1}, 3, "pubic"])
def test_a_wrong_scope_of_impact_is_a_located_fact_error(shipped: Engine, impact: object) -> None:
    from engine.errors import FactErrors

    ticket = {**HANDLED, "impact": impact}
    with pytest.raises(FactErrors) as got:
        shipped.evaluate("escalation", {"ticket": ticket, "customer": CUSTOMER}, now=NOW)
    err = got.value.errors[0]
    assert err.field == "ticket.impact" and err.code in ("F202", "F205"), err
    if impact == "pubic":
        assert err.hint == "did you mean `public`?"
