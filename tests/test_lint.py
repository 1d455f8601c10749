"""`charter lint`: the shipped policies, seeded mistakes (each found with both places), the analyser.

Seeded mistakes copy the shipped policies into a temporary directory, change one line and
run the real command; every expected location is looked up in the seeded file by its text,
so the tests assert exact lines without hard-coding them.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import POLICIES, ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.analysis.conditions import (
    Analysis,
    Space,
    Var,
    always,
    analyse,
    implies,
    same,
)
from engine.analysis.values import INF, Values
from engine.cli import main
from engine.core.expr import BOOL, DOUBLE, INT, STRING, EvalError, ObjectType, check, compile_expr, parse
from engine.errors import Location
from engine.workbench.lint import Finding, Related, dedupe

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def seeded(tmp_path: Path, *edits: tuple[str, str, str]) -> Path:
    """A copy of the shipped policies with each (file, old, new) edit made once."""
    d = tmp_path / "policies"
    shutil.copytree(POLICIES, d)
    for name, old, new in edits:
        path = d / name
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} is not written exactly once in {name}"
        path.write_text(text.replace(old, new), encoding="utf-8")
    return d


def line_of(path: Path, text: str, after: str = "") -> int:
    """The 1-based line where ``text`` first appears (after the line holding ``after``)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if after in line) if after else 0
    return next(i for i, line in enumerate(lines[start:], start) if text in line) + 1


def lint(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, Any]]]:
    code = main(["lint", "--format", "json", *args])
    return code, json.loads(capsys.readouterr().out)


def one(findings: list[dict[str, Any]], code: str, needle: str = "") -> dict[str, Any]:
    hits = [f for f in findings if f["code"] == code and needle in f["message"]]
    assert len(hits) == 1, (code, needle, findings)
    return hits[0]


def at(finding: dict[str, Any], path: Path, line: int) -> None:
    assert (finding["file"], finding["line"]) == (str(path), line), finding


def related_at(finding: dict[str, Any], path: Path, line: int) -> dict[str, Any]:
    hits = [r for r in finding["related"] if (r["file"], r["line"]) == (str(path), line)]
    assert hits, (str(path), line, finding["related"])
    return hits[0]


# --------------------------------------------------------------------------------------------
# the shipped policies
# --------------------------------------------------------------------------------------------


def test_shipped_policies_have_no_errors_and_exactly_two_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    code, findings = lint(capsys, str(POLICIES))
    assert code == 0
    tiering = POLICIES / "tiering.yaml"
    assert [(f["code"], f["severity"], f["file"], f["line"]) for f in findings] == [
        ("L030", "warning", str(tiering), line_of(tiering, "  industry:")),
        ("L030", "warning", str(tiering), line_of(tiering, "  annual_sales:")),
    ]
    assert "`industry`" in findings[0]["message"] and "`annual_sales`" in findings[1]["message"]


def test_strict_fails_on_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "--strict", str(POLICIES)]) == 1
    assert "0 error(s), 2 warning(s)" in capsys.readouterr().err


def test_text_output_names_both_places_and_the_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = seeded(tmp_path, UNREACHABLE)
    assert main(["lint", str(d)]) == 1
    out = capsys.readouterr().out.splitlines()
    tiering = d / "tiering.yaml"
    i = next(i for i, line in enumerate(out) if "[L002]" in line)
    growth, decline = line_of(tiering, "id: lifecycle-growth"), line_of(tiering, "id: lifecycle-decline")
    assert out[i] == (
        f"{tiering}:{growth}:9: error: rule `lifecycle-growth` can never fire: "
        "rule `lifecycle-decline` comes first and matches whenever it does [L002]"
    )
    assert out[i + 1] == f"  see: {tiering}:{decline}:9: rule `lifecycle-decline`"
    assert out[i + 2].startswith("  help: move `lifecycle-growth` above `lifecycle-decline`")


# --------------------------------------------------------------------------------------------
# seeded mistakes: each found, naming both places
# --------------------------------------------------------------------------------------------

UNREACHABLE = (
    "tiering.yaml",
    "when: customer.relationship_years < 3.0",
    "when: customer.relationship_years < 3.0 && customer.purchases_12m == 0",
)


