"""The plugin manager, the built-in plugins, and plugins that misbehave."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from charter_plugins import detectors
from charter_plugins.scorers import CHURN_ARGS, churn_risk

from engine.hookspecs import hookimpl
from engine.plugins import DetectorSpec, ScorerSpec, build_registry

NOW = datetime(2025, 6, 30, tzinfo=UTC)


def test_builtins_are_plugins_like_any_other() -> None:
    registry = build_registry()
    assert {"clv", "churn_risk", "rfm"} <= set(registry.scorers)
    assert {"national_id", "bank_card", "phone", "email", "medical_terms"} <= set(registry.detectors)
    assert registry.scorers["clv"].plugin == "charter_plugins.scorers"
    assert registry.problems == []


@pytest.mark.parametrize(
    ("detector", "text", "expected"),
    [
        ("national_id", "11010519491231002X", True),
        ("national_id", "110105194912310021", False),  # wrong check character
        ("national_id", "110105194913310028", False),  # month 13
        ("bank_card", "6222 0202 0011 2233 443", False),
        ("bank_card", "4111111111111111", True),
        ("bank_card", "4111111111111112", False),
        ("phone", "+86 138 0013 8000", True),
        ("phone", "12345678901", False),
        ("email", "wang.fang@example.cn", True),
        ("email", "wang.fang@", False),
        ("medical_terms", "customer reported diabetes", True),
        ("medical_terms", "病历已归档", True),
        ("medical_terms", "prefers email contact", False),
    ],
)
def test_detectors(detector: str, text: str, expected: bool) -> None:
    assert getattr(detectors, detector)(text) is expected


def test_detectors_accept_the_example_identifiers(customers: list[dict[str, Any]]) -> None:
    for c in customers[:300]:
        assert detectors.bank_card(c["bank_account"]) and detectors.phone(c["phone"]) and detectors.email(c["email"])
        if "national_id" in c:
            assert detectors.national_id(c["national_id"])
        assert not detectors.national_id(c["phone"])


def test_churn_risk_is_monotone_in_each_signal() -> None:
    base = {"complaints_90d": 0, "satisfaction": 4.0, "last_purchase_at": NOW - timedelta(days=30), "purchases_12m": 5}
    low = churn_risk(base, CHURN_ARGS, NOW)
    for change in (
        {"complaints_90d": 2},
        {"satisfaction": 2.0},
        {"last_purchase_at": NOW - timedelta(days=200)},
        {"purchases_12m": 0},
    ):
        assert churn_risk({**base, **change}, CHURN_ARGS, NOW) > low
    assert 0.0 < low < 0.05
    no_survey = {k: v for k, v in base.items() if k != "satisfaction"}
    assert churn_risk(no_survey, CHURN_ARGS, NOW) > low  # absent CSAT reads as neutral (3), not as good


class Broken:
    @hookimpl
    def charter_scorers(self) -> list[ScorerSpec]:
        raise RuntimeError("boom")


class WrongType:
    @hookimpl
    def charter_detectors(self) -> Any:
        return ["not a spec"]


class Duplicate:
    @hookimpl
    def charter_detectors(self) -> list[DetectorSpec]:
        return [DetectorSpec("email", lambda text: True)]


def test_misbehaving_plugins_are_named_and_skipped() -> None:
    registry = build_registry([Broken(), WrongType(), Duplicate()])
    codes = sorted(p.code for p in registry.problems)
    assert codes == ["X001", "X002", "X003"]
    assert any("failed in `charter_scorers`: boom" in p.message for p in registry.problems)
    assert "both `charter_plugins.detectors` and" in next(p.message for p in registry.problems if p.code == "X003")
    assert registry.detectors["email"].plugin == "charter_plugins.detectors"  # the first one is kept
    assert "clv" in registry.scorers  # the others keep working


def test_charter_plugins_lists_what_each_provides() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "engine.cli", "plugins", "--format", "json"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    listed = {p["plugin"]: p for p in json.loads(r.stdout)["plugins"]}
    assert listed["charter_plugins.scorers"]["scorers"] == ["churn_risk", "clv", "rfm"]
    assert "national_id" in listed["charter_plugins.detectors"]["detectors"]


RFM_POLICY = """\
charter: 1
kind: tiering
id: rfm-cells
facts:
  last_purchase_at: {type: timestamp, required: true}
  purchases_12m: {type: integer, min: 0, required: true}
  annual_sales: {type: number, min: 0, required: true}
scores:
  rfm: {scorer: rfm}
outputs:
  champion: {type: boolean}
tables:
  - id: champions
    hit: first
    output: champion
    default: false
    rules:
      - {id: champion, when: scores.rfm >= 444.0, then: true, message: "recent, frequent and big buyers"}
