"""A bound on the work of every expression (#19): nested comprehensions whose bound is over
the budget are refused at load, located at the comprehension, with the lengths assumed;
declared `max_length` brings a bound under it and is checked at the boundary; no list in a
decision's facts may have more than `MAX_ITEMS` items (F304), so the bound is real."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import POLICIES

from engine import Engine, FactErrors, PolicyErrors
from engine.core.expr import check, parse
from engine.core.expr.cost import BUDGET, MAX_ITEMS, estimate
from engine.core.expr.types import STRING, ListType, ObjectType

NOW = datetime(2025, 6, 30, tzinfo=UTC)

POLICY = """\
charter: 1
kind: tiering
id: t
facts:
  clv: {type: number, min: 0, required: true}
  tags: {type: list, items: string, default: []LIMIT}
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

NESTED = 'customer.tags.all(a, customer.tags.all(b, customer.tags.all(c, a + b + c != "x")))'


def engine_for(tmp_path: Path, when: str, limit: int | None = None) -> Engine:
    text = POLICY.replace("WHEN", json.dumps(when)).replace("LIMIT", f", max_length: {limit}" if limit else "")
    (tmp_path / "tiering.yaml").write_text(text, encoding="utf-8")
    return Engine(tmp_path)


def test_nested_comprehensions_over_undeclared_lists_are_refused_where_they_are(tmp_path: Path) -> None:
    with pytest.raises(PolicyErrors) as info:
        engine_for(tmp_path, NESTED)
    (err,) = info.value.errors
    assert err.code == "E160"
    assert (err.location.line, err.location.column) == (15, 16)  # the outer `all`, after `when: "`
    assert f"more than the {BUDGET:,} allowed" in err.message and "`customer.tags`" in err.message
    assert "max_length" in (err.hint or "")


def test_a_declared_max_length_brings_the_bound_under_the_budget_and_is_checked(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, NESTED, limit=30)
    decision = engine.evaluate("tiering", {"id": "c1", "clv": 1.0, "tags": ["p", "q"]}, now=NOW)
    assert decision.outputs["tier"] == "gold"
    with pytest.raises(FactErrors) as info:
        engine.evaluate("tiering", {"id": "c1", "clv": 1.0, "tags": ["p"] * 31}, now=NOW)
    assert [e.field for e in info.value.errors] == ["tags"]


def test_one_comprehension_over_any_list_is_within_the_budget(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, 'customer.tags.exists(t, t == "vip" || t.startsWith("gold"))')
    tags = [f"t{i}" for i in range(MAX_ITEMS - 1)] + ["vip"]
    assert engine.evaluate("tiering", {"id": "c1", "clv": 1.0, "tags": tags}, now=NOW).outputs["tier"] == "gold"


@pytest.mark.parametrize("domain", ["tiering", "access"])
def test_a_list_longer_than_the_boundary_allows_is_refused_by_name(domain: str) -> None:
    engine = Engine(POLICIES)
    if domain == "tiering":
        facts: dict[str, Any] = {"id": "C1", "product_categories": ["x"] * (MAX_ITEMS + 1)}
        field = "product_categories"
    else:
        facts = {"id": "A1", "subject": {"id": "u1", "roles": ["agent"] * (MAX_ITEMS + 1)}, "action": "read"}
        field = "subject.roles"
    with pytest.raises(FactErrors) as info:
        engine.evaluate(domain, facts, now=NOW)
    (err,) = info.value.errors
    assert err.code == "F304" and err.field == field and f"{MAX_ITEMS + 1} items" in err.message


def test_the_bound_grows_with_nesting_and_declared_lengths() -> None:
    env = {"customer": ObjectType("customer", {"tags": ListType(STRING), "name": STRING})}

    def bound(text: str, length: int | None) -> int:
        node = parse(text)
        check(node, env)
        return estimate(node, lambda name: length if name == "customer.tags" else 1).steps

    one, two = 'customer.tags.exists(a, a == "x")', "customer.tags.exists(a, customer.tags.exists(b, a == b))"
    assert bound(one, 10) < bound(one, 100) < bound(two, 100)
    assert bound(two, 100) >= 100 * 100  # the inner list walked once per item of the outer
    assert bound('customer.name + "x" == "y"', None) < 20  # no list: a handful of steps
    assert bound(one, None) <= BUDGET < bound(two, None)  # undeclared lists: MAX_ITEMS each
