"""``charter lint`` itself: the entry points (``lint_policies``, ``lint_paths``,
``lint_bundle``), load errors as findings, and the command.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.analysis.figures import check_steps
from engine.analysis.findings import ERROR, Context, Finding, Related, dedupe
from engine.analysis.tables import check_tables
from engine.core.bundle import Bundle, build_bundle
from engine.core.compile import CompiledPolicy
from engine.core.load import Document, load_file, policy_files
from engine.errors import Location, PolicyError, PolicyErrors
from engine.plugins import Registry, build_registry
from engine.workbench.lint.domains import check_declarations

# --------------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------------


def lint_policies(
    policies: Mapping[str, CompiledPolicy],
    documents: Mapping[str, Document] | Iterable[Document] | None = None,
    *,
    registry: Registry | None = None,
    now: datetime | None = None,
) -> list[Finding]:
    """Every finding in one loaded policy set (compiled policies by domain).

    ``documents`` (the loaded files, by path) make locations exact down to a list entry or
    a comparison inside a condition; without them findings point at the rule. ``registry``
    tells which facts plugin scorers read (without it, unread facts are not reported when a
    policy uses a plugin scorer). ``now`` enables the expired-waiver check.
    """
    if documents is None:
        docs: dict[str, Document] = {}
    elif isinstance(documents, Mapping):
        docs = dict(documents)
    else:
        docs = {d.path: d for d in documents}
    ctx = Context({kind: cp.policy for kind, cp in policies.items()}, docs, registry, now)
    ctx.domains = {kind: cp.domain for kind, cp in policies.items() if cp.domain is not None}
    for policy in ctx.policies.values():
        if policy.steps or policy.facts:
            check_tables(ctx, policy)
            check_declarations(ctx, policy)
            check_steps(ctx, policy)
        lint = ctx.domains[policy.kind].lint if policy.kind in ctx.domains else None
        if lint is not None:
            lint(ctx, policy)
    return dedupe(ctx.findings)


def lint_paths(paths: Sequence[str | Path], registry: Registry, *, now: datetime | None = None) -> list[Finding]:
    """Load the policy files and lint them; files that do not load give their load errors."""
    try:
        bundle = build_bundle(paths, registry)
    except PolicyErrors as exc:
        docs = _documents(paths)
        return dedupe(_load_finding(e, docs) for e in exc.errors)
    return lint_bundle(bundle, registry, now=now)


def lint_bundle(
    bundle: Bundle,
    registry: Registry | None = None,
    *,
    now: datetime | None = None,
    documents: Iterable[Document] | None = None,
) -> list[Finding]:
    """Lint a loaded bundle (``charter validate`` prints these after a successful load).
    ``documents``: its files as loaded already (by default they are loaded again).

    A bundle whose rules carry effective dates or audit mode holds several policy sets: each
    is linted, and the findings combined. Their documents are the files as they stand in each
    period (list positions differ from the files'), so locations come from the policies."""
    sets = [s for p in bundle.periods for s in (p.policies, p.audit) if s is not None]
    if len(sets) <= 1:
        docs = _documents(bundle.files).values() if documents is None else documents
        return lint_policies(bundle.policies, docs, registry=registry, now=now)
    return dedupe(f for policies in sets for f in lint_policies(policies, None, registry=registry, now=now))


def _documents(paths: Sequence[str | Path]) -> dict[str, Document]:
    """The policy files that parse as YAML, by path (the ones that do not are load errors)."""
    out: dict[str, Document] = {}
    for p in paths:
        path = Path(p)
        files = list(policy_files(path)) if path.is_dir() else [path] if path.is_file() else []
        for f in files:
            try:
                doc = load_file(f)
            except PolicyErrors:
                continue
            out[doc.path] = doc
    return out


# --------------------------------------------------------------------------------------------
# load errors, with the second place they involve
# --------------------------------------------------------------------------------------------


def _load_finding(err: PolicyError, docs: Mapping[str, Document]) -> Finding:
    location, related = err.location, []
    if err.related is not None:
        related.append(Related(err.related, _what_is_at(docs, err.related)))
    if err.code in ("P181", "P183"):  # an unknown role: name the roles declared
        doc = docs.get(location.file)
        if doc is not None and isinstance(doc.data, dict) and "roles" in doc.data:
            related.append(Related(doc.location(("roles",), key=True), "roles are declared here"))
    if err.code == "P185":  # an unknown data class: point at it, and at the classes declared
        location, related = _unknown_class(err, docs)
    return Finding(err.code, ERROR, err.message, location, err.hint or "", tuple(related))


def _what_is_at(docs: Mapping[str, Document], where: Location) -> str:
    doc = docs.get(where.file)
    if doc is None or not where.path:
        return "the other place involved"
    try:
        node = doc.get(where.path)
    except (KeyError, IndexError, TypeError):
        return "the other place involved"
    kinds = {"rules": "rule", "bands": "band", "tables": "table", "exceptions": "waiver", "classes": "class"}
    parts = [p for p in where.path if isinstance(p, str)]
    kind = kinds.get(parts[-1], "") if parts else ""
    if isinstance(node, dict) and "id" in node:
        return f"{kind} `{node['id']}`".strip()
    return "the other place involved"


def _unknown_class(err: PolicyError, docs: Mapping[str, Document]) -> tuple[Location, list[Related]]:
    location, related = err.location, []
    names = re.findall(r"`([^`]*)`", err.message)
    doc = docs.get(location.file)
    if names and doc is not None:
        try:
            listed = doc.get(location.path).get("classes", [])
            location = doc.location((*location.path, "classes", listed.index(names[0])))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            pass
    for other in docs.values():
        if isinstance(other.data, dict) and other.path != location.file and isinstance(other.data.get("classes"), list):
            related.append(Related(other.location(("classes",), key=True), "data classes are declared here"))
            break
    else:
        if err.related is not None:
            related.append(Related(err.related, "the policy that declares data classes"))
    return location, related


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------


def add_command(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("lint", help="find mistakes policies can load with: dead rules, gaps, conflicts")
    p.add_argument("paths", nargs="*", help="policy files or directories (default: policies)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    p.add_argument("--now", help="the date to judge waiver expiry against, e.g. 2026-01-01 (default: not judged)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from engine.inputs import parse_now  # the same timestamp reading as the CLI, with its error message

    now = parse_now(args.now) if args.now else None
    findings = lint_paths(args.paths or ["policies"], build_registry(), now=now)
    if args.format == "json":
        print(json.dumps([f.to_dict() for f in findings], ensure_ascii=False, indent=2))
    else:
        for f in findings:
            print(f.describe())
    errors = sum(f.severity == ERROR for f in findings)
    warnings = len(findings) - errors
    print(f"{errors} error(s), {warnings} warning(s)", file=sys.stderr)
    return 1 if errors or (args.strict and findings) else 0
