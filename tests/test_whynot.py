"""The counterfactual beside `explain` (engine.audit.whynot, Domain.why_not): each answer is
checked by making the change it names and deciding again — the outcome it promises follows."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, POLICIES

from engine import Engine
from engine.audit.whynot import why_not
from engine.cli import main

NOW = datetime(2025, 6, 30, tzinfo=UTC)
REQUESTS = EXAMPLES.parent / "requests" / "access.jsonl"


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def engine() -> Engine:
    e = Engine(POLICIES)
    e.use_snapshot(e.build_snapshot(_read(EXAMPLES), now=NOW))
    return e


def _lines(engine: Engine, domain: str, facts: dict[str, Any]) -> list[str]:
    decision = engine.evaluate(domain, facts, now=NOW, explain=True)
    return why_not(engine.program(domain, NOW), decision, facts, engine.registry.domains[domain])


def test_a_band_names_the_cut_point_of_the_next_band_and_the_shortfall(engine: Engine) -> None:
    customers = _read(EXAMPLES)
    medium = next(c for c in customers if engine.evaluate("tiering", c, now=NOW).outputs["value_tier"] == "medium")
    decision = engine.evaluate("tiering", medium, now=NOW, explain=True)
    lines = _lines(engine, "tiering", medium)
    up = next(line for line in lines if "would be `high`" in line)
    snapshot = engine.snapshot
    assert snapshot is not None
    program = engine.program("tiering", NOW)
    cut = snapshot.cut("value", 80.0, program.compiled.score_digests["value"])
    score = decision.scores["value"]
    assert f"at least {cut:,.2f}: it is {score:,.2f}, {cut - score:,.2f} short" in up
    down = next(line for line in lines if "would be `low`" in line)
    assert f"below {snapshot.cut('value', 50.0, program.compiled.score_digests['value']):,.2f}" in down


def test_an_earlier_rule_named_decides_once_its_failed_test_holds(engine: Engine) -> None:
    customer = next(
        c
        for c in _read(EXAMPLES)
        if engine.evaluate("tiering", c, now=NOW).outputs["lifecycle_stage"] == "mature"
        and c["relationship_years"] >= 3
    )
    line = next(x for x in _lines(engine, "tiering", customer) if "rule `lifecycle-growth`" in x)
    assert "`customer.relationship_years < 3.0` held" in line and '`lifecycle_stage` = "growth"' in line
    changed = {**customer, "relationship_years": 1.0}  # the change the line names
    assert engine.evaluate("tiering", changed, now=NOW).outputs["lifecycle_stage"] == "growth"


def test_a_field_no_rule_allows_names_the_grant_and_the_role_that_would(engine: Engine) -> None:
    request = next(
        r
        for r in _read(REQUESTS)
        if r["action"] == "read"
        and r["purpose"] == "service"
        and "agent" not in r["subject"]["roles"]
        and any(
            f["effect"] == "deny" and f["rule"] is None
            for f in engine.evaluate("access", r, now=NOW).outputs["fields"].values()
        )
    )
    lines = _lines(engine, "access", request)
    line = next(x for x in lines if "`service-basic` (rule) would allow it with role `agent`" in x)
    fields = re.findall(r"`([^`]+)`", line.split(" (", 1)[0])
    as_agent = {**request, "subject": {**request["subject"], "roles": ["agent"]}}
    after = engine.evaluate("access", as_agent, now=NOW).outputs["fields"]
    assert fields and all(after[f]["effect"] == "allow" and after[f]["rule"] == "service-basic" for f in fields)


def test_a_field_a_deny_rule_denies_says_only_a_waiver_would_allow_it(engine: Engine) -> None:
    request = next(
        r
        for r in _read(REQUESTS)
        if any(
            f["rule"] == "no-sensitive-export" for f in engine.evaluate("access", r, now=NOW).outputs["fields"].values()
        )
        and engine.evaluate("access", r, now=NOW).outputs["fields"]
    )
    lines = _lines(engine, "access", request)
    assert any("denied by `no-sensitive-export`, and a deny wins over every allow" in x for x in lines)


def test_a_field_a_deny_rule_denies_names_an_allowed_request_outside_the_deny(engine: Engine) -> None:
    """A compliance officer exporting for legal proceedings: the deny covers export, so reading
    the field is what an allow rule grants — and deciding that request allows it."""
    request = {
        "subject": {"id": "u001", "roles": ["compliance_officer"], "department": "compliance"},
        "action": "export",
        "purpose": "legal",
        "resource": {"customer": "C000001", "record": {"bank_account": "6222020200012345678"}},
    }
    (line,) = [x for x in _lines(engine, "access", request) if "`bank_account`" in x]
    assert "denied by `no-sensitive-export`" in line
    m = re.search(r"`([\w-]+)` \(rule\) would allow it with action `read`(?:[;]|$)", line)
    assert m, line
    after = engine.evaluate("access", {**request, "action": "read"}, now=NOW).outputs["fields"]["bank_account"]
    assert after["effect"] != "deny" and after["rule"] == m.group(1)


def test_explain_prints_what_would_change_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "explain",
            "--domain",
            "tiering",
            "--facts",
            str(EXAMPLES),
            "--now",
            "2025-06-30T00:00:00Z",
            "--limit",
            "1",
            "--store",
            f"sqlite:///{tmp_path / 'log.db'}",
            "--policies",
            str(POLICIES),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    section = out.split("what would change it:\n", 1)[1]
    assert re.search(r"`value_tier` would be `\w+` \(band `value-\w+`\) with a `value` score", section)