def test_gap_in_the_value_bands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = seeded(tmp_path, ("tiering.yaml", "value: low, from: 10", "value: low, from: 20"))
    code, findings = lint(capsys, str(d))
    assert code == 1
    f = one(findings, "P126", "between 10 and 20")
    tiering = d / "tiering.yaml"
    at(f, tiering, line_of(tiering, "id: value-low"))
    assert related_at(f, tiering, line_of(tiering, "id: value-minimal"))["note"] == "band `value-minimal`"


def test_unreachable_rule_under_hit_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = seeded(tmp_path, UNREACHABLE)
    code, findings = lint(capsys, str(d))
    assert code == 1
    f = one(findings, "L002")
    tiering = d / "tiering.yaml"
    at(f, tiering, line_of(tiering, "id: lifecycle-growth"))
    related_at(f, tiering, line_of(tiering, "id: lifecycle-decline"))
    assert f["severity"] == "error"


def test_rule_a_higher_priority_rule_always_beats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = seeded(tmp_path, ("tiering.yaml", "customer.default_risk >= 0.3\n", "customer.default_risk >= 0.7\n"))
    _, findings = lint(capsys, str(d))
    f = one(findings, "L002", "`risk-default-medium` can never decide")
    tiering = d / "tiering.yaml"
    at(f, tiering, line_of(tiering, "id: risk-default-medium"))
    related_at(f, tiering, line_of(tiering, "id: risk-default-high"))


def test_overlap_in_a_unique_table_names_both_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = seeded(tmp_path, ("tiering.yaml", "match: {tier: medium}", "match: {tier: [medium, high]}"))
    code, findings = lint(capsys, str(d))
    assert code == 1
    f = one(findings, "P132")
    tiering = d / "tiering.yaml"
    at(f, tiering, line_of(tiering, "id: treat-medium"))
    assert related_at(f, tiering, line_of(tiering, "id: treat-high"))["note"] == "rule `treat-high`"


def test_retention_clock_keyed_on_a_hold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = seeded(tmp_path, ("retention.yaml", "starts: consent_withdrawn", "starts: event:legal_hold_released"))
    code, findings = lint(capsys, str(d))
    assert code == 0  # a warning
    f = one(findings, "L012")
    retention = d / "retention.yaml"
    at(f, retention, line_of(retention, "starts: event:legal_hold_released"))
    related_at(f, retention, line_of(retention, "hold_fields:"))
    assert "never disposed of" in f["message"]


def test_typo_in_a_role_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = seeded(tmp_path, ("access.yaml", "roles: [sales_manager]", "roles: [sales_manger]"))
    code, findings = lint(capsys, str(d))
    assert code == 1
    f = one(findings, "P183")
    access = d / "access.yaml"
    at(f, access, line_of(access, "roles: [sales_manger]"))
    assert related_at(f, access, line_of(access, "roles:"))["note"] == "roles are declared here"
    assert f["hint"] == "did you mean `sales_manager`?"


def test_unknown_class_points_at_the_entry_and_the_classes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = seeded(tmp_path, ("retention.yaml", "classes: [basic, commercially_sensitive]", "classes: [basic, comercial]"))
    _, findings = lint(capsys, str(d))
    f = one(findings, "P185")
    retention, classification = d / "retention.yaml", d / "classification.yaml"
    at(f, retention, line_of(retention, "classes: [basic, comercial]"))
    related_at(f, classification, line_of(classification, "classes:"))


def test_dispose_always_postponed_by_a_keep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = seeded(
        tmp_path, ("retention.yaml", "period: 5y\n    starts: created", "period: 5y\n    starts: relationship_ended")
    )
    _, findings = lint(capsys, str(d))
    f = one(findings, "L013")
    retention = d / "retention.yaml"
    at(f, retention, line_of(retention, "id: sensitive-identifiers"))
    related_at(f, retention, line_of(retention, "id: transaction-records"))


