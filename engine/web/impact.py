"""``/ui/impact``: what an edited copy of the policies would change, before anything is swapped.

The form names a directory of edited policy files and a file of customers (or requests),
both under the project: the parent of the served policy directory; any other path is
refused. ``charter diff`` does the work (``engine.workbench.diff``): the semantic diff in
words, then both policy sets decide for every record and the changed decisions are counted
(``measure_impact``); the distributions of each output before and after are counted from the
same two engines, ranked against the same snapshot, and drawn side by side. The served
policies are only read, never replaced.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.api import Engine
from engine.core.decision import Decision
from engine.errors import PolicyErrors
from engine.inputs import parse_now, read_facts
from engine.serve.errors import ServeError, bad_param
from engine.serve.service import Service
from engine.web.charts import Series, bar_chart
from engine.web.dashboard import MAX_VALUES, _words
from engine.web.upload import Uploaded, described
from engine.web.whatif import replay_against
from engine.workbench.diff import Impact, Report, diff_directories, measure_impact

FORM_KEYS = ("edited", "facts", "domain", "now", "population", "sample", "replay", "log_since", "log_until")
DEFAULT_SAMPLE, MAX_SAMPLE = 10, 100


def served_dir(service: Service) -> Path:
    """The served policy directory: that of the bundle's files."""
    files = service.engine.bundle.files
    return Path(files[0]).parent.resolve() if files else Path.cwd()


def confined(text: str, root: Path, what: str, *, directory: bool) -> Path:
    """``text`` as a path under ``root`` (relative to it, or absolute inside it, links
    followed); ``ServeError`` C090 for a path outside, C091 for one that is not there."""
    path = Path(text)
    resolved = (path if path.is_absolute() else root / path).resolve()
    if not resolved.is_relative_to(root):
        raise ServeError(
            f"the {what} `{text}` is outside the project",
            status=403,
            code="C090",
            hint=f"give a path under `{root}`",
        )
    if not (resolved.is_dir() if directory else resolved.is_file()):
        kind = "directory" if directory else "file"
        raise ServeError(f"the {what} `{text}` is not a {kind}", status=422, code="C091", hint=f"a path under `{root}`")
    return resolved


def impact_page(
    service: Service, params: Mapping[str, str], *, uploaded: Uploaded | None = None, may_read_log: bool = False
) -> dict[str, Any]:
    """The form (with the defaults filled in) and, once a directory is named (or ``uploaded``,
    written to a temporary directory), the comparison; with ``replay`` asked, the what-if
    against the decision log too (only when ``may_read_log``: the caller passes whether the
    token may read the log *and* unseal, since an edited policy could be written to tell a
    sealed fact by which records it changes)."""
    old_dir = served_dir(service)
    root = old_dir.parent
    snapshot = service.engine.snapshot
    form = {k: params.get(k, "").strip() for k in FORM_KEYS}
    out: dict[str, Any] = {
        "form": form,
        "root": str(root),
        "served": str(old_dir),
        "default_now": snapshot.as_of if snapshot is not None else "",
        "domains": list(service.engine.domains),
        "has_log": service.store is not None,
        "result": None,
        "errors": [],
        "uploaded": described(uploaded) if uploaded is not None else None,
    }
    if uploaded is not None and uploaded.directory is not None:
        new_dir = uploaded.directory
        form["edited"] = ""
    elif form["edited"]:
        new_dir = confined(form["edited"], root, "edited policy directory", directory=True)
    else:
        return out
    try:
        report = diff_directories(str(old_dir), str(new_dir))
    except PolicyErrors as exc:
        out["errors"] = [
            {"where": str(e.location), "code": e.code, "message": e.message, "hint": e.hint or ""} for e in exc.errors
        ]
        return out
    out["result"] = {"report": _report(report), "impact": None, "whatif": None, "whatif_note": ""}
    if form["facts"]:
        out["result"]["impact"] = _impact(report, form, root)
    if form["replay"]:
        if service.store is None:
            out["result"]["whatif_note"] = "the service keeps no decision log"
        elif not may_read_log:
            out["result"]["whatif_note"] = (
                "replaying the decision log against an edit decides its sealed facts (an edit could be written"
                " to tell them), so it needs a token with `log:read` and `unseal`"
            )
        else:
            out["result"]["whatif"] = replay_against(service, new_dir, params)
    return out


