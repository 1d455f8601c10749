"""Effective dates and audit mode: the policy as it stood at the caller's `now`, and trials on live traffic."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, POLICIES

from engine import Decision, Engine
from engine.audit import DecisionLog, Protector
from engine.audit.replay import Replayer
from engine.errors import EvaluationError, PolicyErrors
from engine.plugins import open_store

BEFORE = datetime(2025, 2, 28, 12, tzinfo=UTC)
AFTER = datetime(2025, 3, 1, tzinfo=UTC)
KEY = bytes(range(32))

TREAT_LOW = """      - id: treat-low
        match: {tier: low}
        then: {service_level: basic, contact_cadence_days: 30, loyalty_programme: win_back}
"""
# from 1 March 2025 low-value customers are contacted every three weeks
DATED = """      - id: treat-low
        effective_to: 2025-03-01
        match: {tier: low}
        then: {service_level: basic, contact_cadence_days: 30, loyalty_programme: win_back}
"""
NEW_ROW = """      - id: treat-low-2025
        effective_from: 2025-03-01
        owner: head-of-sales
        clause: "CRM Guide §2.3 (2025 revision)"
        match: {tier: low}
        then: {service_level: basic, contact_cadence_days: 21, loyalty_programme: win_back}
        message: basic service, contact every three weeks from March 2025
"""


def edited(tmp_path: Path, old: str, new: str, name: str = "tiering.yaml") -> Path:
    policies = tmp_path / "policies"
    if not policies.exists():
        shutil.copytree(POLICIES, policies)
    path = policies / name
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return policies


def dated_policies(tmp_path: Path) -> Path:
    text = (POLICIES / "tiering.yaml").read_text(encoding="utf-8")
    start = text.index("      - id: treat-low\n")
    end = text.index("      - id: treat-minimal")
    message = text[start:end].split("message:", 1)[1]
    return edited(tmp_path, text[start:end], DATED + "        message:" + message + NEW_ROW)


def customers() -> list[dict[str, Any]]:
    with EXAMPLES.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f][:400]


def test_evaluate_answers_as_the_policy_stood_then(tmp_path: Path) -> None:
    policies = dated_policies(tmp_path)

    def evaluate(now: str) -> dict[str, dict[str, Any]]:
        r = subprocess.run(
            [
                *(sys.executable, "-m", "engine.cli", "evaluate", "--policies", str(policies)),
                *("--facts", str(EXAMPLES), "--now", now, "--no-log", "--store", f"sqlite:///{tmp_path / 'c.db'}"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert r.returncode == 0, r.stderr
        return {d["subject"]: d for d in map(json.loads, r.stdout.splitlines())}

    before, after = evaluate("2025-02-28T12:00:00Z"), evaluate("2025-03-01T00:00:00Z")
    low = [c for c, d in before.items() if d["outputs"]["value_tier"] == "low"]
    assert len(low) > 100
    for c in low:
        assert before[c]["outputs"]["contact_cadence_days"] == 30
        assert after[c]["outputs"]["contact_cadence_days"] == 21
        assert "treat-low" in [r["id"] for r in before[c]["fired"]]
        fired = {r["id"]: r for r in after[c]["fired"]}
        assert fired["treat-low-2025"]["clause"] == "CRM Guide §2.3 (2025 revision)"
    cadence = {"high": 7, "medium": 14, "low": 30, "minimal": 90}
    for when, decisions in (("before", before), ("after", after)):
        for d in decisions.values():  # every other tier keeps its cadence
            tier = d["outputs"]["value_tier"]
            expected = 21 if (when, tier) == ("after", "low") else cadence[tier]
            assert d["outputs"]["contact_cadence_days"] == expected


def test_the_engine_picks_the_period_of_each_now(tmp_path: Path) -> None:
    engine = Engine(dated_policies(tmp_path))
    people = customers()
    engine.use_snapshot(engine.build_snapshot(people, now=AFTER))
    assert [(p.start, p.end) for p in engine.bundle.periods] == [(None, AFTER), (AFTER, None)]
    low = next(c for c in people if engine.evaluate("tiering", c, now=AFTER).outputs["value_tier"] == "low")
    at = {now: engine.evaluate("tiering", low, now=now) for now in (BEFORE, AFTER, datetime(2031, 1, 1, tzinfo=UTC))}
    assert [d.outputs["contact_cadence_days"] for d in at.values()] == [30, 21, 21]
    batch = list(engine.evaluate_batch("tiering", [low], now=BEFORE))
    assert isinstance(batch[0], Decision) and batch[0].outputs["contact_cadence_days"] == 30
    # one bundle version for both periods: a decision names the files, the period follows from `now`
    assert len({d.bundle_version for d in at.values()}) == 1


def test_a_dated_policy_is_not_in_force_before_its_date(tmp_path: Path) -> None:
    policies = edited(tmp_path, "owner: compliance-office\n", "owner: compliance-office\neffective_from: 2025-03-01\n")
    for name in ("escalation.yaml",):  # escalation uses tiering: dated the same way, or it would miss it
        text = (policies / name).read_text(encoding="utf-8")
        (policies / name).write_text(text.replace("\nid: ", "\neffective_from: 2025-03-01\nid: ", 1), encoding="utf-8")
    engine = Engine(policies)
    engine.use_snapshot(engine.build_snapshot(customers(), now=AFTER))
    assert engine.evaluate("tiering", customers()[0], now=AFTER).outputs["value_tier"]
    with pytest.raises(EvaluationError) as info:
        engine.evaluate("tiering", customers()[0], now=BEFORE)
    assert info.value.code == "V004" and "from 2025-03-01T00:00:00Z on" in str(info.value.hint)


@pytest.mark.parametrize(
    ("old", "new", "code", "words"),
    [
        ("      - id: treat-low\n", "      - id: treat-low\n        effective_from: 1st of March\n", "P171", "a date"),
        (
            "      - id: treat-low\n",
            "      - id: treat-low\n        effective_from: 2025-03-01\n        effective_to: 2025-01-01\n",
            "P172",
            "never in force",
        ),
        ("      - id: treat-low\n", "      - id: treat-low\n        mode: shadow\n", "P173", "`enforce` or `audit`"),
        (
            "  fraud_flags: {type: integer, min: 0, default: 0}\n",
            "  fraud_flags: {type: integer, effective_from: 2025-03-01}\n",
            "P170",
            "only be set on a rule",
        ),
    ],
)
def test_date_and_mode_mistakes_are_located(tmp_path: Path, old: str, new: str, code: str, words: str) -> None:
    policies = edited(tmp_path, old, new)
    with pytest.raises(PolicyErrors) as info:
        Engine(policies)
    err = next(e for e in info.value.errors if e.code == code)
    assert words in err.message
    line = (policies / "tiering.yaml").read_text(encoding="utf-8").splitlines()[err.location.line - 1]
    assert any(k in line for k in ("effective_", "mode:")), line


def test_a_mistake_in_one_period_only_names_the_period(tmp_path: Path) -> None:
    # from 2026 the top band shrinks to 85-100 but nobody moved the medium band up: a gap
    policies = edited(
        tmp_path,
        '      - {id: value-high, value: high, from: 80, to: 100, message: "top 20% of customers by lifetime value'
        ' (source)"}\n',
        "      - {id: value-high, value: high, from: 80, to: 100, effective_to: 2026-01-01}\n"
        "      - {id: value-high-2026, value: high, from: 85, to: 100, effective_from: 2026-01-01}\n",
    )
    with pytest.raises(PolicyErrors) as info:
        Engine(policies)
    messages = [e.message for e in info.value.errors]
    assert messages and all("(in force from 2026-01-01T00:00:00Z on)" in m for m in messages), messages


AUDIT_RULE = """      - id: lifecycle-new
        when: now - customer.first_purchase_at < duration("4320h")
