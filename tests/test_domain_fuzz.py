"""Any JSON value anywhere in a request gives a decision or a fact error naming a field, never a crash."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import EXAMPLES, POLICIES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Decision, Engine
from engine.errors import FactErrors

NOW = datetime(2025, 6, 30, tzinfo=UTC)
REQUESTS = EXAMPLES.parent / "requests"

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["2025-06-30T00:00:00Z", "read", "agent", "sensitive", "complaint", "6222020200112345679"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def engine() -> Engine:
    eng = Engine(POLICIES)
    with EXAMPLES.open(encoding="utf-8") as f:
        eng.use_snapshot(eng.build_snapshot((json.loads(line) for line in f), now=NOW))
    return eng


def first(name: str) -> dict[str, Any]:
    path = EXAMPLES if name == "classification" else REQUESTS / f"{name}.jsonl"
    with path.open(encoding="utf-8") as f:
        return json.loads(f.readline())  # type: ignore[no-any-return]


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.extend(paths(v, (*prefix, k)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.extend(paths(v, (*prefix, i)))
    return out


@pytest.mark.parametrize("domain", ["classification", "access", "retention", "escalation"])
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_value_anywhere(engine: Engine, domain: str, data: st.DataObject) -> None:
    request = first(domain)
    where = data.draw(st.sampled_from(paths(request)[1:]))
    value = data.draw(json_values)
    doc = copy.deepcopy(request)
    target = doc
    for key in where[:-1]:
        target = target[key]
    if data.draw(st.booleans()) and isinstance(target, dict):
        del target[where[-1]]
    else:
        target[where[-1]] = value
    try:
        decision = engine.evaluate(domain, doc, now=NOW)
    except FactErrors as exc:
        assert exc.errors and all(e.message for e in exc.errors)
        return
    assert isinstance(decision, Decision)
    json.dumps(decision.to_dict())  # every decision can be written to a log


@pytest.mark.parametrize("domain", ["access", "retention", "escalation"])
@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fast_request_check_agrees_with_cerberus(engine: Engine, domain: str, data: st.DataObject) -> None:
    """The compiled shape check accepts exactly the requests cerberus accepts."""
    shape = engine.program(domain).runner.shape  # type: ignore[union-attr]
    doc = copy.deepcopy(first(domain))
    for _ in range(data.draw(st.integers(0, 2))):
        where = data.draw(st.sampled_from(paths(doc)[1:]))
        target = doc
        for key in where[:-1]:
            target = target[key]
        if data.draw(st.booleans()) and isinstance(target, dict):
            del target[where[-1]]
        else:
            target[where[-1]] = data.draw(json_values)
    validator = shape.validator()
    assert shape.fast(doc) == bool(validator.validate(dict(doc))), validator.errors
