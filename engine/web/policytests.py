"""``/ui/tests``: the policy tests (``charter test``: ``policies/tests/*.yaml`` beside each
served policy directory) run, with expected against actual and the deciding rules of each
failure, and rule coverage per domain with the rules no case makes fire.

The suite runs as ``charter test`` runs it (``engine.workbench.policytest``), against the
policy files on disk; results are kept for as long as neither the bundle nor a test file
changes, so reloading the page does not run them again.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.errors import PolicyError
from engine.serve.service import Service
from engine.workbench.policytest import Workspace, json_report, load_suite, measure_coverage, reference_errors, run_case
from engine.workbench.policytest.format import find_test_files

_LOCK = threading.Lock()
_CACHE: dict[tuple[Any, ...], dict[str, Any]] = {}


def suite_dirs(service: Service) -> list[str]:
    """The ``tests`` directory of each served policy directory that has one."""
    dirs = dict.fromkeys(Path(f).parent for f in service.engine.bundle.files)
    return [str(d / "tests") for d in dirs if (d / "tests").is_dir()]


def _key(service: Service, dirs: Sequence[str]) -> tuple[Any, ...]:
    files, _ = find_test_files(list(dirs))
    stats = []
    for f in files:
        st = f.stat()
        stats.append((str(f), st.st_size, st.st_mtime_ns))
    return (service.engine.bundle_version, tuple(dirs), tuple(stats))


def run_suite(service: Service) -> dict[str, Any]:
    """The report of ``charter test --coverage --json`` for the served policies (cached)."""
    dirs = suite_dirs(service)
    if not dirs:
        return {"dirs": [], "report": None, "errors": []}
    key = _key(service, dirs)
    with _LOCK:  # one run at a time; a second request waits and reads the result
        hit = _CACHE.get(key)
        if hit is None:
            hit = _run(dirs)
            _CACHE.clear()
            _CACHE[key] = hit
    return hit


def _run(dirs: list[str]) -> dict[str, Any]:
    suite, errors = load_suite(dirs)
    ws = Workspace()
    errors += reference_errors(suite, ws)
    if errors:
        unique = sorted({(str(e.location), e.code, e.message): e for e in errors}.values(), key=PolicyError.sort_key)
        return {"dirs": dirs, "report": None, "errors": [_error(e) for e in unique]}
    results = [run_case(case, ws) for f in suite for case in f.cases]
    report = json_report(results, measure_coverage(results, ws))
    return {"dirs": dirs, "report": report, "errors": []}


def _error(e: PolicyError) -> dict[str, str]:
    return {"where": str(e.location), "code": e.code, "message": e.message, "hint": e.hint or ""}


def tests_page(service: Service, status: str | None, domain: str | None) -> dict[str, Any]:
    """The suite's results, the cases kept to ``status`` (passed, failed, error) and ``domain``."""
    run = run_suite(service)
    report = run["report"]
    files: list[dict[str, Any]] = []
    if report is not None:
        for f in report["files"]:
            cases = [
                c for c in f["cases"] if (not status or c["status"] == status) and (not domain or c["domain"] == domain)
            ]
            if cases:
                files.append({**f, "cases": cases})
    return {"run": run, "report": report, "files": files, "status": status or "", "domain": domain or ""}
