"""``/ui/log``: the decision log for auditors: search (``engine.serve.auditlog.find``, that is
``engine.audit.query.find``), one decision (``auditlog.get``) with its request, outputs,
reasons and the rule text as it was logged, its place in the hash chain; the chain's verify
status and the latest signed checkpoint (``engine.audit.checkpoint``).

Sealed values (sensitive facts, encrypted in the log) show as sealed unless the request may
unseal them (``engine.web.access.may_unseal``); opening one needs the service's log key. The
request's rows are ``engine.audit.present.flatten``'s, as ``charter log show`` prints them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.audit.chain import ChainBroken, checked
from engine.audit.checkpoint import key_id, load_public_key, read_checkpoints, verify_checkpoints
from engine.audit.present import flatten
from engine.serve import auditlog
from engine.serve.service import Service
from engine.web import counterfactual

SEARCH_KEYS = ("customer", "domain", "rule", "outcome", "since", "until", "limit")
RULE_LINES = 40  # at most this many lines of a rule's text


# --------------------------------------------------------------------------------------------
# search
# --------------------------------------------------------------------------------------------


def search(service: Service, params: Mapping[str, str]) -> dict[str, Any]:
    """The form's values and the records they find (the first ``limit``, in log order)."""
    form = {k: params.get(k, "").strip() for k in SEARCH_KEYS}
    asked = {k: v for k, v in form.items() if v}
    searched = any(k != "limit" for k in asked)
    found = auditlog.find(service, asked)
    return {"form": form, "searched": searched, "found": found, "domains": sorted(service.engine.domains)}


# --------------------------------------------------------------------------------------------
# one decision
# --------------------------------------------------------------------------------------------


def record(service: Service, record_id: str, *, may_unseal: bool) -> dict[str, Any]:
    """One decision as ``GET /v1/log/records/{id}`` gives it, laid out for the page."""
    got = auditlog.get(service, record_id)
    body = got["record"]
    subject = body.get("subject") or ""
    protector = service.protector if may_unseal else None
    sources = _sources(service, body)
    return {
        **got,
        "facts": flatten(body.get("facts"), subject, protector),
        "unsealed": protector is not None,
        "reasons": [{**r, "text": _rule_text(sources, r)} for r in got["reasons"]],
        "upstream": [
            {"domain": u.get("domain"), "fired": [f[0] for f in u.get("fired", [])], "outputs": u.get("outputs", {})}
            for u in body.get("upstream", [])
        ],
        "plugin_outputs": body.get("plugin_outputs", []),
        "notes": body.get("notes", []),
        "chain": _chain(service, got["seq"]),
        "engine": body.get("engine"),
        "semantics": body.get("semantics"),
        "replayed": counterfactual.for_record(service, body) if protector is not None else None,
    }


def _sources(service: Service, body: Mapping[str, Any]) -> dict[str, str]:
    """The policy files the record's bundle was made of, as the log stored them."""
    store = auditlog.store_of(service)
    try:
        stored = json.loads(store.get_blob("bundle", body["bundle_blob"]) or b"{}")
    except (ValueError, KeyError):
        return {}
    files = stored.get("files", {})
    return {str(k): v for k, v in files.items() if isinstance(v, str)} if isinstance(files, dict) else {}


def _rule_text(sources: Mapping[str, str], reason: Mapping[str, Any]) -> list[tuple[int, str]]:
    """The rule's lines in the file as it was: from its line to where its YAML entry ends."""
    text, line = sources.get(str(reason.get("file"))), reason.get("line")
    lines = text.splitlines() if text is not None else []
    if not isinstance(line, int) or not 1 <= line <= len(lines):
        return []
    first = lines[line - 1]
    base = len(first) - len(first.lstrip(" "))
    dash = first.lstrip(" ").startswith("-")
    out = [(line, first)]
    for n in range(line + 1, min(len(lines), line + RULE_LINES) + 1):
        text_n = lines[n - 1]
        body = text_n.lstrip(" ")
        indent = len(text_n) - len(body)
        inside = not body or indent > base or (not dash and indent == base and not body.startswith("-"))
        if not inside:
            break
        out.append((n, text_n))
    while out and not out[-1][1].strip():
        out.pop()
    return out


def _chain(service: Service, seq: int) -> dict[str, Any]:
    """The record's place in the hash chain: its number, the hash it links to, its neighbours."""
    store = auditlog.store_of(service)
    near: dict[int, dict[str, Any]] = {}
    count = 0
    try:
        for n, rec in checked(store.read()):
            count = n
            if seq - 1 <= n <= seq + 1:
                near[n] = {"hash": rec.get("hash"), "prev": rec.get("prev")}
    except ChainBroken as exc:
        return {"n": seq, "count": count, "broken": exc.result.reason, "near": near}
    return {"n": seq, "count": count, "broken": None, "near": near}


# --------------------------------------------------------------------------------------------
# the chain
# --------------------------------------------------------------------------------------------


def verify_page(service: Service, checkpoints: str | None, public_keys: Sequence[str]) -> dict[str, Any]:
    """The chain verified from its first record, and the checkpoints file when one is configured."""
    result = auditlog.verify_log(service, None)
    out: dict[str, Any] = {"chain": result, "checkpoints": None}
    if checkpoints is None:
        return out
    path = Path(checkpoints)
    if not path.exists():
        out["checkpoints"] = {"file": str(path), "missing": True}
        return out
    listed = read_checkpoints(path)
    keys = [load_public_key(p) for p in public_keys]
    held = verify_checkpoints(auditlog.store_of(service).read(), listed, keys)
    latest = max(listed, key=lambda c: int(c["n"])) if listed else None
    out["checkpoints"] = {
        "file": str(path),
        "missing": False,
        "count": len(listed),
        "held": held.checked,
        "ok": held.ok,
        "problem": held.problem,
        "latest": latest,
        "keys": [key_id(k) for k in keys],
    }
    return out
