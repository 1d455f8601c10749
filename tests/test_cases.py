"""The case corpus: ``tests/cases/<topic>/*.yaml``, each a policy, facts and the expected result.

A case file holds:

    note: what the case shows
    policy: shipped            # or the policy text itself
    now: 2025-06-30T00:00:00Z
    population: examples       # optional: rank against a snapshot of the example customers
    facts: {...}               # one customer
    expect: {outputs: {...}, fired: [...]}      # a subset of the decision
    expect_error: {code: P123, line: 16}        # or the error the policy or facts give
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import EXAMPLES, POLICIES

from engine import CharterError, Engine, FactErrors, PolicyErrors

CASES = sorted((Path(__file__).parent / "cases").glob("*/*.yaml"))


def _population() -> list[dict[str, Any]]:
    with EXAMPLES.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_case(path: Path, tmp_path: Path) -> None:
    case = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert case.get("note"), "every case says what it shows"
    if case["policy"] == "shipped":
        policies = POLICIES
    else:
        policies = tmp_path
        (tmp_path / "tiering.yaml").write_text(case["policy"], encoding="utf-8")
    now = datetime.fromisoformat(str(case["now"]))
    expected_error = case.get("expect_error")
    try:
        engine = Engine(policies)
        if case.get("population") == "examples":
            engine.use_snapshot(engine.build_snapshot(_population(), now=now))
        decision = engine.evaluate(case.get("domain", "tiering"), case["facts"], now=now, explain=True)
    except (PolicyErrors, FactErrors, CharterError) as exc:
        if expected_error is None:
            raise
        errors = list(exc.errors) if isinstance(exc, (PolicyErrors, FactErrors)) else [exc]
        first = errors[0]
        assert first.code.startswith(expected_error["code"]), str(exc)
        if "line" in expected_error:
            assert first.location.line == expected_error["line"]  # type: ignore[attr-defined]
        if "field" in expected_error:
            assert first.field == expected_error["field"]  # type: ignore[attr-defined]
        return
    assert expected_error is None, f"expected error {expected_error}, got {decision.outputs}"
    expect = case["expect"]
    for name, value in expect.get("outputs", {}).items():
        assert decision.outputs[name] == value, (name, decision.outputs)
    if "fired" in expect:
        assert list(decision.fired_ids) == expect["fired"]
    for note in expect.get("notes", []):
        assert any(note in n for n in decision.notes), decision.notes