def test_hold_fields_that_cannot_hold_or_are_unclassified(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = seeded(
        tmp_path, ("retention.yaml", "hold_fields: [legal_hold]", "hold_fields: [legal_hold, case.hold, lit_hold]")
    )
    code, findings = lint(capsys, str(d))
    assert code == 1
    retention, classification = d / "retention.yaml", d / "classification.yaml"
    nested = one(findings, "L010", "`case.hold`")
    at(nested, retention, line_of(retention, "hold_fields:"))
    assert nested["severity"] == "error" and nested["column"] == "hold_fields: [legal_hold, case.hold".index("case") + 1
    unclassified = one(findings, "L011", "`lit_hold`")
    at(unclassified, retention, line_of(retention, "hold_fields:"))
    related_at(unclassified, classification, line_of(classification, "rules:"))


def test_allow_rule_a_deny_always_overrides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = seeded(
        tmp_path,
        ("access.yaml", "purposes: [marketing]\n    message: sensitive", 'purposes: ["*"]\n    message: sensitive'),
    )
    _, findings = lint(capsys, str(d))
    f = one(findings, "L020", "`supervisor-sensitive`")
    access = d / "access.yaml"
    at(f, access, line_of(access, "id: supervisor-sensitive"))
    related_at(f, access, line_of(access, "id: no-sensitive-marketing"))
    assert not [x for x in findings if x["code"] == "L020" and "waiver" in x["message"]]


def test_condition_a_declared_bound_makes_false(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = seeded(tmp_path, ("tiering.yaml", "when: customer.default_risk >= 0.6", "when: customer.default_risk > 1"))
    _, findings = lint(capsys, str(d))
    f = one(findings, "L003", "`risk-default-high`")
    tiering = d / "tiering.yaml"
    assert "`customer.default_risk > 1` is never true" in f["message"]
    at(f, tiering, line_of(tiering, "id: risk-default-high"))
    assert "max 1" in related_at(f, tiering, line_of(tiering, "  default_risk:"))["note"]


def test_misspelt_cell_is_refused_with_the_value_meant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a cell text its input's declared values lack is a load error (P144), no longer only a
    # gap (L001) and a dead row (L003): the loader names the cell and the value meant
    d = seeded(tmp_path, ("tiering.yaml", "match: {tier: minimal}", "match: {tier: minmal}"))
    code, findings = lint(capsys, str(d))
    assert code == 1
    tiering = d / "tiering.yaml"
    refused = one(findings, "P144")
    assert "`outputs.value_tier` is never `minmal`" in refused["message"] and refused["severity"] == "error"
    assert refused["hint"] == "did you mean `minimal`?"
    at(refused, tiering, line_of(tiering, "match: {tier: minmal}"))


def test_numeric_gap_names_the_uncovered_interval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = """
  - id: cadence-by-sales
    hit: unique
    inputs: {sales: customer.annual_sales, seg: customer.industry}
    output: cadence
    rules:
      - {id: c1, match: {sales: "[0 .. 1000)", seg: "-"}, then: monthly}
      - {id: c2, match: {sales: "[1000 .. 5000)", seg: [finance, retail]}, then: weekly}
      - {id: c3, match: {sales: ">= 8000", seg: "-"}, then: weekly}
"""
    d = seeded(
        tmp_path,
        (
            "tiering.yaml",
            "  monitored: {type: boolean,",
            "  cadence: {type: string, values: [weekly, monthly]}\n  monitored: {type: boolean,",
        ),
        ("tiering.yaml", "  - id: treatment\n", table.lstrip("\n") + "\n  - id: treatment\n"),
    )
    _, findings = lint(capsys, str(d))
    gap = one(findings, "L001", "`cadence-by-sales`")
    assert "`sales` in `[5000 .. 8000)`" in gap["message"]
    assert "`sales` in `[1000 .. 5000)`, `seg` in one of `education`, `energy`" in gap["message"]
    assert gap["hint"].startswith("for example `sales` = `5000`")
    assert not [f for f in findings if f["code"] == "L030"]  # both facts are read now


def test_duplicate_rule_in_a_collect_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = seeded(
        tmp_path,
        (
            "tiering.yaml",
            "      - {id: flag-churn,",
            "      - {id: flag-fraud-again, when: 0 < customer.fraud_flags, then: fraud}\n      - {id: flag-churn,",
        ),
    )
    _, findings = lint(capsys, str(d))
    f = one(findings, "L006")
    tiering = d / "tiering.yaml"
    at(f, tiering, line_of(tiering, "id: flag-fraud-again"))
    related_at(f, tiering, line_of(tiering, "{id: flag-fraud,"))


def test_value_listed_that_an_input_never_takes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a text its declared values lack is refused by the loader (P144, E130); a figure outside
    # the declared range is the lint's (L007)
    d = seeded(
        tmp_path, ("tiering.yaml", "when: customer.fraud_flags > 0\n", "when: customer.fraud_flags in [-1, 2]\n")
    )
    _, findings = lint(capsys, str(d))
    f = one(findings, "L007")
    assert "`-1`" in f["message"] and "`customer.fraud_flags` is never `-1`" in f["message"]
    d = seeded(tmp_path / "b", ("tiering.yaml", "match: {tier: low}", "match: {tier: [low, lowest]}"))
    _, findings = lint(capsys, str(d))
    assert one(findings, "P144", "never `lowest`")["hint"] == "did you mean `low`?"


def test_always_true_condition_and_constant_comparison(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = seeded(
        tmp_path,
        ("tiering.yaml", "when: customer.fraud_flags > 0\n", "when: customer.fraud_flags >= 0\n"),
        (
            "tiering.yaml",
            "when: customer.compliance_violations > 0\n",
            "when: customer.compliance_violations > 0 || customer.loyalty_score > 1\n",
        ),
    )
    _, findings = lint(capsys, str(d))
    tiering = d / "tiering.yaml"
    true = one(findings, "L004", "`risk-fraud`")
    at(true, tiering, line_of(tiering, "customer.fraud_flags >= 0"))
    atom = one(findings, "L005", "customer.loyalty_score > 1")
    at(atom, tiering, line_of(tiering, "customer.loyalty_score > 1"))
    assert atom["column"] == 15 + len("customer.compliance_violations > 0 || ")
    related_at(atom, tiering, line_of(tiering, "  loyalty_score:"))


def test_absent_fact_keeps_a_tautology_from_always_matching(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = seeded(
        tmp_path,
        (
            "tiering.yaml",
            "when: customer.fraud_flags > 0\n",
            "when: customer.satisfaction > 3.0 || customer.satisfaction <= 3.0\n",
        ),
    )
    _, findings = lint(capsys, str(d))
    assert not [f for f in findings if f["code"] in ("L004", "L005")]


def test_retention_record_type_without_rule_and_instant_disposal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = seeded(
        tmp_path,
        ("retention.yaml", "marketing_preferences, service_ticket]", "marketing_preferences, service_ticket, calls]"),
        ("retention.yaml", "period: 3y\n    starts: relationship_ended", "period: 0d\n    starts: created"),
    )
    _, findings = lint(capsys, str(d))
    retention = d / "retention.yaml"
    uncovered = one(findings, "L015")
    assert "`calls`" in uncovered["message"] and "`sensitive-identifiers`" in uncovered["message"]
    related_at(uncovered, retention, line_of(retention, "id: sensitive-identifiers"))
    instant = one(findings, "L014")
    at(instant, retention, line_of(retention, "period: 0d", after="id: profile-after-relationship"))


def test_access_role_granted_nothing_and_dead_condition(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = seeded(
        tmp_path,
        ("access.yaml", "  data_engineer: {", "  intern: {description: nothing yet}\n  data_engineer: {"),
        ("access.yaml", 'when: resource.tier == "high"', 'when: resource.tier == "high" && action == "delete"'),
    )
    _, findings = lint(capsys, str(d))
    access = d / "access.yaml"
    at(one(findings, "L021", "`intern`"), access, line_of(access, "  intern:"))
    dead = one(findings, "L003", "`key-account-high-tier` can never apply")
    related_at(dead, access, line_of(access, "actions: [read, write]", after="id: key-account-high-tier"))


def test_expired_waiver_only_with_now(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, findings = lint(capsys, str(POLICIES))
    assert not [f for f in findings if f["code"] == "L022"]  # lint never reads the clock by itself
    _, findings = lint(capsys, "--now", "2027-01-01", str(POLICIES))
    access = POLICIES / "access.yaml"
    at(one(findings, "L022", "`waiver-crm-migration-2026`"), access, line_of(access, "expires:"))
    _, findings = lint(capsys, "--now", "2026-06-30", str(POLICIES))
    assert not [f for f in findings if f["code"] == "L022"]


def test_a_grant_the_class_handling_rules_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Classification's handling binds access: a purpose the class does not list, or export of
    a class with `export: false`, is a finding on the grant (the shipped policies agree)."""
    _, shipped = lint(capsys, str(POLICIES))
    assert not [f for f in shipped if f["code"] in ("L023", "L024")]
    d = seeded(
        tmp_path,
        ("access.yaml", "classes: [basic]   # commercially sensitive", "classes: [basic, commercially_sensitive]  #"),
        ("access.yaml", "classes: [basic, commercially_sensitive]   # sensitive", 'classes: ["*"]  #'),
    )
    _, findings = lint(capsys, str(d))
    access = d / "access.yaml"
    purpose = one(findings, "L023", "`marketing-preferences` allows class `commercially_sensitive` for `marketing`")
    at(purpose, access, line_of(access, "- id: marketing-preferences"))
    export = one(findings, "L024", "`compliance-legal-export` allows exporting class `sensitive`")
    at(export, access, line_of(access, "- id: compliance-legal-export"))


def test_outputs_and_values_no_rule_sets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = seeded(
        tmp_path,
        (
            "tiering.yaml",
            "values: [high, medium, low], description",
            "values: [high, medium, low, critical], description",
        ),
        ("tiering.yaml", "contact_cadence_days: 90, loyalty_programme: none}", "contact_cadence_days: 90}"),
        ("tiering.yaml", "contact_cadence_days: 30, loyalty_programme: win_back}", "contact_cadence_days: 30}"),
    )
    _, findings = lint(capsys, str(d))
    tiering = d / "tiering.yaml"
    at(one(findings, "L032", "`critical`"), tiering, line_of(tiering, "  risk_level:"))
    missing = [f["message"] for f in findings if f["code"] == "L032"]
    assert any("`win_back`" in m for m in missing) and any("`none`" in m for m in missing)


# --------------------------------------------------------------------------------------------
# `charter validate` prints the findings once the files load, and keeps its exit code
# --------------------------------------------------------------------------------------------


def test_validate_prints_lint_findings_and_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = seeded(tmp_path, UNREACHABLE)
    assert main(["validate", str(d)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: 5 policy file(s), bundle b-")
    assert re.search(r"tiering\.yaml:\d+:9: error: rule `lifecycle-growth` can never fire: .* \[L002\]", out)
    assert "[L030]" in out
    assert main(["validate", "--format", "json", str(d)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is True and "L002" in [w["code"] for w in report["warnings"]]


def test_validate_of_files_that_do_not_load_is_unchanged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = seeded(tmp_path, ("access.yaml", "roles: [sales_manager]", "roles: [sales_manger]"))
    assert main(["validate", str(d)]) == 1
    out = capsys.readouterr().out
    assert "unknown role `sales_manger` [P183]" in out and "[L0" not in out


# --------------------------------------------------------------------------------------------
# the condition analyser
# --------------------------------------------------------------------------------------------


def space(*variables: Var) -> Space:
    s = Space()
    for v in variables:
        s.add(v)
    return s


def number(
    name: str, lo: float | None = None, hi: float | None = None, *, integer: bool = False, absent: bool = False
) -> Var:
    universe = Values.between(
        -INF if lo is None else lo, lo is not None, INF if hi is None else hi, hi is not None, integer=integer
    )
    return Var(name, universe, absent)


def text(name: str, allowed: list[str] | None = None, *, absent: bool = False, null: bool = False) -> Var:
    universe = Values.of(allowed) if allowed is not None else Values(co=True)
    assert universe is not None
    return Var(name, Values(universe.nums, universe.strs, universe.co, universe.bools, null), absent)


def cases(s: Space, condition: str) -> Analysis:
    return analyse(parse(condition), s)


def test_implication_between_comparisons() -> None:
    s = space(number("c.x"), text("c.seg", ["a", "b", "c"]))
    assert implies(s, cases(s, "c.x > 5").true, cases(s, "c.x > 3").true) is True
    assert implies(s, cases(s, "c.x > 3").true, cases(s, "c.x > 5").true) is False
    assert implies(s, cases(s, "c.x >= 3 && c.seg == 'a'").true, cases(s, "c.x > 2.5").true) is True
    assert implies(s, cases(s, "c.seg in ['a', 'b']").true, cases(s, "c.seg != 'c'").true) is True
    assert implies(s, cases(s, "c.x > 3 || c.seg == 'a'").true, cases(s, "c.x > 3").true) is False
    assert implies(s, cases(s, "!(c.x <= 3)").true, cases(s, "c.x > 3").true) is True


def test_opaque_parts_are_independent_but_consistent() -> None:
    s = space(number("c.x"))
    timed = 'now - c.t > duration("24h")'
    assert implies(s, cases(s, f"{timed} && c.x > 3").true, cases(s, "c.x > 3").true) is True
    assert implies(s, cases(s, f"{timed} && c.x > 3").true, cases(s, timed).true) is True
    assert implies(s, cases(s, "c.x > 3").true, cases(s, timed).true) is False
    assert always(s, cases(s, f"{timed} || !({timed})").true) is False  # undefined when `c.t` is absent


def test_always_false_and_true_with_declared_bounds() -> None:
    s = space(number("c.loyalty", 0, 1), number("c.x"), number("c.n", 0, integer=True))
    assert cases(s, "c.loyalty > 1").true == []
    assert cases(s, "c.loyalty >= 0 && c.loyalty <= 1").false == []
    assert cases(s, "c.x > 5 && c.x < 3").true == []
    assert cases(s, "c.n < 0").true == []
    assert cases(s, "c.n == 2.5").true == []  # a whole number is never 2.5
    assert always(s, cases(s, "c.n <= 2 || c.n >= 3").true) is True
    assert always(s, cases(s, "c.x <= 2 || c.x >= 3").true) is False  # 2.5 falls between


def test_absent_fact_caveat() -> None:
    required, optional = number("c.a"), number("c.b", absent=True)
    s = space(required, optional)
    assert always(s, cases(s, "c.a > 0 || c.a <= 0").true) is True
    assert always(s, cases(s, "c.b > 0 || c.b <= 0").true) is False  # undefined when `b` is absent
    assert always(s, cases(s, "true").true) is True
    assert always(s, cases(s, "has(c.b) || !has(c.b)").true) is True
    assert always(s, cases(s, "!has(c.b) || c.b > 0 || c.b <= 0").true) is True
    assert cases(s, "has(c.a)").false == []  # a required fact is always there
    assert same(s, cases(s, "!(c.b > 0)").true, cases(s, "c.b <= 0").true) is True


def test_null_output_is_not_equal_to_anything() -> None:
    s = space(text("o.tier", ["high", "low"], null=True))
    not_high, low = cases(s, "o.tier != 'high'").true, cases(s, "o.tier in ['low']").true
    assert implies(s, low, not_high) is True
    assert implies(s, not_high, low) is False  # a null tier is != "high" but not in ["low"]
    assert cases(s, "o.tier < 3").true == []  # never true: not a number


def test_values_describe_and_example() -> None:
    interval = Values.between(10, True, 50, False)
    assert interval.describe() == "`[10 .. 50)`" and interval.example() == 10
    assert Values.between(3, False, INF, False, integer=True).describe() == "`>= 4`"
    assert (Values(co=True) - Values(strs=frozenset({"a"}))).describe() == "any text but `a`"
    assert Values.of([["a"]]) is None  # a list is no plain value: the comparison stays opaque


# --------------------------------------------------------------------------------------------
# findings and the docs
# --------------------------------------------------------------------------------------------


def test_dedupe_keeps_one_of_each_sorted_by_place() -> None:
    here, there = Location("p.yaml", 3, 1), Location("p.yaml", 1, 1)
    a = Finding("L002", "error", "rule `b` can never fire", here, related=(Related(there, "rule `a`"),))
    b = Finding("L030", "warning", "fact `x` is declared but ...", there)
    assert dedupe([a, b, a, b]) == [b, a]


def test_every_code_is_documented_with_an_example() -> None:
    files = [
        *(ROOT / "engine" / "workbench" / "lint").glob("*.py"),
        *(ROOT / "engine" / "analysis").glob("*.py"),
        *(ROOT / "engine" / "domains").glob("*_lint.py"),  # a domain's own checks
    ]
    source = "".join(p.read_text(encoding="utf-8") for p in sorted(files))
    codes = sorted(set(re.findall(r'"(L0\d\d)"', source)))
    doc = (ROOT / "docs" / "lint.md").read_text(encoding="utf-8")
    assert codes == sorted(re.findall(r"^### (L0\d\d)", doc, flags=re.M))  # no more, no fewer
    for code in codes:
        section = doc.split(f"### {code}", 1)
        assert len(section) == 2, f"{code} is not documented in docs/lint.md"
        assert f"[{code}]" in section[1].split("### ", 1)[0], f"docs/lint.md shows no example finding for {code}"


# --------------------------------------------------------------------------------------------
# the analyser against the engine: every claim it makes holds for the customers it is about
# --------------------------------------------------------------------------------------------

FUZZ_SPACE = (
    Var("customer.x", Values.between(0, True, 10, True)),  # number, min 0, max 10, required
    Var("customer.n", Values.between(0, True, INF, False, integer=True), absent=True),  # integer, min 0
    Var("customer.s", Values(strs=frozenset({"a", "b", "c"})), absent=True),  # allowed: a, b, c
    Var("customer.b", Values(bools=frozenset({True, False}))),  # boolean, required
)
FUZZ_TYPES = {"customer": ObjectType("customer", {"x": DOUBLE, "n": INT, "s": STRING, "b": BOOL})}
ATOMS = st.sampled_from(
    [
        *(f"customer.x {op} {c}" for op in ("==", "!=", "<", "<=", ">", ">=") for c in ("0.0", "2.5", "10.0", "11.0")),
        *(f"customer.n {op} {k}" for op in ("==", "<", ">=") for k in ("-1", "0", "2", "3")),
        "customer.s == 'a'",
        "customer.s in ['a', 'b']",
        "customer.s != 'd'",
        "has(customer.n)",
        "has(customer.s)",
        "customer.b",
        "customer.x * 2.0 > 7.0",  # opaque to the analyser
        "customer.n + 1 > 3",
        "true",
        "false",
    ]
)
CONDITIONS = st.recursive(
    ATOMS,
    lambda inner: (
        inner.map(lambda a: f"!({a})")
        | st.tuples(inner, st.sampled_from(["&&", "||"]), inner).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})")
    ),
    max_leaves=5,
)
CUSTOMERS = st.fixed_dictionaries(
    {"x": st.sampled_from([0.0, 2.5, 3.5, 5.0, 9.99, 10.0]), "b": st.booleans()},
    optional={"n": st.sampled_from([0, 1, 2, 3, 4, 100]), "s": st.sampled_from(["a", "b", "c"])},
)


def evaluate(text: str, customer: dict[str, Any]) -> bool | None:
    """The engine's own answer: True, False, or None when the condition is undefined."""
    node = parse(text)
    check(node, FUZZ_TYPES)
    try:
        return bool(compile_expr(node)({"customer": customer}))
    except EvalError:
        return None


def contains(space: Space, found: list[Any] | None, customer: dict[str, Any]) -> bool:
    """Whether the customer is one of the cases (opaque parts evaluated as the engine would)."""
    assert found is not None

    def holds(name: str, state: Any) -> bool:
        if name.startswith("?"):
            value = evaluate(name[1:], customer)
            return state.absent if value is None else value in state.values.bools
        key = name.split(".")[1]
        if key not in customer:
            return bool(state.absent)
        v, values = customer[key], state.values
        if isinstance(v, bool):
            return v in values.bools
        if isinstance(v, str):
            return (v in values.strs) != values.co
        return any((lo < v or (lc and lo == v)) and (v < hi or (hc and v == hi)) for lo, lc, hi, hc in values.nums)

    return any(all(holds(name, state) for name, state in box.items()) for box in found)


@settings(max_examples=300, deadline=None)
@given(CONDITIONS, CONDITIONS, st.lists(CUSTOMERS, min_size=1, max_size=8))
def test_the_analyser_claims_only_what_the_engine_does(first: str, second: str, people: list[dict[str, Any]]) -> None:
    s = space(*FUZZ_SPACE)
    a, b = cases(s, first), cases(s, second)
    a_implies_b, a_always = implies(s, a.true, b.true), always(s, a.true)
    for customer in people:
        value = evaluate(first, customer)
        if value is True:
            assert contains(s, a.true, customer), (first, customer)
            assert a_implies_b is not True or evaluate(second, customer) is True, (first, second, customer)
        if value is False:
            assert contains(s, a.false, customer), (first, customer)
        assert a_always is not True or value is True, (first, customer)
