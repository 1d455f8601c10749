"""``/ui/policies/{domain}``: a domain's rules in plain words, and its source with line numbers
and the lint findings (``engine.workbench.lint``) shown on their lines, with the hint.

The rules are those coverage counts (``enumerate_rules``: what a decision can name as fired),
each with the fields written in the file (when, then, message, clause, effective dates, audit
mode ...) said as ``charter diff`` says them. The source is the bundle's own bytes: what is
serving, even when the files on disk have changed since (a failed reload is shown beside).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.core.compile import CompiledPolicy
from engine.core.load import Document, load_text
from engine.errors import CharterError, PolicyError, PolicyErrors
from engine.serve.service import Service
from engine.workbench.diff.structure import Item, _items, _rule_keys
from engine.workbench.diff.words import show
from engine.workbench.lint import Finding, lint_bundle
from engine.workbench.policytest.coverage import enumerate_rules

POLICY_KEYS = ("title", "owner", "clause", "effective_from", "effective_until", "mode", "description")


def policy_page(service: Service, domain: str) -> dict[str, Any]:
    """What the page shows for ``domain`` (``ServeError`` 404 when no such policy is loaded)."""
    service.check_domain(domain)
    engine = service.engine
    bundle = engine.bundle
    cp = bundle.policies[domain]
    policy = cp.policy
    name = Path(policy.path).name
    raw = dict(bundle.sources).get(name, b"")
    doc = _document(raw, policy.path)
    findings = [f for f in lint_bundle(bundle, engine.registry) if Path(f.location.file).name == name]
    return {
        "domain": domain,
        "policy": {"id": policy.id, "file": name, **{k: v for k, v in policy.metadata.items()}},
        "header": _header(doc),
        "rules": _rules(cp, doc),
        "source": _source(raw, findings),
        "findings": [_finding(f) for f in findings],
        "periods": [p.describe() for p in bundle.periods],
        "disk_errors": _disk_errors(service, name),
    }


def _document(raw: bytes, path: str) -> Document | None:
    try:
        return load_text(raw, path)
    except CharterError:  # the bundle loaded it, so this does not happen; the page shows no fields then
        return None


def _header(doc: Document | None) -> list[tuple[str, str]]:
    data = doc.data if doc is not None and isinstance(doc.data, dict) else {}
    return [(k, show(data[k], k)) for k in POLICY_KEYS if k in data]


def _rules(cp: CompiledPolicy, doc: Document | None) -> list[dict[str, Any]]:
    items: dict[str, Item] = {}
    if doc is not None:
        items = _items(doc.data, _rule_keys(doc.data))
    out = []
    for ref in enumerate_rules(cp).rules:
        item = items.get(ref.id)
        fields = [] if item is None else [(k, show(v, k, item.noun)) for k, v in item.data.items()]
        out.append(
            {
                "id": ref.id,
                "kind": ref.kind,
                "line": ref.line,
                "container": item.container if item is not None else "",
                "fields": fields,
            }
        )
    return out


def _finding(f: Finding) -> dict[str, Any]:
    return {
        "code": f.code,
        "severity": f.severity,
        "message": f.message,
        "hint": f.hint,
        "line": f.location.line,
        "column": f.location.column,
        "related": [{"where": f"{Path(r.location.file).name}:{r.location.line}", "note": r.note} for r in f.related],
    }


def _source(raw: bytes, findings: list[Finding]) -> list[dict[str, Any]]:
    """The file's lines, numbered, each with the findings located on it."""
    by_line: dict[int, list[dict[str, Any]]] = {}
    for f in findings:
        by_line.setdefault(f.location.line, []).append(_finding(f))
    text = raw.decode("utf-8", errors="replace")
    return [{"n": n, "text": line, "findings": by_line.get(n, [])} for n, line in enumerate(text.splitlines(), 1)]


def _disk_errors(service: Service, name: str) -> list[dict[str, Any]]:
    """The errors of the last reload, when it failed: the files on disk do not load, the
    bundle shown keeps serving."""
    watcher = service.watcher
    error = watcher.last_error if watcher is not None else None
    if error is None:
        return []
    errors: list[PolicyError] = list(error.errors) if isinstance(error, PolicyErrors) else []
    if not errors:
        return [{"where": "", "code": getattr(error, "code", ""), "message": str(error), "hint": ""}]
    return [
        {"where": str(e.location), "code": e.code, "message": e.message, "hint": e.hint or ""}
        for e in errors
        if Path(e.location.file).name == name or not e.location.file
    ]
