"""Customer tiering end to end on the shipped policy and the example customers (domain.md §1)."""

from __future__ import annotations

import collections
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import POLICIES
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Decision, Engine, EvaluationError, FactErrors, Snapshot
from engine.population import cut_points


@pytest.fixture(scope="module")
def engine(customers: list[dict[str, Any]]) -> Engine:
    from conftest import NOW

    eng = Engine(POLICIES)
    eng.use_snapshot(eng.build_snapshot(customers, now=NOW))
    return eng


@pytest.fixture(scope="module")
def decisions(engine: Engine, customers: list[dict[str, Any]]) -> list[Decision]:
    from conftest import NOW

    out = [d for d in engine.evaluate_batch("tiering", customers, now=NOW)]
    assert all(isinstance(d, Decision) for d in out)
    return out  # type: ignore[return-value]


def test_value_tiers_split_the_population_20_30_40_10(decisions: list[Decision]) -> None:
    counts = collections.Counter(d.outputs["value_tier"] for d in decisions)
    n = len(decisions)
    # nearest-rank cuts: exactly the documented shares unless customers tie on a cut point
    assert counts["high"] == pytest.approx(0.2 * n, abs=2)
    assert counts["medium"] == pytest.approx(0.3 * n, abs=2)
    assert counts["low"] == pytest.approx(0.4 * n, abs=2)
    assert counts["minimal"] == pytest.approx(0.1 * n, abs=2)


def test_higher_value_never_gets_a_lower_tier(decisions: list[Decision]) -> None:
    rank = {"minimal": 0, "low": 1, "medium": 2, "high": 3}
    ordered = sorted(decisions, key=lambda d: d.scores["value"])
    tiers = [rank[d.outputs["value_tier"]] for d in ordered]
    assert tiers == sorted(tiers)


@pytest.mark.parametrize(
    ("tier", "service", "cadence", "loyalty"),
    [
        ("high", "dedicated", 7, "vip_benefits"),
        ("medium", "regular", 14, "member_points"),
        ("low", "basic", 30, "win_back"),
        ("minimal", "self_service", 90, "none"),
    ],
)
def test_treatment_follows_the_tier(
    decisions: list[Decision], tier: str, service: str, cadence: int, loyalty: str
) -> None:
    chosen = [d for d in decisions if d.outputs["value_tier"] == tier]
    assert chosen
    for d in chosen:
        assert (d.outputs["service_level"], d.outputs["contact_cadence_days"], d.outputs["loyalty_programme"]) == (
            service,
            cadence,
            loyalty,
        )
        assert f"treat-{tier}" in d.fired_ids


def test_decision_carries_what_replay_needs(decisions: list[Decision], engine: Engine) -> None:
    d = decisions[0]
    assert d.bundle_version == engine.bundle_version and d.bundle_version.startswith("b-")
    assert d.snapshot_id == engine.snapshot.id if engine.snapshot else False
    assert d.policy_id == "customer-tiering"
    assert d.engine_version and d.semantics_version
    for rule in d.fired:
        assert rule.file.endswith("tiering.yaml") and rule.line > 0 and rule.message and rule.clause
    lines = (POLICIES / "tiering.yaml").read_text().splitlines()
    for rule in d.fired:
        assert f"id: {rule.id}" in lines[rule.line - 1]


def test_same_inputs_same_decision(engine: Engine, customers: list[dict[str, Any]], now: datetime) -> None:
    a = [engine.evaluate("tiering", c, now=now).to_dict() for c in customers[:200]]
    fresh = Engine(POLICIES, snapshot=engine.snapshot)  # loaded and compiled again, from the same files
    b = [fresh.evaluate("tiering", c, now=now).to_dict() for c in customers[:200]]
    assert a == b


def test_snapshot_round_trips_and_is_content_addressed(
    engine: Engine, tmp_path: Path, customers: list[dict[str, Any]], now: datetime
) -> None:
    from engine import population

    snap = engine.snapshot
    assert snap is not None
    path = population.save(snap, tmp_path)
    again = population.load(snap.id, tmp_path)
    assert again == snap and again.id == snap.id
    assert engine.build_snapshot(customers, now=now).id == snap.id
    assert engine.build_snapshot(customers[:500], now=now).id != snap.id
    path.write_text(path.read_text().replace("customer-tiering", "other"))
    with pytest.raises(Exception, match="does not match its content"):
        population.load(path)


def test_cut_points_nearest_rank() -> None:
    values = [float(v) for v in range(1, 11)]  # 1..10
    assert cut_points(values, [10, 50, 80]) == {10: 2.0, 50: 6.0, 80: 9.0}
    assert cut_points([5.0], [80]) == {80: 5.0}


def test_tiering_without_snapshot_is_a_clear_error(customers: list[dict[str, Any]], now: datetime) -> None:
    eng = Engine(POLICIES)
    with pytest.raises(EvaluationError, match="needs a population snapshot"):
        eng.evaluate("tiering", customers[0], now=now)


def test_snapshot_of_another_score_definition_is_refused(
    engine: Engine, customers: list[dict[str, Any]], now: datetime, write_policy: Any, shipped_text: str
) -> None:
    changed = shipped_text.replace("    scorer: clv\n", "    scorer: clv\n    args: {discount_rate: 0.1}\n")
    eng = Engine(write_policy(changed), snapshot=engine.snapshot)
    with pytest.raises(Exception, match="another definition of score `value`"):
        eng.evaluate("tiering", customers[0], now=now)


def base_customer(now: datetime, **over: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "id": "T1",
        "industry": "retail",
        "annual_sales": 100000.0,
        "profit_contribution": 20000.0,
        "relationship_years": 5.0,
        "loyalty_score": 0.5,
        "purchases_12m": 12,
        "first_purchase_at": (now - timedelta(days=5 * 365)).isoformat(),
        "last_purchase_at": (now - timedelta(days=10)).isoformat(),
    }
    c.update(over)
    return c


