"""The ``charter diff`` command: its arguments, and the report as text or JSON."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.errors import CharterError
from engine.workbench.diff.changes import Report, diff_directories
from engine.workbench.diff.impact import Impact, _transition, measure_impacts

# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------


def render_text(report: Report, impacts: Sequence[Impact]) -> str:
    lines = [f"policy changes from {report.old_dir} to {report.new_dir}"]
    for f in report.files:
        names = [Path(d.path).name for d in (f.old, f.new) if d is not None]
        head = f"{' → '.join(dict.fromkeys(names))} ({f.domain})"
        status = f.status
        if status == "unchanged":
            lines.append(f"{head}: unchanged")
        elif status == "formatting only":
            lines.append(f"{head}: no semantic change (only comments or formatting differ)")
        else:
            lines.append(f"{head}:")
            lines.extend(f"  {c.line()}" for c in f.changes)
    n, files = report.semantic, sum(f.status in ("changed", "added", "removed") for f in report.files)
    lines.append(f"{n} semantic change(s) in {files} policy file(s)" if n else "no semantic change")
    many = len(impacts) > 1
    for impact in impacts:
        lines.extend(_impact_lines(impact) if impact.total or not many else [])
    if many:  # every domain decided about each customer
        decided = "; ".join(f"{i.domain} {i.changed:,} of {i.total:,}" for i in impacts if i.total)
        why: dict[str, list[str]] = {}
        for i in impacts:
            if not i.total:
                why.setdefault(i.notes[0] if i.notes else "nothing decided", []).append(f"`{i.domain}`")
        lines += ["", f"decisions changed, by domain: {decided}"]
        lines += [f"  not decided: {', '.join(names)}: {note}" for note, names in why.items()]
    return "\n".join(lines)


def _impact_lines(impact: Impact) -> list[str]:
    now, bad = impact.now.isoformat().replace("+00:00", "Z"), impact.bad
    both = impact.total - sum(bad.values())  # decided by both policy sets
    share = f" ({impact.changed / both:.1%})" if both else ""
    lines = ["", f"decisions: `{impact.domain}` for {impact.total:,} record(s) of {impact.facts} at {now}"]
    lines += [f"  {note}" for note in impact.notes]
    lines += [
        f"  {impact.changed:,} of {both:,} decision(s) change{share}; {impact.reasons_only:,} keep their outcome"
        " with other rules"
    ]
    if bad:
        lines += [
            f"  bad facts: {bad['both']:,} under both policies, {bad['old']:,} under the old only, "
            f"{bad['new']:,} under the new only"
        ]
    for name, counts in sorted(impact.by_output.items(), key=lambda kv: -kv[1].total()):
        lines += [f"  {name}: {t} ({n:,})" for t, n in counts.most_common(12)]
        lines += [f"  {name}: {len(counts) - 12} other change(s)"] if len(counts) > 12 else []
    lines += ["  for example:"] if impact.sample else []
    for s in impact.sample:
        moved = "; ".join(f"{k} {_transition(v['old'], v['new'])}" for k, v in s["outputs"].items())
        lines.append(f"    {s['subject']}: {moved}")
        lines.append(f"      fired before: {', '.join(s['fired_before']) or 'none'}")
        lines.append(f"      fired after:  {', '.join(s['fired_after']) or 'none'}")
    return lines


def render_json(report: Report, impacts: Sequence[Impact]) -> str:
    out: dict[str, Any] = {
        "old": report.old_dir,
        "new": report.new_dir,
        "semantic_changes": report.semantic,
        "files": [f.to_dict() for f in report.files],
        "changes": [c.to_dict() for c in report.changes],
    }
    if impacts:  # `impact`: the first domain's (the only one with --domain), as before `impacts`
        out["impacts"] = [impact.to_dict() for impact in impacts]
        out["impact"] = out["impacts"][0]
    return json.dumps(out, ensure_ascii=False, indent=2)


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    if args.population and not args.facts:
        raise CharterError("`--population` is used only with `--facts`", code="C043", hint="add `--facts FILE`")
    report = diff_directories(args.old, args.new)
    impacts = measure_impacts(report, args) if args.facts else []
    print(render_json(report, impacts) if args.format == "json" else render_text(report, impacts))
    return 1 if args.exit_code and report.semantic else 0


def add_command(sub: argparse._SubParsersAction[Any]) -> None:
    d = sub.add_parser(
        "diff",
        help="what changed between two policy directories, rule by rule, and which decisions it changes",
        description="Compare two policy directories by meaning: comments and layout are ignored.",
    )
    d.add_argument("old", metavar="OLD_DIR", help="the policies before the edit")
    d.add_argument("new", metavar="NEW_DIR", help="the policies after the edit")
    d.add_argument("--format", choices=["text", "json"], default="text")
    d.add_argument("--exit-code", action="store_true", help="exit 1 when there are semantic changes")
    d.add_argument("--facts", help="customers or requests (.json, .jsonl or .csv): decide each with both policy sets")
    d.add_argument(
        "--domain",
        help="the one domain to decide with --facts (default: the facts are customers, and every domain decides"
        " what it decides about each of them)",
    )
    d.add_argument("--now", help="evaluation time, e.g. 2025-06-30T00:00:00Z (default: the current time)")
    d.add_argument("--population", help="customers to rank against (default: --facts, when the domain ranks)")
    d.add_argument("--sample", type=int, default=5, help="changed decisions to show (default: 5)")
    d.set_defaults(run=run)
