"""Stage 4: reports; text (one block per failure, a summary), JUnit XML and JSON."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.errors import PolicyError
from engine.workbench.policytest import coverage as cov
from engine.workbench.policytest.run import Result


def failure_text(result: Result) -> list[str]:
    case = result.case
    head = "FAIL" if result.status == "failed" else "ERROR"
    lines = [f"{head} {case.where}: {case.name}"]
    lines += [f"  {p.describe()}" for p in result.problems]
    return lines + result.explanation


def summary(results: Sequence[Result]) -> str:
    counts = Counter(r.status for r in results)
    text = f"{counts['passed']} passed, {counts['failed']} failed"
    return text + (f", {counts['error']} could not run" if counts["error"] else "")


def junit(results: Sequence[Result], errors: Sequence[PolicyError] = ()) -> ET.ElementTree:
    """JUnit XML: a testsuite per test file, a testcase per case; CI servers read it."""
    root = ET.Element("testsuites", name="charter policy tests")
    by_file: dict[str, list[Result]] = {}
    for r in results:
        by_file.setdefault(r.case.file.path, []).append(r)
    for err in errors:
        by_file.setdefault(err.location.file, [])
    totals: Counter[str] = Counter()
    for path, rs in by_file.items():
        broken = [e for e in errors if e.location.file == path]
        counts = Counter(r.status for r in rs)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=path,
            tests=str(len(rs) + len(broken)),
            failures=str(counts["failed"]),
            errors=str(counts["error"] + len(broken)),
            skipped="0",
            time=f"{sum(r.seconds for r in rs):.3f}",
            file=path,
        )
        for err in broken:
            tc = ET.SubElement(suite, "testcase", name="(the test file)", classname=path, file=path)
            ET.SubElement(tc, "error", message=str(err), type="malformed").text = err.describe()
        for r in rs:
            tc = ET.SubElement(
                suite,
                "testcase",
                name=r.case.name,
                classname=Path(path).with_suffix("").as_posix().strip("/").replace("/", "."),
                file=path,
                line=str(r.case.line),
                time=f"{r.seconds:.3f}",
            )
            if r.status != "passed":
                tag = "failure" if r.status == "failed" else "error"
                message = "; ".join(p.describe() for p in r.problems)
                ET.SubElement(tc, tag, message=message, type=tag).text = "\n".join(failure_text(r))
        totals.update(tests=len(rs) + len(broken), failures=counts["failed"], errors=counts["error"] + len(broken))
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    root.set("errors", str(totals["errors"]))
    return ET.ElementTree(root)


def json_report(
    results: Sequence[Result], coverage: Mapping[str, cov.Coverage] | None, errors: Sequence[PolicyError] = ()
) -> dict[str, Any]:
    counts = Counter(r.status for r in results)
    files: dict[str, dict[str, Any]] = {}
    for r in results:
        where = r.case.file
        f = files.setdefault(where.path, {"file": where.path, "policies": where.policies, "cases": []})
        f["cases"].append(
            {
                "name": r.case.name,
                "line": r.case.line,
                "domain": r.case.domain,
                "covers": r.case.spec.get("covers"),
                "status": r.status,
                "seconds": round(r.seconds, 4),
                "problems": [p.to_dict() for p in r.problems],
                "explanation": r.explanation,
                "fired": sorted(f"{d}/{rid}" for d, rid in r.fired),
                **({"distribution": r.detail} if r.detail else {}),
            }
        )
    out: dict[str, Any] = {
        "summary": {
            "passed": counts["passed"],
            "failed": counts["failed"],
            "errors": counts["error"],
            "total": len(results),
        },
        "errors": [e.to_dict() for e in errors],
        "files": list(files.values()),
        "coverage": None,
    }
    if coverage is not None:
        rules = sum(c.rules for c in coverage.values())
        fired = sum(c.fired for c in coverage.values())
        out["coverage"] = {
            "percent": round(100.0 * fired / rules, 2) if rules else 100.0,
            "rules": rules,
            "fired": fired,
            "policies": [{"path": path, **c.to_dict()} for path, c in coverage.items()],
        }
    return out