"""
TRIAL = (
    """      - id: lifecycle-new-trial
        mode: audit
        when: now - customer.first_purchase_at < duration("8760h")
        then: new
        message: trial - first purchase less than a year ago
"""
    + AUDIT_RULE
)


def test_audit_mode_computes_beside_the_enforced_outcome(tmp_path: Path) -> None:
    policies = edited(tmp_path, AUDIT_RULE, TRIAL)
    people = customers()
    plain, trial = Engine(POLICIES), Engine(policies)
    for e in (plain, trial):
        e.use_snapshot(e.build_snapshot(people, now=AFTER))
    store = open_store(f"sqlite:///{tmp_path / 'log.db'}")
    logged = Engine(policies, log=DecisionLog(store, Protector(store, KEY)))
    logged.use_snapshot(trial.snapshot)
    differs = changed = 0
    for c in people:
        enforced, d = plain.evaluate("tiering", c, now=AFTER), trial.evaluate("tiering", c, now=AFTER)
        assert d.outputs == enforced.outputs and d.fired_ids == enforced.fired_ids  # audit never changes it
        assert d.audit is not None
        differs += d.audit_differs
        if d.audit_differs:
            assert "lifecycle-new-trial" in d.audit.fired_ids and d.to_dict()["audit"]["differs"] is True
            if d.audit.outputs != d.outputs:
                changed += 1
                assert d.audit.outputs["lifecycle_stage"] == "new" != d.outputs["lifecycle_stage"]
    assert 0 < changed < differs < len(people)
    # logged beside the enforced outcome, and replay reproduces both and counts where they differ
    assert sum(d.audit_differs for d in logged.evaluate_batch("tiering", people, now=AFTER)) == differs  # type: ignore[union-attr]
    with Replayer(store, Protector(store, KEY)) as replayer:
        report = replayer.run()
    assert (report.total, report.same, report.errors) == (len(people), len(people), [])
    assert report.audit_differs == {"tiering": differs}
    store.close()


def test_a_whole_policy_file_can_run_in_audit_mode_beside_the_live_one(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    text = (POLICIES / "tiering.yaml").read_text(encoding="utf-8")
    trial = text.replace("id: customer-tiering\n", "id: customer-tiering-2026\nmode: audit\n").replace(
        "contact_cadence_days: 30", "contact_cadence_days: 21"
    )
    (policies / "tiering-2026.yaml").write_text(trial, encoding="utf-8")
    engine = Engine(policies)
    people = customers()
    engine.use_snapshot(engine.build_snapshot(people, now=AFTER))
    low = [d for d in engine.evaluate_batch("tiering", people, now=AFTER) if d.outputs["value_tier"] == "low"]  # type: ignore[union-attr]
    assert low
    for d in low:
        assert isinstance(d, Decision) and d.audit is not None
        assert (d.outputs["contact_cadence_days"], d.audit.outputs["contact_cadence_days"]) == (30, 21)
        assert d.audit.policy_id == "customer-tiering-2026" and d.policy_id == "customer-tiering"
    # without `mode: audit` the second file is still refused
    (policies / "tiering-2026.yaml").write_text(trial.replace("mode: audit\n", ""), encoding="utf-8")
    with pytest.raises(PolicyErrors) as info:
        Engine(policies)
    assert info.value.errors[0].code == "P150"


def test_shipped_policies_have_one_period_and_no_audit() -> None:
    bundle = Engine(POLICIES).bundle
    assert len(bundle.periods) == 1 and bundle.periods[0].audit is None
    assert bundle.periods[0].policies is bundle.policies
