"""The generated fast path decides exactly as the exact closures do, and holds nothing unsafe."""

from __future__ import annotations

import ast
from datetime import datetime
from typing import Any

import pytest
from conftest import MINIMAL, POLICIES
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Decision, Engine, FactErrors
from engine.core.codegen import _ALLOWED_ATTRS
from engine.core.pycode import verify


@pytest.fixture(scope="module")
def engine(customers: list[dict[str, Any]]) -> Engine:
    from conftest import NOW

    eng = Engine(POLICIES)
    eng.use_snapshot(eng.build_snapshot(customers, now=NOW))
    return eng


def both(engine: Engine, facts: Any, now: datetime) -> tuple[Any, Any]:
    """(fast, exact): the generated path, and the closure path that `explain` uses."""
    out = []
    for explain in (False, True):
        try:
            d = engine.evaluate("tiering", facts, now=now, explain=explain)
            out.append((d.outputs, d.fired_ids, d.scores, d.notes))
        except FactErrors as exc:
            out.append(("error", [e.field for e in exc.errors]))
    return out[0], out[1]


def test_fast_path_is_in_use(engine: Engine) -> None:
    decide = engine.program("tiering").decide
    assert decide is not None and "def decide(facts, NOW):" in decide.source  # type: ignore[attr-defined]


def test_every_example_customer_decides_alike(engine: Engine, customers: list[dict[str, Any]], now: datetime) -> None:
    for c in customers:
        fast, exact = both(engine, c, now)
        assert fast == exact, c["id"]


bad_values = st.sampled_from([None, "x", -1, 2.5, True, 10**400, float("nan"), [], "2025-01-01T00:00:00", 0])
fields = st.sampled_from(
    [
        "satisfaction",
        "default_risk",
        "fraud_flags",
        "complaints_90d",
        "loyalty_score",
        "last_purchase_at",
        "purchases_12m",
        "industry",
        "relationship_years",
        "profit_contribution",
    ]
)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.integers(0, 1999), st.dictionaries(fields, st.one_of(bad_values, st.just("DROP")), max_size=3))
def test_mutated_customers_decide_alike(
    engine: Engine, customers: list[dict[str, Any]], index: int, changes: dict[str, Any]
) -> None:
    from conftest import NOW

    facts = dict(customers[index])
    for key, value in changes.items():
        if value == "DROP":
            facts.pop(key, None)
        else:
            facts[key] = value
    fast, exact = both(engine, facts, NOW)
    assert fast == exact


def test_undefined_rows_are_noted_once(write_policy: Any, now: datetime) -> None:
    text = MINIMAL.replace("complaints: {type: integer, default: 0}", "complaints: {type: integer}")
    eng = Engine(write_policy(text))
    d = eng.evaluate("tiering", {"id": "x", "clv": 60000.0}, now=now)
    assert isinstance(d, Decision) and d.outputs["tier"] == "silver"
    assert d.notes == ("rule `gold` is undefined: `customer.complaints` is absent",)


@pytest.mark.parametrize(
    "source",
    [
        "import os\n",
        "def decide(facts, NOW):\n    return facts.__class__\n",
        "def decide(facts, NOW):\n    return open('x')\n",
        "def decide(facts, NOW):\n    return [x for x in facts]\n",
    ],
)
def test_whitelist_refuses_anything_else(source: str) -> None:
    with pytest.raises(AssertionError):
        verify(source, {"facts", "NOW", "decide"}, _ALLOWED_ATTRS)


def test_generated_source_only_uses_whitelisted_names(engine: Engine) -> None:
    source = engine.program("tiering").decide.source  # type: ignore[union-attr]
    tree = ast.parse(source)
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert calls <= {"get", "type", "as_float", "TS"} | {
        c for c in calls if c[:2] in ("SC", "SS", "RU", "RO", "AP", "X")
    }
