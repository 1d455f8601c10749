""" "What would change it": the counterfactual (``engine.audit.whynot.why_not``) beside a decision.

Two places ask for it:

* ``/ui/try`` (``try_page``): an officer picks a domain, pastes the facts as JSON and gets the
  decision, its reasons, the trace with the values compared and what would change it. The
  served policies decide, with the served snapshot, but nothing is logged: the programs are
  bound afresh from the served bundle (``Loaded.build``, well under a millisecond) and decide
  through ``engine.core.state.decide``, the same boundary ``Engine.evaluate`` uses, without
  its log;
* one logged decision (``for_record``), only for a request that may unseal: the facts are
  sealed in the log, so the record is decided again from its unsealed facts with the policy
  files and snapshot it names (``engine.audit.replay.Replayer``, as ``charter log show``
  does), with ``explain``, and the counterfactual read from that decision.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.audit.present import trace_lines
from engine.audit.protect import SealError
from engine.audit.replay import Replayer, unseal
from engine.audit.whynot import why_not
from engine.core.decision import Decision
from engine.core.domain import Domain
from engine.core.evaluate import Program
from engine.core.state import Loaded
from engine.errors import CharterError, EvaluationError, FactErrors
from engine.inputs import parse_now
from engine.serve import auditlog
from engine.serve.errors import ServeError
from engine.serve.service import Service

TRY_KEYS = ("domain", "facts", "now")


def explained(program: Program, decision: Decision, facts: Mapping[str, Any], domain: Domain | None) -> dict[str, Any]:
    """A decision made with ``explain`` laid out for a page: outputs, reasons, trace, why not."""
    return {
        "outputs": decision.to_dict()["outputs"],
        "scores": dict(decision.scores),
        "fired": [
            {
                "id": r.id,
                "step": r.step,
                "message": r.message,
                "clause": r.clause,
                "file": Path(r.file).name,
                "line": r.line,
            }
            for r in decision.fired
        ],
        "notes": list(decision.notes),
        "audit_differs": decision.audit_differs,
        "trace": trace_lines(decision, values=True),
        "why_not": why_not(program, decision, facts, domain),
    }


# --------------------------------------------------------------------------------------------
# /ui/try
# --------------------------------------------------------------------------------------------


def try_page(service: Service, params: Mapping[str, str]) -> dict[str, Any]:
    """The form (domain, facts, time) and, once facts are given, the decision explained."""
    engine = service.engine
    snapshot = engine.snapshot
    form = {k: params.get(k, "").strip() for k in TRY_KEYS}
    out: dict[str, Any] = {
        "form": form,
        "domains": list(engine.domains),
        "default_now": snapshot.as_of if snapshot is not None else "",
        "result": None,
        "fact_errors": [],
    }
    if not form["facts"]:
        return out
    domain = form["domain"] or engine.default_domain()
    service.check_domain(domain)
    facts = _facts(form["facts"])
    now = _now(form["now"] or out["default_now"])
    loaded = Loaded.build(engine.bundle, engine.snapshot)  # bound afresh: nothing is logged
    try:
        decision, _, program, _ = loaded.decide(domain, facts, now, explain=True)
    except FactErrors as exc:
        out["fact_errors"] = [
            {"code": e.code, "where": "", "message": str(e), "hint": e.hint or ""} for e in exc.errors
        ]
        return out
    except EvaluationError as exc:
        out["fact_errors"] = [{"code": exc.code, "where": "", "message": exc.message, "hint": exc.hint or ""}]
        return out
    out["result"] = {
        "domain": domain,
        "subject": decision.subject,
        "now": now.isoformat().replace("+00:00", "Z"),
        **explained(program, decision, facts, engine.registry.domains.get(domain)),
    }
    return out


def _facts(text: str) -> dict[str, Any]:
    try:
        facts = json.loads(text)
    except ValueError as exc:
        raise ServeError(
            f"the facts are not JSON: {exc}", status=422, code="C093", hint="paste one JSON object, `{...}`"
        ) from None
    if not isinstance(facts, dict):
        raise ServeError(
            "the facts must be one JSON object",
            status=422,
            code="C093",
            hint="paste the customer or request as `{...}`",
        )
    return facts


def _now(text: str) -> datetime:
    if not text:
        raise ServeError("give the time to decide at", status=422, code="C093", hint="write it like `2025-06-30`")
    return parse_now(text, "now")


# --------------------------------------------------------------------------------------------
# a logged decision
# --------------------------------------------------------------------------------------------


def for_record(service: Service, body: Mapping[str, Any]) -> dict[str, Any]:
    """The logged decision ``body`` decided again from its unsealed facts, with the policy
    files and snapshot it names, explained; ``{"error": ...}`` when it cannot be (erased,
    withheld, no key, policies that no longer build). Call it only for a request that may
    unseal: the trace and the counterfactual show the sealed values."""
    store = auditlog.store_of(service)
    registry = service.engine.registry
    try:
        with Replayer(store, service.protector, registry=registry) as replayer:
            decision = replayer.decide(body, logged=True, explain=True)
            now = datetime.fromisoformat(body["time"])
            loaded = replayer.loaded(body, logged=True)
            program = loaded.program(loaded.period(now), body["domain"], now)
            facts = unseal(body["facts"], "", body["subject"] or "", service.protector)
            return explained(program, decision, facts, registry.domains.get(body["domain"]))
    except (SealError, CharterError) as exc:
        return {"error": str(exc)}