"""


def test_rfm_ranks_against_the_snapshot(write_policy: Any, customers: list[dict[str, Any]], tmp_path: Any) -> None:
    from engine import Engine, EvaluationError, population

    eng = Engine(write_policy(RFM_POLICY))
    with pytest.raises(EvaluationError, match="needs a population snapshot"):
        eng.evaluate("tiering", customers[0], now=NOW)
    snap = eng.build_snapshot(customers, now=NOW)
    assert sorted(snap.scores["rfm"].metrics) == ["frequency", "monetary", "recency_days"]
    assert population.load(population.save(snap, tmp_path)) == snap  # survives the round trip
    eng.use_snapshot(snap)
    decisions = [eng.evaluate("tiering", c, now=NOW) for c in customers]
    cells = [int(d.scores["rfm"]) for d in decisions]
    assert all(111 <= c <= 555 and all(1 <= int(x) <= 5 for x in str(c)) for c in cells)
    monetary = [c % 10 for c in cells]
    for q in range(1, 6):  # quintiles: each M digit holds about a fifth of the customers
        assert abs(monetary.count(q) - len(cells) / 5) <= len(cells) * 0.02
    assert all(d.snapshot_id == snap.id for d in decisions)
    assert sum(d.outputs["champion"] for d in decisions) > 0


def test_every_hook_is_documented_to_the_template() -> None:
    """Each hookspec says what it is for, when it is called, its parameters and its return (pytest style)."""
    import inspect
    from pathlib import Path

    from engine import hookspecs

    docs = (Path(__file__).resolve().parent.parent / "docs" / "plugins.md").read_text(encoding="utf-8")
    specs = [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("charter_")]
    assert {f.__name__ for f in specs} == {
        "charter_scorers",
        "charter_detectors",
        "charter_functions",
        "charter_event_backends",
        "charter_domains",
        "charter_storage",
    }
    for f in specs:
        text = inspect.getdoc(f) or ""
        for part in ("For:", "When:", "Parameters:", "Return:"):
            assert part in text, f"{f.__name__} lacks `{part}`"
        signature = f"{f.__name__}({', '.join(inspect.signature(f).parameters)})"
        assert f"`{signature}`" in docs, f"docs/plugins.md does not show `{signature}`"


# -- a plugin's failure during a decision: named, and never an exception the API does not document --

FAILING_FUNCTION_POLICY = """\
charter: 1
kind: tiering
id: t
facts:
  name: {type: string, required: true}
outputs:
  vip: {type: boolean}
tables:
  - id: vip
    hit: first
    output: vip
    default: false
    rules:
      - {id: by-name, when: 'customer.name.shout() == "A"', then: true}
"""


class _Shouting:
    @hookimpl
    def charter_functions(self) -> list[Any]:
        from engine.hookspecs import FunctionSpec

        def shout(text: str) -> str:
            if text == "boom":
                raise RuntimeError("shout broke")
            return text.upper()

        return [FunctionSpec("shout", shout, ("string",), "string", method=True)]


@pytest.mark.parametrize("explain", [False, True])
def test_a_failing_function_leaves_its_condition_undefined_and_names_the_plugin(
    write_policy: Any, explain: bool
) -> None:
    from engine import Engine

    eng = Engine(write_policy(FAILING_FUNCTION_POLICY), plugins=[_Shouting()])
    ok = eng.evaluate("tiering", {"id": "a", "name": "a"}, now=NOW, explain=explain)
    assert ok.outputs["vip"] is True
    failed = eng.evaluate("tiering", {"id": "b", "name": "boom"}, now=NOW, explain=explain)
    assert failed.outputs["vip"] is False and failed.fired_ids == ()
    [note] = [n for n in failed.notes if "shout" in n]
    assert "RuntimeError: shout broke" in note and "by-name" in note


class _BrokenDomain:
    """A domain plugin whose runner has a bug for one request."""

    @hookimpl
    def charter_domains(self) -> list[Any]:
        from engine.core.domain import Domain, DomainResult

        def build(policy: Any, registry: Any) -> Any:
            def run(facts: Any, now: datetime, upstream: Any, explain: bool) -> DomainResult:
                if facts.get("id") == "bad":
                    raise ZeroDivisionError("division by zero")
                return DomainResult({"ok": True}, [])

            return run

        return [Domain(kind="broken", description="a domain with a bug", shared=False, build=build)]


def test_a_failing_domain_plugin_is_an_evaluation_error_and_the_batch_keeps_what_it_decided(tmp_path: Any) -> None:
    from engine import Engine, EvaluationError
    from engine.audit.log import DecisionLog
    from engine.plugins import open_store

    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "broken.yaml").write_text("charter: 1\nkind: broken\nid: b\n", encoding="utf-8")
    store = open_store(f"sqlite:///{tmp_path / 'log.db'}")
    eng = Engine(tmp_path / "p", plugins=[_BrokenDomain()], log=DecisionLog(store, None), log_batch=100)
    with pytest.raises(EvaluationError) as info:
        eng.evaluate("broken", {"id": "bad"}, now=NOW)
    assert info.value.code == "V006" and "ZeroDivisionError" in info.value.message
    assert "`broken` domain" in info.value.message
    seen: list[Any] = []
    with pytest.raises(EvaluationError):
        for d in eng.evaluate_batch("broken", [{"id": "a"}, {"id": "b"}, {"id": "bad"}, {"id": "c"}], now=NOW):
            seen.append(d)
    assert [d.subject for d in seen] == ["a", "b"]  # decided before the failure: yielded, not dropped
    assert all(d.record_id for d in seen)  # and recorded in the log
    assert sum(1 for _ in store.read()) == 2