@pytest.mark.parametrize(
    ("over", "stage"),
    [
        ({"first_purchase_at": "2025-03-01T00:00:00+00:00"}, "new"),
        ({"purchases_12m": 0}, "decline"),
        ({"last_purchase_at": "2024-11-01T00:00:00+00:00"}, "decline"),
        ({"relationship_years": 2.0}, "growth"),
        ({}, "mature"),
    ],
)
def test_lifecycle_stages(engine: Engine, now: datetime, over: dict[str, Any], stage: str) -> None:
    d = engine.evaluate("tiering", base_customer(now, **over), now=now)
    assert d.outputs["lifecycle_stage"] == stage


@pytest.mark.parametrize(
    ("over", "level", "flags", "monitored"),
    [
        ({}, "low", [], False),
        ({"fraud_flags": 1}, "high", ["fraud"], True),
        ({"default_risk": 0.7}, "high", ["default"], True),
        ({"default_risk": 0.4}, "medium", ["default"], False),
        ({"compliance_violations": 2, "default_risk": 0.4}, "high", ["default", "compliance"], True),
        ({"complaints_90d": 3, "satisfaction": 4.0}, "low", [], False),
        (
            {"complaints_90d": 3, "satisfaction": 2.0, "last_purchase_at": "2025-01-01T00:00:00Z"},
            "medium",
            ["churn"],
            False,
        ),
    ],
)
def test_risk_priority_and_flags(
    engine: Engine, now: datetime, over: dict[str, Any], level: str, flags: list[str], monitored: bool
) -> None:
    d = engine.evaluate("tiering", base_customer(now, **over), now=now)
    assert d.outputs["risk_level"] == level
    assert d.outputs["risk_flags"] == flags
    assert d.outputs["monitored"] is monitored


def test_absent_optional_fact_is_undefined_not_an_error(engine: Engine, now: datetime) -> None:
    customer = base_customer(now, complaints_90d=3, last_purchase_at="2025-01-01T00:00:00Z")
    assert "satisfaction" not in customer
    d = engine.evaluate("tiering", customer, now=now)
    assert d.scores["churn"] == pytest.approx(0.7)  # has() guards the absent satisfaction
    assert d.outputs["risk_level"] == "medium"


@pytest.mark.parametrize(
    ("over", "field", "words"),
    [
        ({"annual_sales": -1}, "annual_sales", "below the minimum 0"),
        ({"annual_sales": "lots"}, "annual_sales", "not a number"),
        ({"industry": "retial"}, "industry", "not allowed"),
        ({"purchases_12m": 2.5}, "purchases_12m", "not a integer"),
        ({"last_purchase_at": "yesterday"}, "last_purchase_at", "not a timestamp"),
        ({"fraud_flags": True}, "fraud_flags", "not a integer"),
        ({"loyalty_score": None}, "loyalty_score", "null"),
    ],
)
def test_bad_facts_name_the_field_value_and_rule(
    engine: Engine, now: datetime, over: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(FactErrors) as info:
        engine.evaluate("tiering", base_customer(now, **over), now=now)
    err = info.value.errors[0]
    assert err.field == field
    assert words in err.message
    assert "tiering.yaml:" in err.message  # the declaration it broke
    if field == "industry":
        assert err.hint == "did you mean `retail`?"


def test_missing_required_fact(engine: Engine, now: datetime) -> None:
    c = base_customer(now)
    del c["annual_sales"]
    with pytest.raises(FactErrors) as info:
        engine.evaluate("tiering", c, now=now)
    assert [e.field for e in info.value.errors] == ["annual_sales"]
    assert info.value.errors[0].rule == "required: True"


def test_explain_trace_shows_compared_values(engine: Engine, now: datetime) -> None:
    d = engine.evaluate("tiering", base_customer(now, fraud_flags=2), now=now, explain=True)
    assert d.trace is not None
    fraud = next(t for t in d.trace if t.rule == "risk-fraud")
    assert fraud.matched is True
    assert any(2 in vals for _, vals, _ in fraud.tests)
    quiet = engine.evaluate("tiering", base_customer(now, fraud_flags=2), now=now)
    assert quiet.trace is None and quiet.outputs == d.outputs


def test_naive_now_is_refused(engine: Engine) -> None:
    with pytest.raises(EvaluationError, match="time zone"):
        engine.evaluate("tiering", {}, now=datetime(2025, 1, 1))


def test_snapshot_from_dict_rejects_garbage() -> None:
    from engine.errors import SnapshotError

    with pytest.raises(SnapshotError):
        Snapshot.from_dict({"scores": 3})


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    values=st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=1, max_size=3_000),
    chunk=st.integers(1, 700),
)
def test_spilled_cut_points_are_exact(values: list[float], chunk: int) -> None:
    from engine.population import ScoreValues

    kept = ScoreValues(chunk)
    for v in values:
        kept.append(v)
    percentiles = [float(p) for p in range(0, 100, 7)] + [99.5]
    try:
        assert kept.cut_points(percentiles) == cut_points(values, percentiles)
        assert len(kept) == len(values) and (len(kept.runs) > 0) == (len(values) >= chunk)
    finally:
        kept.close()


def test_a_snapshot_is_the_same_whether_scores_spill_or_not(
    engine: Engine, customers: list[dict[str, Any]], now: datetime
) -> None:
    whole = engine.build_snapshot(customers, now=now)
    engine.snapshot_chunk = 97  # 2,000 customers: 20 sorted runs on disk
    try:
        assert engine.build_snapshot(customers, now=now).id == whole.id
    finally:
        engine.snapshot_chunk = 1_000_000
