"""``charter test``: the command, wiring the stages and writing the reports asked for."""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

from engine.api import Engine
from engine.errors import CharterError, PolicyError
from engine.workbench.policytest import coverage as cov
from engine.workbench.policytest.format import DEFAULT_DIR, load_suite
from engine.workbench.policytest.report import failure_text, json_report, junit, summary
from engine.workbench.policytest.run import Result, run_case
from engine.workbench.policytest.workspace import Workspace, reference_errors


def measure_coverage(results: Sequence[Result], ws: Workspace) -> dict[str, cov.Coverage]:
    """Rule coverage of each policy directory the cases ran against."""
    exercised: dict[str, set[cov.RuleKey]] = {}
    for r in results:
        exercised.setdefault(r.case.file.policies, set()).update(r.fired)
    out = {}
    for policies, fired in exercised.items():
        engine = ws.engines.get(policies)
        if isinstance(engine, Engine):
            out[policies] = cov.measure(cov.policies_of(engine.bundle), fired)
    return out


def add_command(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "test",
        help="run the policy tests (YAML cases in policies/tests) and measure rule coverage",
        description="Run policy tests written in YAML (docs/testing.md). Exit codes: 0 every case passed; "
        "1 a case failed, could not run, or coverage is below --fail-under; 2 a test file is malformed.",
    )
    p.add_argument("paths", nargs="*", help=f"test files or directories (default: {DEFAULT_DIR})")
    p.add_argument("-k", dest="select", metavar="TEXT", help="run only the cases whose name contains TEXT")
    p.add_argument("-v", "--verbose", action="store_true", help="also list the cases that pass")
    p.add_argument("--coverage", action="store_true", help="report the rules no case makes fire")
    p.add_argument("--fail-under", type=float, metavar="PCT", help="exit 1 when overall rule coverage is below PCT")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report")
    p.add_argument("--json", dest="json_out", metavar="FILE", help="also write a JSON report")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    suite, errors = load_suite(args.paths)
    ws = Workspace()
    errors += reference_errors(suite, ws)
    if errors:
        errors = list({(str(e.location), e.code, e.message): e for e in errors}.values())  # each once
        errors.sort(key=PolicyError.sort_key)
        for err in errors:
            print(err.describe())
        print(f"{len(errors)} error(s) in the test files; no case was run", file=sys.stderr)
        _write_reports(args, [], None, errors)
        return 2
    text = (args.select or "").lower()
    cases = [c for f in suite for c in f.cases if text in c.name.lower()]
    if not cases:
        print(f"no case matches `{args.select}`" if args.select else "no test files found", file=sys.stderr)
        return 2
    for policies, engine in ws.engines.items():
        if isinstance(engine, CharterError):
            print(f"the policies in `{policies}` do not load:\n{engine.describe()}")
    results = []
    for case in cases:
        result = run_case(case, ws)
        results.append(result)
        if result.status != "passed":
            print("\n".join(failure_text(result)))
        elif args.verbose:
            print(f"ok   {case.where}: {case.name}")
    coverage = None
    if args.coverage or args.fail_under is not None:
        coverage = measure_coverage(results, ws)
        for path, c in coverage.items():
            print("\n".join(cov.render(c, f"`{path}`")))
    print(summary(results))
    _write_reports(args, results, coverage, [])
    code = 1 if any(r.status != "passed" for r in results) else 0
    if args.fail_under is not None and coverage is not None:
        rules = sum(c.rules for c in coverage.values())
        percent = 100.0 * sum(c.fired for c in coverage.values()) / rules if rules else 100.0
        if percent < args.fail_under:
            print(f"rule coverage {percent:.1f}% is below --fail-under {args.fail_under:g}%")
            code = 1
        unmeasured = sorted({r.domain for c in coverage.values() for r in c.unmeasured})
        if unmeasured:
            names = ", ".join(f"`{d}`" for d in unmeasured)
            print(f"rule coverage cannot be measured for {names}: its domain does not list its rules")
            code = 1
    return code


def _write_reports(
    args: argparse.Namespace,
    results: Sequence[Result],
    coverage: Mapping[str, cov.Coverage] | None,
    errors: Sequence[PolicyError],
) -> None:
    if args.junit:
        tree = junit(results, errors)
        ET.indent(tree)
        tree.write(args.junit, encoding="utf-8", xml_declaration=True)
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(json_report(results, coverage, errors), f, ensure_ascii=False, indent=2, default=str)
            f.write("\n")
