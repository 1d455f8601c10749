"""The service's OpenAPI 3.1 document, served at ``GET /openapi.json`` and checked in as
``docs/openapi.json`` (``python -m engine.serve.openapi > docs/openapi.json``; a test fails
when they differ)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from engine.core.decision import ENGINE_VERSION
from engine.serve.auth import ANY, ENDPOINTS, OPEN, SCOPES


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    words = {
        400: "the body is not JSON (C061)",
        401: "no bearer token, or one the service does not know (C080); `WWW-Authenticate: Bearer`",
        403: "the token lacks the scope this operation needs (C081), named in `WWW-Authenticate`",
        404: "not found: a domain (C060), the log (C065), a record (C066), a job (C067)",
        413: "the body is over the limit (C068), or a batch has more items than the service takes (C084)",
        415: "the body is sent as something else than JSON (C083)",
        422: "bad facts (the engine's FactErrors, each naming its field), a decision that cannot be made, "
        "or a body or parameter of the wrong shape (C062-C064)",
        504: "the request took longer than the service's time limit (C085); the work it started may still finish",
    }
    return {str(s): _json(_ref("Error"), words[s]) for s in statuses}


_HEADER = {
    "X-Charter-Bundle": {
        "description": "the policy bundle version that decided, or that serves",
        "schema": {"type": "string"},
    }
}
_EXPLAIN = {
    "name": "explain",
    "in": "query",
    "required": False,
    "description": "add every rule's trace to each decision",
    "schema": {"type": "boolean", "default": False},
}
_RELEASE = {
    "name": "release",
    "in": "query",
    "required": False,
    "description": "add `released`: the request's data as the decision lets its requester see it "
    "(access: the record without denied fields, masked fields masked); 422 for a domain that releases none",
    "schema": {"type": "boolean", "default": False},
}
_DOMAIN = {"name": "domain", "in": "path", "required": True, "schema": {"type": "string"}}
_NOW = {
    "type": "string",
    "format": "date-time",
    "description": "the time of decision (UTC unless it says otherwise); the server's clock when absent",
}


def _op(
    summary: str,
    ok: dict[str, Any],
    *,
    body: dict[str, Any] | None = None,
    params: Sequence[Any] = (),
    errors: tuple[int, ...] = (),
    status: str = "200",
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {status: {**ok, "headers": _HEADER}, **_errors(*errors)}}
    if params:
        op["parameters"] = list(params)
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def _q(name: str, description: str, fmt: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if fmt:
        schema["format"] = fmt
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "a stable code: docs/errors.md"},
                    "message": {"type": "string"},
                    "hint": {"type": ["string", "null"]},
                    "subject": {"type": ["string", "null"]},
                    "errors": {
                        "type": "array",
                        "description": "bad facts: one per fact, naming its field",
                        "items": {
                            "type": "object",
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "hint": {"type": ["string", "null"]},
                                "field": {"type": "string"},
                                "value": {"type": "string"},
                                "rule": {"type": "string"},
                            },
                        },
                    },
                },
            }
        },
    },
    "Decision": {
        "type": "object",
        "description": "Decision.to_dict(), with decision_id and the snapshot it ranked against",
        "required": ["domain", "subject", "now", "outputs", "fired", "bundle_version", "decision_id"],
        "properties": {
            "domain": {"type": "string"},
            "subject": {"type": ["string", "null"]},
            "now": {"type": "string", "format": "date-time"},
            "outputs": {"type": "object"},
            "fired": {"type": "array", "items": {"type": "object"}},
            "scores": {"type": "object"},
            "notes": {"type": "array", "items": {"type": "string"}},
            "bundle_version": {"type": "string"},
            "policy_id": {"type": "string"},
            "snapshot_id": {"type": ["string", "null"]},
            "engine_version": {"type": "string"},
            "semantics_version": {"type": "string"},
            "decision_id": {"type": ["string", "null"], "description": "the decision log record's id; null unlogged"},
            "upstream": {"type": "array", "items": {"type": "object"}},
            "trace": {"type": "array", "items": {"type": "object"}},
            "audit": {"type": "object"},
            "released": {"type": "object", "description": "with `release=true`: what the requester may see"},
        },
    },
    "DecideRequest": {
        "type": "object",
        "required": ["facts"],
        "properties": {"facts": {"type": "object"}, "now": _NOW},
    },
    "BatchRequest": {
        "type": "object",
        "required": ["facts"],
        "properties": {"facts": {"type": "array", "items": {"type": "object"}}, "now": _NOW},
    },
    "BatchResult": {
        "type": "object",
        "required": ["domain", "bundle_version", "count", "decided", "errors", "results"],
        "properties": {
            "domain": {"type": "string"},
            "bundle_version": {"type": "string"},
            "snapshot_id": {"type": ["string", "null"]},
            "count": {"type": "integer"},
            "decided": {"type": "integer"},
            "errors": {"type": "integer"},
            "results": {
                "type": "array",
                "description": "in order: a Decision with its index, or {index, error}",
                "items": {"type": "object", "required": ["index"]},
            },
        },
    },
    "CustomerRequest": {
        "type": "object",
        "required": ["customer"],
        "properties": {
            "customer": {"type": "object", "description": "the customer's facts"},
            "now": _NOW,
        },
        "additionalProperties": {
            "description": "what a domain reads of the body, under the name its `customer_requests` gives"
            " (built-ins: `retention`, an object merged over the retention request; `tickets` and"
            " `events`, arrays, one escalation decision per ticket; `access`, an object: subject,"
            " action, purpose, record_type, fields, owner, department, tier, justification)"
        },
    },
    "CustomerResult": {
        "type": "object",
        "required": ["customer", "bundle_version", "decision_ids", "decisions"],
        "properties": {
            "customer": {"type": ["string", "null"]},
            "now": {"type": "string", "format": "date-time"},
            "bundle_version": {"type": "string"},
            "snapshot_id": {"type": ["string", "null"]},
            "decision_ids": {"type": "array", "items": {"type": "string"}},
            "decisions": {
                "type": "object",
                "description": "by domain: a Decision or {error}; escalation: one per ticket",
            },
        },
    },
    "Bundle": {
        "type": "object",
        "required": ["bundle_version", "files", "domains", "approvals"],
        "properties": {
            "bundle_version": {"type": "string"},
            "snapshot_id": {"type": ["string", "null"]},
            "files": {"type": "array", "items": {"type": "string"}},
            "approvals": {"type": "array", "items": {"type": "object"}},
            "periods": {"type": "array", "items": {"type": "string"}},
            "domains": {"type": "object", "description": "by domain: policy id, file, uses, outputs, rules"},
            "snapshot": {"type": ["object", "null"]},
        },
    },
    "Ready": {
        "type": "object",
        "required": ["ready", "reasons", "bundle_version"],
        "properties": {
            "ready": {"type": "boolean"},
            "reasons": {"type": "array", "items": {"type": "object"}},
            "bundle_version": {"type": "string"},
            "snapshot_id": {"type": ["string", "null"]},
            "domains": {"type": "array", "items": {"type": "string"}},
            "log": {"type": "boolean"},
            "reloads": {"type": "integer"},
            "failed_reloads": {"type": "integer"},
        },
    },
    "Records": {
        "type": "object",
        "required": ["records", "count", "truncated"],
        "properties": {
            "records": {"type": "array", "items": {"type": "object"}},
            "count": {"type": "integer"},
            "truncated": {"type": "boolean"},
            "chain_broken": {"type": ["object", "null"]},
        },
    },
    "Record": {
        "type": "object",
        "required": ["decision_id", "seq", "domain", "record", "reasons"],
        "properties": {
            "decision_id": {"type": "string"},
            "seq": {"type": "integer"},
            "domain": {"type": "string"},
            "subject": {"type": ["string", "null"]},
            "outcome": {"type": "string"},
            "record": {"type": "object", "description": "the record's body as logged (sensitive values sealed)"},
            "reasons": {"type": "array", "items": {"type": "object"}},
            "approvals": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Verify": {
        "type": "object",
        "required": ["ok", "count", "head"],
        "properties": {
            "ok": {"type": "boolean"},
            "count": {"type": "integer"},
            "head": {"type": "string"},
            "bad_seq": {"type": ["integer", "null"]},
            "reason": {"type": ["string", "null"]},
            "depends": {
                "type": "array",
                "items": {"type": "string"},
                "description": "blobs missing or altered, customer keys missing and not erased, each with its records",
            },
            "blobs_checked": {"type": "integer"},
            "keys_checked": {"type": "integer"},
        },
    },
    "Filters": {
        "type": "object",
        "properties": {
            "domain": {"type": "string"},
            "customer": {"type": "string"},
            "rule": {"type": "string"},
            "since": {"type": "string", "format": "date-time"},
            "until": {"type": "string", "format": "date-time"},
        },
    },
    "Job": {
        "type": "object",
        "required": ["id", "kind", "state", "progress"],
        "properties": {
            "id": {"type": "string"},
            "kind": {"type": "string"},
            "state": {"type": "string", "enum": ["queued", "running", "done", "failed"]},
            "worker": {"type": "integer", "description": "the process that runs (or ran) the job"},
            "filters": {"type": "object"},
            "progress": {"type": "object"},
            "started": {"type": "string"},
            "finished": {"type": ["string", "null"]},
            "report": {"type": ["object", "null"]},
            "error": {"type": ["object", "null"]},
        },
    },
}


def openapi() -> dict[str, Any]:
    log_params = [
        _q("customer", "only this customer's decisions"),
        _q("rule", "only decisions where this rule fired"),
        _q("domain", "only this domain's decisions"),
        _q("outcome", "the outcome (`deny`), or one output (`risk_level=high`)"),
        _q("since", "decided at or after this time", "date-time"),
        _q("until", "decided before this time", "date-time"),
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
        },
    ]
    paths = {
        "/v1/decide/{domain}": {
            "post": _op(
                "decide one request in a domain",
                _json(_ref("Decision"), "the decision"),
                body=_ref("DecideRequest"),
                params=[_DOMAIN, _EXPLAIN, _RELEASE],
                errors=(400, 404, 413, 422),
            )
        },
        "/v1/decide/{domain}/batch": {
            "post": _op(
                "decide many requests in one call; per-item errors in place",
                _json(_ref("BatchResult"), "one result per item, in order"),
                body=_ref("BatchRequest"),
                params=[_DOMAIN, _EXPLAIN],
                errors=(400, 404, 413, 422),
            )
        },
        "/v1/customer": {
            "post": _op(
                "every decision about one customer: tiering, classification, retention, escalation, access",
                _json(_ref("CustomerResult"), "the decisions by domain"),
                body=_ref("CustomerRequest"),
                params=[_EXPLAIN],
                errors=(400, 413, 422),
            )
        },
        "/v1/bundle": {"get": _op("the policy bundle serving", _json(_ref("Bundle"), "the bundle"))},
        "/v1/log/records": {
            "get": _op(
                "find logged decisions",
                _json(_ref("Records"), "the matching records, in log order"),
                params=log_params,
                errors=(404, 422),
            )
        },
        "/v1/log/records/{id}": {
            "get": _op(
                "one logged decision with its reasons",
                _json(_ref("Record"), "the record"),
                params=[{"name": "id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 8}}],
                errors=(404,),
            )
        },
        "/v1/log/verify": {
            "post": _op(
                "verify the decision log's hash chain",
                _json(_ref("Verify"), "the result"),
                errors=(400, 404, 422),
            )
        },
        "/v1/log/replay": {
            "post": _op(
                "replay logged decisions, as a job",
                _json(_ref("Job"), "the job, queued"),
                body=_ref("Filters"),
                errors=(400, 404, 422),
                status="202",
            )
        },
        "/v1/jobs/{id}": {
            "get": _op(
                "a job's state, progress and report",
                _json(_ref("Job"), "the job"),
                params=[{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                errors=(404,),
            )
        },
        "/health": {"get": _op("alive", _json({"type": "object"}, "the service answers"))},
        "/ready": {
            "get": {
                "summary": "ready: policies loaded, the last reload good, the store reachable",
                "responses": {
                    "200": {**_json(_ref("Ready"), "ready"), "headers": _HEADER},
                    "503": {**_json(_ref("Ready"), "not ready, with the reasons"), "headers": _HEADER},
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "text format 0.0.4",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }
    _secure(paths)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Charter decision service",
            "version": ENGINE_VERSION,
            "description": "Decisions with their reasons over HTTP; see docs/serve.md",
        },
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": {"bearer": _BEARER}},
        "security": [{"bearer": []}],
    }


_BEARER = {
    "type": "http",
    "scheme": "bearer",
    "description": "a token of the service's tokens file (`charter serve token new`), with scopes: "
    + "; ".join(f"`{name}`: {what}" for name, what in SCOPES.items())
    + ". A service started without tokens serves loopback only and needs none",
}


def _secure(paths: dict[str, Any]) -> None:
    """Each operation's security (its scope, from ``auth.ENDPOINTS``) and the errors that come with it."""
    for (method, path), need in ENDPOINTS.items():
        op = paths.get(path, {}).get(method.lower())
        if op is None:
            continue  # /openapi.json describes itself nowhere
        if need == OPEN:
            op["security"] = [{}, {"bearer": []}]  # none needed; a token given may show more (/ready)
            continue
        op["security"] = [{"bearer": [] if need == ANY else [need]}]
        statuses = [401]
        if need != ANY:
            op["description"] = f"needs a token with the scope `{need}` (or `admin`)"
            statuses.append(403)
        if "requestBody" in op or method == "POST":
            statuses.append(415)
        statuses.append(504)
        op["responses"].update(_errors(*statuses))
        op["responses"] = dict(sorted(op["responses"].items()))


if __name__ == "__main__":
    sys.stdout.write(json.dumps(openapi(), indent=2, ensure_ascii=False) + "\n")
