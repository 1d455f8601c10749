"""`charter test`: officers' YAML policy tests, their reports, and rule coverage.

Everything runs through the real command line on real files: the shipped tests against the
shipped policies, and copies of both with one figure or one case changed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, POLICIES, ROOT

from engine.cli import main
from engine.plugins import installed

TESTS = POLICIES / "tests"


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def charter_test(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """`charter test ARGS` in this process (the engine is built once per run)."""

    def run(*args: str | Path) -> Run:
        code = main(["test", *map(str, args)])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run of every shipped test with every report, shared by the tests that read it."""
    out = tmp_path_factory.mktemp("reports")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "test",
            "--coverage",
            "--fail-under",
            "100",
            "--junit",
            str(out / "junit.xml"),
            "--json",
            str(out / "report.json"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    return {
        "proc": proc,
        "junit": ET.parse(out / "junit.xml"),
        "json": json.loads((out / "report.json").read_text(encoding="utf-8")),
    }


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A copy of the policies, their tests and the example customers the tests name."""
    shutil.copytree(POLICIES, tmp_path / "policies")
    (tmp_path / "examples").mkdir()
    shutil.copy(EXAMPLES, tmp_path / "examples" / EXAMPLES.name)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"`{old}` must occur once in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def doc_block(section: str, lang: str) -> str:
    """The first ``lang`` code block after ``section`` in docs/testing.md."""
    text = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    after = text[text.index(f"\n{section}\n") :]
    return after.split(f"```{lang}\n", 1)[1].split("```", 1)[0]


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text in line)


# --------------------------------------------------------------------------------------------
# the shipped tests
# --------------------------------------------------------------------------------------------


def test_the_shipped_tests_pass_with_full_rule_coverage(shipped: dict[str, Any]) -> None:
    proc = shipped["proc"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1].endswith(" passed, 0 failed")
    (overall,) = [line.split() for line in lines if line.startswith("  overall ")]
    fired, rules = overall[1].split("/")
    assert fired == rules and int(rules) > 60 and overall[2] == "100.0%"
    assert "no test makes it fire" not in proc.stdout
    for domain in ("access", "classification", "escalation", "retention", "tiering"):
        assert any(line.split()[:1] == [domain] and line.endswith("100.0%") for line in lines), domain


def test_every_shipped_case_names_what_it_covers(shipped: dict[str, Any]) -> None:
    cases = [c for f in shipped["json"]["files"] for c in f["cases"]]
    assert len(cases) >= 80
    assert all((c["covers"] or "").startswith("domain.md §") for c in cases), [c["name"] for c in cases]
    covered = " ".join(c["covers"] for c in cases)
    for section in ("§1", "§2", "§3", "§4", "§5"):
        assert f"domain.md {section}" in covered


def test_the_value_tier_figures_are_pinned_by_a_distribution(shipped: dict[str, Any]) -> None:
    tiering = next(f for f in shipped["json"]["files"] if f["file"].endswith("tiering.yaml"))
    tiers = next(c for c in tiering["cases"] if c["name"].startswith("value tiers are top 20%"))
    assert tiers["status"] == "passed"
    assert tiers["distribution"]["shares"] == {"high": 0.2, "medium": 0.3, "low": 0.4, "minimal": 0.1}
    assert tiers["fired"] == [
        "tiering/value-high",
        "tiering/value-low",
        "tiering/value-medium",
        "tiering/value-minimal",
    ]


def test_junit_has_a_suite_per_file_and_a_case_per_case(shipped: dict[str, Any]) -> None:
    root = shipped["junit"].getroot()
    suites = root.findall("testsuite")
    files = sorted(TESTS.glob("*.yaml"))
    assert [s.get("name") for s in suites] == [f"policies/tests/{f.name}" for f in files]
    for suite, path in zip(suites, files, strict=True):
        cases = suite.findall("testcase")
        assert int(suite.get("tests", "-1")) == len(cases) == path.read_text(encoding="utf-8").count("\n  - name: ")
        assert suite.get("failures") == suite.get("errors") == "0"
        assert all(int(c.get("line", "0")) > 0 and c.find("failure") is None for c in cases)
    assert int(root.get("tests", "0")) == sum(len(s.findall("testcase")) for s in suites)


def test_the_json_report_has_every_case_and_the_coverage(shipped: dict[str, Any]) -> None:
    report = shipped["json"]
    total = sum(len(f["cases"]) for f in report["files"])
    assert report["summary"] == {"passed": total, "failed": 0, "errors": 0, "total": total}
    assert report["errors"] == []
    coverage = report["coverage"]
    assert coverage["percent"] == 100.0 and coverage["rules"] == coverage["fired"] > 60
    (policies,) = coverage["policies"]
    assert policies["path"] == "policies" and policies["uncovered"] == []
    assert set(policies["domains"]) == {"access", "classification", "escalation", "retention", "tiering"}
    assert policies["unmeasured"] == []  # every rule of the shipped policies is named when it fires


def test_the_policy_loader_ignores_the_tests_directory() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "validate", "policies"], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok: 5 policy file(s)")


def test_the_docs_example_test_file_runs(
    workspace: Path, charter_test: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workspace)
    example = doc_block("## A test file", "yaml")
    assert example.startswith("# policies/tests/tiering.yaml (an excerpt)")
    path = Path("policies/tests/example.yaml")
    path.write_text(example, encoding="utf-8")
    r = charter_test(path, "-v")
    assert r.code == 0, r.out
    assert r.out.splitlines()[-1] == "3 passed, 0 failed"


# --------------------------------------------------------------------------------------------
# a failing case: expected against actual, and the rules that decided
# --------------------------------------------------------------------------------------------


def test_a_changed_figure_fails_with_expected_actual_and_the_deciding_rule(
    workspace: Path, charter_test: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workspace)  # paths are shown relative to the working directory, as in the docs
    policy = Path("policies/tiering.yaml")
    edit(policy, "dedicated, contact_cadence_days: 7,", "dedicated, contact_cadence_days: 10,")
    tests = Path("policies/tests/tiering.yaml")
    r = charter_test(tests)
    assert r.code == 1
    case_line = line_of(tests, "name: a high-value customer gets dedicated service")
    block = r.out.split(f"FAIL {tests}:{case_line}: a high-value customer gets dedicated service")[1]
    block = block.split("\nFAIL ")[0]
    assert "  contact_cadence_days: expected 7, got 10\n" in block
    assert "value_tier" not in block  # only what does not match, and the rules that set it
    message = "dedicated service, weekly contact, exclusive VIP benefits (source)"
    assert f"[treat-high] {message}  ({policy}:{line_of(policy, '- id: treat-high')};" in block
    assert "*yes treatment/treat-high: tier high" in block
    # the population case pinning weekly contact for the top 20% fails too
    assert "contact_cadence_days = 7: expected 0.2 ± 0.005, got 0.0000 (0 of 2000)" in r.out
    assert r.out.splitlines()[-1].endswith(" passed, 2 failed")
    # docs/testing.md shows exactly this output
    assert r.out == doc_block("## Reading a failure", "text")


def test_a_moved_band_fails_the_distribution_naming_the_band(workspace: Path, charter_test: Callable[..., Run]) -> None:
    policy = workspace / "policies" / "tiering.yaml"
    edit(policy, "value: high, from: 80, to: 100", "value: high, from: 75, to: 100")
    edit(policy, "value: medium, from: 50, to: 80", "value: medium, from: 50, to: 75")
    r = charter_test(workspace / "policies" / "tests" / "tiering.yaml", "-k", "value tiers are")
    assert r.code == 1
    assert "value_tier = high: expected 0.2 ± 0.005, got 0.2500 (500 of 2000)" in r.out
    assert "value_tier = medium: expected 0.3 ± 0.005, got 0.2500 (500 of 2000)" in r.out
    assert f"[value-high] top 20% of customers by lifetime value (source)  ({policy}:59;" in r.out
    assert r.out.splitlines()[-1] == "0 passed, 1 failed"


def test_failures_go_into_junit_and_json(workspace: Path, charter_test: Callable[..., Run]) -> None:
    edit(workspace / "policies" / "retention.yaml", "period: 5y", "period: 7y")
    tests = workspace / "policies" / "tests" / "retention.yaml"
    junit, report = workspace / "junit.xml", workspace / "report.json"
    r = charter_test(tests, "--junit", junit, "--json", report)
    assert r.code == 1
    (suite,) = ET.parse(junit).getroot().findall("testsuite")
    failed = [c for c in suite.findall("testcase") if c.find("failure") is not None]
    assert suite.get("failures") == str(len(failed)) == "3"
    assert suite.get("tests") == str(len(suite.findall("testcase")))
    first = failed[0].find("failure")
    assert first is not None
    assert failed[0].get("name") == "transaction records are kept 5 years, then deleted"
    assert first.get("message") == 'due: expected "2026-03-15T00:00:00Z", got "2028-03-15T00:00:00Z"'
    assert "[transaction-records]" in (first.text or "")
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["summary"]["failed"] == 3
    case = next(c for f in data["files"] for c in f["cases"] if c["name"] == failed[0].get("name"))
    assert case["status"] == "failed" and case["line"] == int(failed[0].get("line", "0"))
    assert case["problems"] == [
        {
            "what": "due",
            "message": first.get("message"),
            "expected": "2026-03-15T00:00:00Z",
            "actual": "2028-03-15T00:00:00Z",
        }
    ]


# --------------------------------------------------------------------------------------------
# malformed test files
# --------------------------------------------------------------------------------------------

MALFORMED = """\
now: 2025-06-30T00:00:00Z
policies: {policies}
cases:
  - name: a case without a domain
    facts: {{id: C1}}
    expect: {{value_tier: high}}
  - name: a misspelt key
    domain: tiering
    facts: {{id: C1}}
    expct: {{value_tier: high}}
"""


def test_a_malformed_test_file_is_located_and_exits_2(tmp_path: Path, charter_test: Callable[..., Run]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(MALFORMED.format(policies=POLICIES), encoding="utf-8")
    report = tmp_path / "report.json"
    r = charter_test(path, "--json", report)
    assert r.code == 2
    assert r.out.splitlines() == [
        f"{path}:4:5: missing key `domain` [T021]",
        "  help: add `domain:`, one of " + ", ".join(f"`{d}`" for d in installed().domains),
        f"{path}:10:5: unknown key `expct` [T020]",
        "  help: did you mean `expect`?",
    ]
    assert "no case was run" in r.err
    errors = json.loads(report.read_text(encoding="utf-8"))["errors"]
    assert [(e["code"], e["line"], e["column"], e["path"]) for e in errors] == [
        ("T021", 4, 5, "cases[0]"),
        ("T020", 10, 5, "cases[1].expct"),
    ]


@pytest.mark.parametrize(
    ("case", "line", "column", "message"),
    [
        ("    fired: [risk-frau]\n", 8, 13, "no rule `risk-frau` in `tiering` [T037]"),
        ("    not_fired: [sensitive-identifiers]\n", 8, 17, "no rule `sensitive-identifiers` in `tiering` [T037]"),
        ("    expect: {value_teir: high}\n", 8, 14, "no output `value_teir` in `tiering` [T041]"),
        ("    now: yesterday\n    expect: {value_tier: high}\n", 8, 10, "`yesterday` is not a time [T039]"),
        ("", 5, 5, "the case checks nothing [T031]"),
    ],
)
def test_case_mistakes_are_located(
    tmp_path: Path, charter_test: Callable[..., Run], case: str, line: int, column: int, message: str
) -> None:
    path = tmp_path / "t.yaml"
    head = f"now: 2025-06-30\npolicies: {POLICIES}\ncustomers: {EXAMPLES}\ncases:\n"
    path.write_text(head + "  - name: one\n    domain: tiering\n    customer: C000001\n" + case, encoding="utf-8")
    r = charter_test(path)
    assert r.code == 2
    assert r.out.splitlines()[0] == f"{path}:{line}:{column}: {message}"


def test_an_unknown_customer_and_a_missing_file_are_located(tmp_path: Path, charter_test: Callable[..., Run]) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        f"now: 2025-06-30\npolicies: {POLICIES}\ncustomers: {EXAMPLES}\npopulation: nowhere.jsonl\ncases:\n"
        "  - name: one\n    domain: tiering\n    customer: C999999\n    expect: {value_tier: high}\n",
        encoding="utf-8",
    )
    r = charter_test(path)
    assert r.code == 2
    assert r.out.splitlines()[0] == f"{path}:4:13: `nowhere.jsonl` does not exist [T035]"
    shown = EXAMPLES.relative_to(ROOT)  # paths under the working directory are shown relative to it
    assert f"{path}:8:15: no customer `C999999` in `{shown}` [T036]" in r.out.splitlines()


# --------------------------------------------------------------------------------------------
# coverage
# --------------------------------------------------------------------------------------------


def remove_case(path: Path, name: str) -> None:
    """Delete the case named ``name`` (its lines up to the next case or section comment)."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line == f"  - name: {name}\n")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith(("  - name:", "  # --")))
    path.write_text("".join(lines[:start] + lines[end:]), encoding="utf-8")


def test_coverage_lists_a_rule_no_case_makes_fire(
    workspace: Path, charter_test: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workspace)
    tests = Path("policies/tests")
    remove_case(tests / "tiering.yaml", "compliance violations make a customer high risk and monitored")
    policy = Path("policies/tiering.yaml")
    r = charter_test(tests, "--coverage")
    assert r.code == 0  # every remaining case passes; coverage alone does not fail the run
    uncovered = [line for line in r.out.splitlines() if "no test makes it fire" in line]
    assert uncovered == [
        f"{policy}:{line_of(policy, f'id: {rule}')}: rule `{rule}` (tiering) — no test makes it fire"
        for rule in ("risk-compliance", "flag-compliance")
    ]
    assert "  tiering           20/22     90.9%" in r.out
    assert "  overall           71/73     97.3%" in r.out
    assert r.out.splitlines()[:-1] == doc_block("## Coverage", "text").splitlines()  # as docs/testing.md shows
    assert charter_test(tests, "--fail-under", "100").code == 1
    low = charter_test(tests, "--fail-under", "97")
    assert low.code == 0 and "below" not in low.out


def test_fail_under_reports_the_shortfall(workspace: Path, charter_test: Callable[..., Run]) -> None:
    tests = workspace / "policies" / "tests"
    r = charter_test(tests / "tiering.yaml", "--fail-under", "50")
    assert r.code == 1  # tiering's tests alone leave the other four domains untested
    assert "rule coverage 30.1% is below --fail-under 50%" in r.out
    assert "policies/access.yaml" in r.out and "rule `default-deny` (access)" in r.out
    assert charter_test(tests / "tiering.yaml", "--fail-under", "30").code == 0


def test_k_selects_cases_and_coverage_counts_only_them(charter_test: Callable[..., Run]) -> None:
    r = charter_test(TESTS, "-k", "LEGAL HOLD", "-v", "--coverage")
    assert r.code == 0
    ran = [line for line in r.out.splitlines() if line.startswith("ok ")]
    assert len(ran) == 2 and all("legal hold" in line for line in ran)  # not "legal_hold": a substring
    assert r.out.splitlines()[-1] == "2 passed, 0 failed"
    assert "  retention          1/5      20.0%" in r.out
    assert "  tiering            0/22      0.0%" in r.out
    assert charter_test(TESTS, "-k", "no such case").code == 2


# --------------------------------------------------------------------------------------------
# what expectations mean
# --------------------------------------------------------------------------------------------

SEMANTICS = """\
now: 2025-06-30T00:00:00Z
policies: {policies}
customers: {customers}
cases:
  - name: a mapping checks only the keys it names
    domain: classification
    facts: {{national_id: "310101196012217947", name: 杨超}}
    expect: {{fields: {{national_id: {{class: sensitive}}}}}}
  - name: a nested key that differs fails at its path
    domain: classification
    facts: {{national_id: "310101196012217947", name: 杨超}}
    expect: {{fields: {{national_id: {{class: basic, rule: sensitive-identifiers}}}}}}
  - name: a list must have the same items in the same order
    domain: classification
    facts: {{national_id: "310101196012217947", name: 杨超}}
    expect: {{classes: [sensitive, basic]}}
  - name: a list item may be a partial mapping
    domain: escalation
    customer: C000002
    facts:
      ticket: {{id: T, category: enquiry, severity: minor, opened_at: 2025-06-29T20:00:00Z}}
      events: [{{type: tier_drop, at: 2025-06-20T00:00:00Z, id: d1}}]
    expect: {{churn_alerts: [{{pattern: tier-drop}}]}}
  - name: null matches a null value
    domain: retention
    facts: {{record_type: marketing_preferences, record: {{preferences: [news]}}}}
    expect: {{due: null, postponed_by: ~}}
  - name: inside a mapping, null also matches a missing key
    domain: classification
    facts: {{name: 杨超}}
    expect: {{fields: {{name: {{class: basic, mask: null}}}}}}
  - name: times compare as instants in any zone
    domain: retention
    facts: {{record_type: transaction, created_at: 2021-03-15T00:00:00Z, record: {{orders_total: 1.0}}}}
    expect: {{due: 2026-03-15T08:00:00+08:00}}
  - name: true is not 1
    domain: tiering
    customer: C000001
    facts: {{fraud_flags: 1}}
    expect: {{monitored: 1}}
  - name: 7 is 7.0
    domain: tiering
    customer: C000001
    facts: {{profit_contribution: 10000000}}
    expect: {{contact_cadence_days: 7.0}}
  - name: an output the decision does not have fails
    domain: retention
    facts: {{record_type: transaction, created_at: 2021-03-15T00:00:00Z, record: {{orders_total: 1.0}}}}
    expect: {{actoin: delete}}
"""


def test_partial_expect_semantics(tmp_path: Path, charter_test: Callable[..., Run]) -> None:
    path = tmp_path / "semantics.yaml"
    path.write_text(SEMANTICS.format(policies=POLICIES, customers=EXAMPLES), encoding="utf-8")
    report = tmp_path / "r.json"
    r = charter_test(path, "--json", report)
    assert r.code == 1
    (cases,) = [f["cases"] for f in json.loads(report.read_text(encoding="utf-8"))["files"]]
    status = {c["name"]: c["status"] for c in cases}
    assert status == {
        "a mapping checks only the keys it names": "passed",
        "a nested key that differs fails at its path": "failed",
        "a list must have the same items in the same order": "failed",
        "a list item may be a partial mapping": "passed",
        "null matches a null value": "passed",
        "inside a mapping, null also matches a missing key": "passed",
        "times compare as instants in any zone": "passed",
        "true is not 1": "failed",
        "7 is 7.0": "passed",
        "an output the decision does not have fails": "failed",
    }
    problems = {c["name"]: [p["message"] for p in c["problems"]] for c in cases}
    assert problems["a nested key that differs fails at its path"] == [
        'fields.national_id.class: expected "basic", got "sensitive"'
    ]
    assert problems["a list must have the same items in the same order"] == [
        'classes[0]: expected "sensitive", got "basic"',
        'classes[1]: expected "basic", got "sensitive"',
    ]
    assert problems["true is not 1"] == ["monitored: expected 1, got true"]
    assert problems["an output the decision does not have fails"] == [
        "actoin: the decision has no such output (did you mean `action`?)"
    ]


REFERENCES = """\
now: 2025-06-30T00:00:00Z
policies: {policies}
customers: {customers}
cases:
  - name: an example customer with one fact overridden
    domain: tiering
    customer: C000001
    facts: {{fraud_flags: 3}}
    expect: {{risk_level: high, risk_flags: [fraud]}}
  - name: the customer goes where the domain reads one
    domain: escalation
    customer: C000001
    facts:
      customer: {{profit_contribution: 0}}
      ticket: {{id: T, category: enquiry, severity: minor, opened_at: 2025-06-29T20:00:00Z}}
    expect: {{tier: minimal}}
    fired: [tiering/value-minimal]
  - name: a required fact left out is the error expected
    domain: tiering
    customer: C000001
    without: [annual_sales]
    error: {{field: annual_sales, code: F101, message: is missing}}
  - name: an error naming another field fails
    domain: tiering
    customer: C000001
    without: [annual_sales]
    error: {{field: industry}}
  - name: a decision where an error was expected fails
    domain: tiering
    customer: C000001
    error: {{field: annual_sales}}
  - name: bad facts where a decision was expected fail
    domain: tiering
    customer: C000001
    facts: {{loyalty_score: 7}}
    expect: {{value_tier: high}}
  - name: leaving out a fact that is not there fails
    domain: tiering
    customer: C000001
    without: [no_such_fact]
    expect: {{value_tier: high}}
"""


def test_customer_references_and_error_expectations(tmp_path: Path, charter_test: Callable[..., Run]) -> None:
    path = tmp_path / "refs.yaml"
    path.write_text(REFERENCES.format(policies=POLICIES, customers=EXAMPLES), encoding="utf-8")
    report = tmp_path / "r.json"
    r = charter_test(path, "--json", report)
    assert r.code == 1
    (cases,) = [f["cases"] for f in json.loads(report.read_text(encoding="utf-8"))["files"]]
    result = {c["name"]: (c["status"], [p["message"] for p in c["problems"]]) for c in cases}
    assert result["an example customer with one fact overridden"] == ("passed", [])
    assert result["the customer goes where the domain reads one"] == ("passed", [])
    assert result["a required fact left out is the error expected"] == ("passed", [])
    status, problems = result["an error naming another field fails"]
    assert status == "failed"
    assert problems[0].startswith("error: expected an error naming `industry`, got: `annual_sales`: fact")
    assert result["a decision where an error was expected fails"] == (
        "failed",
        ["error: expected the facts to be refused for `annual_sales`; they were not"],
    )
    status, problems = result["bad facts where a decision was expected fail"]
    assert status == "failed" and problems[0].startswith("facts: refused: fact `loyalty_score` is `7`")
    status, problems = result["leaving out a fact that is not there fails"]
    assert status == "failed" and problems == ["without: there is no fact `no_such_fact` to leave out"]
    assert r.out.splitlines()[-1] == "3 passed, 4 failed"


def test_coverage_counts_rules_of_every_period_of_effective_dates(
    workspace: Path, charter_test: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rule whose effective_to has passed, or whose effective_from lies ahead, is still a rule
    a test should exercise: coverage lists it with its place."""
    monkeypatch.chdir(workspace)
    policy = Path("policies/access.yaml")
    edit(
        policy,
        "  - id: erasure\n",
        "  - id: legacy-export\n"
        "    effective_to: 2020-01-01\n"
        "    effect: allow\n"
        "    roles: [compliance_officer]\n"
        "    classes: [basic]\n"
        "    actions: [export]\n"
        "    purposes: [audit]\n"
        "  - id: future-export\n"
        "    effective_from: 2030-01-01\n"
        "    effect: allow\n"
        "    roles: [compliance_officer]\n"
        "    classes: [basic]\n"
        "    actions: [export]\n"
        "    purposes: [audit]\n"
        "  - id: erasure\n",
    )
    r = charter_test(Path("policies/tests"), "--coverage")
    assert r.code == 0, r.out
    uncovered = [line for line in r.out.splitlines() if "no test makes it fire" in line]
    assert uncovered == [
        f"{policy}:{line_of(policy, f'id: {rule}')}: rule `{rule}` (access) — no test makes it fire"
        for rule in ("legacy-export", "future-export")
    ]
    assert "  overall           73/75" in r.out