def _report(report: Report) -> dict[str, Any]:
    return {
        "semantic": report.semantic,
        "files": [
            {
                "domain": f.domain,
                "status": f.status,
                "name": Path((f.new or f.old).path).name if (f.new or f.old) is not None else "",  # type: ignore[union-attr]
                "changes": [{"subject": c.subject, "line": c.line(), "text": c.text} for c in f.changes],
            }
            for f in report.files
        ],
    }


def _impact(report: Report, form: Mapping[str, str], root: Path) -> dict[str, Any]:
    facts = confined(form["facts"], root, "facts file", directory=False)
    population = confined(form["population"], root, "population file", directory=False) if form["population"] else None
    if not form["now"]:
        raise ServeError("give the time to decide at", status=422, code="C091", hint="write it like `2025-06-30`")
    now = parse_now(form["now"], "now")
    sample = _sample(form["sample"])
    args = argparse.Namespace(
        facts=str(facts),
        domain=form["domain"] or None,
        now=now.isoformat(),
        population=str(population) if population is not None else None,
        sample=sample,
    )
    impact = measure_impact(report, args)  # sets both engines' snapshot: the counts below use it too
    before = _distribution(report.old_engine, impact.domain, str(facts), now)
    after = _distribution(report.new_engine, impact.domain, str(facts), now)
    return {
        **impact.to_dict(),
        "both": impact.total - sum(impact.bad.values()),
        "charts": _charts(impact, before, after, _declared(report.new_engine, impact.domain)),
        "transitions": {name: counts.most_common(MAX_VALUES) for name, counts in impact.by_output.items()},
    }


def _sample(text: str) -> int:
    if not text:
        return DEFAULT_SAMPLE
    if not text.isdigit() or not 0 <= int(text) <= MAX_SAMPLE:
        raise bad_param("sample", text, f"a whole number from 0 to {MAX_SAMPLE}")
    return int(text)


def _distribution(engine: Engine, domain: str, facts: str, now: Any) -> dict[str, Counter[str]]:
    """How many decisions gave each value of each output that is a word (bad facts left out)."""
    out: dict[str, Counter[str]] = {}
    declared = engine.program(domain).policy.facts
    for result in engine.evaluate_batch(domain, read_facts(facts, "auto", declared), now=now):
        if isinstance(result, Decision):
            for name, values in _words(result.to_dict()["outputs"]):
                out.setdefault(name, Counter()).update(values)
    return out


def _declared(engine: Engine, domain: str) -> dict[str, list[str]]:
    """Each output's declared values, in the order the policy lists them (most severe first ...)."""
    outputs = engine.program(domain).policy.outputs
    return {name: [str(v) for v in out.values or ()] for name, out in outputs.items()}


def _charts(
    impact: Impact,
    before: Mapping[str, Counter[str]],
    after: Mapping[str, Counter[str]],
    declared: Mapping[str, list[str]],
) -> list[dict[str, Any]]:
    """A before/after chart of each output the edit changes, when it takes few values; the
    values in the order the policy declares them."""
    charts = []
    for name in impact.by_output:
        old, new = before.get(name, Counter()), after.get(name, Counter())
        seen = set(old) | set(new)
        labels = [v for v in declared.get(name, []) if v in seen]
        labels += [v for v in dict.fromkeys([*old, *new]) if v not in labels]
        if not labels or len(labels) > MAX_VALUES:
            continue
        title = f"{impact.domain}: {name} before and after"
        chart = bar_chart(title, [Series("before", old), Series("after", new)], labels=labels)
        rows = [(label, old.get(label, 0), new.get(label, 0)) for label in labels]
        charts.append({"name": name, "chart": chart, "rows": rows})
    return charts
