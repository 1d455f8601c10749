"""The decision log for auditors: find records, show one with its reasons, verify the chain, replay.

Finding is ``engine.audit.query.find``, the one query ``charter log find`` and the
workbench's log search use too: it reads the log from its first record, checking the hash
chain as it goes, so its cost grows with the log. A broken chain answers the records before
the break and says where it breaks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.audit import query
from engine.audit.chain import ChainBroken, verify
from engine.audit.depends import Dependencies
from engine.audit.protect import SealError
from engine.audit.replay import Filters, Replayer, records
from engine.errors import CharterError
from engine.serve.errors import ServeError, bad_param
from engine.serve.service import parse_time, shape_error

if TYPE_CHECKING:
    from engine.serve.service import Service
    from engine.storage import Store

LIMIT, MAX_LIMIT = 100, 1000


def store_of(service: Service) -> Store:
    if service.store is None:
        raise ServeError(
            "this service keeps no decision log",
            status=404,
            code="C065",
            hint="start it with `charter serve --store URL`",
        )
    return service.store


def _limit(text: str | None) -> int:
    if text is None:
        return LIMIT
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise bad_param("limit", text, f"a whole number from 1 to {MAX_LIMIT}")
    return int(text)


def filters_from(params: Mapping[str, Any]) -> Filters:
    """``Filters`` from query parameters or a JSON body (``domain``, ``customer``, ``rule``,
    ``since``, ``until``)."""
    for key in ("domain", "customer", "rule"):
        if params.get(key) is not None and not isinstance(params[key], str):
            raise shape_error(f"`{key}` must be a string")
    since, until = params.get("since"), params.get("until")
    return Filters(
        params.get("domain"),
        params.get("customer"),
        params.get("rule"),
        parse_time(since, "since") if since is not None else None,
        parse_time(until, "until") if until is not None else None,
    )


def find(service: Service, params: Mapping[str, Any]) -> dict[str, Any]:
    """``GET /v1/log/records``: the first ``limit`` records (in log order) that match
    (``engine.audit.query.find``)."""
    store = store_of(service)
    limit = _limit(params.get("limit"))
    filters = filters_from(params)
    return query.find(store, filters, outcome=params.get("outcome"), limit=limit).to_dict()


def get(service: Service, record_id: str) -> dict[str, Any]:
    """``GET /v1/log/records/{id}``: one record (its full id, or 8 or more characters of it)
    with the reasons: each fired rule's message, clause, file and line, from the policy
    files the record names, as they were."""
    store = store_of(service)
    if len(record_id) < 8:
        raise ServeError("give at least 8 characters of the record id", status=404, code="C066")
    try:
        found = [(seq, rid, body) for seq, rid, body in records(store) if rid.startswith(record_id)]
    except ChainBroken as exc:
        raise CharterError(
            f"the log's hash chain breaks at record {exc.result.bad_seq}: {exc.result.reason}",
            code=exc.code,
            hint="POST /v1/log/verify says where",
        ) from None
    if len(found) != 1:
        raise ServeError(
            f"{'no' if not found else 'more than one'} record `{record_id}`",
            status=404,
            code="C066",
            hint="record ids are the decision_id of each decision",
        )
    seq, rid, body = found[0]
    reasons: list[dict[str, Any]] = []
    note = None
    try:
        with Replayer(store, service.protector, registry=service.engine.registry) as replayer:
            decision = replayer.decide(body, logged=True)
        by_id = {r.id: r for r in decision.fired}
        for rule_id, step in body["fired"]:
            r = by_id.get(rule_id)
            reasons.append(
                {"rule": rule_id, "step": step}
                if r is None
                else {
                    "rule": rule_id,
                    "step": step,
                    "message": r.message,
                    "clause": r.clause,
                    "file": Path(r.file).name,
                    "line": r.line,
                }
            )
    except (SealError, CharterError) as exc:  # erased, no key, or policies that no longer build
        note = f"reasons from the rule ids only: {exc}"
        reasons = [{"rule": rule_id, "step": step} for rule_id, step in body["fired"]]
    bundle = json.loads(store.get_blob("bundle", body["bundle_blob"]) or b"{}")
    return {
        **query.summary(seq, rid, body),
        "record": body,
        "reasons": reasons,
        "approvals": bundle.get("approvals", []),
        "note": note,
    }


def verify_log(service: Service, body: Any) -> dict[str, Any]:
    """``POST /v1/log/verify``: the hash chain from the first record (``{"head": HASH}`` also
    checks that the log still ends where an earlier verify said it did), then the blobs and
    customer keys the records depend on (``depends``: each problem with the records it affects)."""
    store = store_of(service)
    head = body.get("head") if isinstance(body, dict) else None
    if head is not None and not isinstance(head, str):
        raise shape_error("`head` must be a string: the head hash an earlier verify reported")
    deps = Dependencies()
    result = verify(store.read(), head=head, observe=deps.note)
    problems = deps.check(store) if result.ok else []
    return {
        "ok": result.ok and not problems,
        "count": result.count,
        "head": result.head,
        "bad_seq": result.bad_seq,
        "reason": result.reason or None,
        "depends": problems,
        "blobs_checked": deps.checked_blobs if result.ok else 0,
        "keys_checked": deps.checked_keys if result.ok else 0,
    }


def start_replay(service: Service, body: Any) -> dict[str, Any]:
    """``POST /v1/log/replay``: a job replaying the records the filters keep, as they were logged."""
    store_of(service)
    params = body if isinstance(body, dict) else {}
    if body is not None and not isinstance(body, dict):
        raise shape_error("the replay filters must be a JSON object")
    filters = filters_from(params)
    described = {k: params.get(k) for k in ("domain", "customer", "rule", "since", "until") if params.get(k)}
    return service.jobs.replay(filters, described)
