"""The JSON Schemas of policy files, one per policy kind, built from shared parts.

The schemas are the first check of ``validate`` and are published for editors
(``engine/schemas/<kind>.schema.json``, written by ``charter schema``). The test suite
checks that the published files equal what this module builds.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.core.domain import Domain

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
DIALECT = "https://json-schema.org/draft/2020-12/schema"

ID_PATTERN = "^[a-z][a-z0-9_-]*$"
NAME_PATTERN = "^[a-z_][a-z0-9_]*$"

_text = {"type": "string", "minLength": 1}
_id = {"type": "string", "pattern": ID_PATTERN, "description": "lowercase words joined by `-` or `_`"}
_scalar = {"type": ["string", "number", "boolean"]}

METADATA: dict[str, Any] = {
    "title": _text,
    "description": _text,
    "owner": _text,
    "clause": {**_text, "description": "the clause of the guideline or law this implements"},
}

# on the policy and on every rule (any list item with an `id`): see engine/core/periods.py
PERIODS: dict[str, Any] = {
    "effective_from": {
        "type": "string",
        "description": "in force from this date (midnight UTC) or RFC 3339 time on, inclusive; e.g. 2026-01-01",
    },
    "effective_to": {
        "type": "string",
        "description": "no longer in force from this date or time on (exclusive); e.g. 2027-01-01",
    },
    "mode": {
        "enum": ["enforce", "audit"],
        "description": "audit: computed and logged beside the enforced outcome, never changing it",
    },
}

FACT: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["type"],
    "properties": {
        "type": {"enum": ["string", "integer", "number", "boolean", "timestamp", "list"]},
        "items": {"enum": ["string", "integer", "number", "boolean"]},
        "required": {"type": "boolean"},
        "nullable": {"type": "boolean"},
        "default": {},
        "min": {"type": "number"},
        "max": {"type": "number"},
        "allowed": {"type": "array", "items": _scalar, "minItems": 1},
        "max_length": {"type": "integer", "minimum": 0},
        "description": _text,
        "sensitive": {"type": "boolean"},
    },
}

SCORE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "oneOf": [{"required": ["scorer"]}, {"required": ["expr"]}],
    "properties": {
        "scorer": {"type": "string", "pattern": NAME_PATTERN},
        "args": {"type": "object"},
        "expr": _text,
        "description": _text,
    },
}

OUTPUT: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["type"],
    "properties": {
        "type": {"enum": ["string", "integer", "number", "boolean", "list"]},
        "values": {"type": "array", "items": _scalar, "minItems": 1, "uniqueItems": True},
        "description": _text,
    },
}

RULE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "then"],
    "properties": {
        "id": _id,
        "when": {"type": ["string", "boolean"]},
        "match": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean", "array"]}},
        "then": {"type": ["string", "number", "boolean", "object"]},
        "message": _text,
        **METADATA,
    },
}

TABLE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "hit", "rules"],
    "oneOf": [{"required": ["output"]}, {"required": ["outputs"]}],
    "properties": {
        "id": _id,
        "hit": {"enum": ["first", "unique", "priority", "collect"]},
        "output": {"type": "string", "pattern": NAME_PATTERN},
        "outputs": {"type": "array", "items": {"type": "string", "pattern": NAME_PATTERN}, "minItems": 1},
        "inputs": {"type": "object", "additionalProperties": _text},
        "default": {"type": ["string", "number", "boolean", "object"]},
        "rules": {"type": "array", "items": {"$ref": "#/$defs/rule"}, "minItems": 1},
        **METADATA,
    },
}

BAND: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "value", "from", "to"],
    "properties": {
        "id": _id,
        "value": _scalar,
        "from": {"type": "number", "minimum": 0, "maximum": 100},
        "to": {"type": "number", "minimum": 0, "maximum": 100},
        "message": _text,
        **METADATA,
    },
}

BANDS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "output", "score", "bands"],
    "properties": {
        "id": _id,
        "output": {"type": "string", "pattern": NAME_PATTERN},
        "score": {"type": "string", "pattern": NAME_PATTERN},
        "bands": {"type": "array", "items": {"$ref": "#/$defs/band"}, "minItems": 1},
        **METADATA,
    },
}


def policy_schema(
    kind: str,
    *,
    extra: dict[str, Any] | None = None,
    shared: bool = True,
    required: tuple[str, ...] = (),
    uses: bool = False,
) -> dict[str, Any]:
    """The JSON Schema for a policy file of ``kind``.

    ``shared`` policies have facts, scores, outputs and decision tables; the others only
    their own sections (``extra``). ``uses``: whether the policy may read other domains'
    decisions (``uses: {classification: resource.record}``).
    """
    head: dict[str, Any] = {
        "charter": {"const": 1, "description": "policy file format version"},
        "kind": {"const": kind},
        "id": _id,
        **METADATA,
    }
    if uses:
        head["uses"] = {
            "type": "object",
            "description": "the decisions of other domains this policy reads, and where their facts are",
            "propertyNames": {"type": "string", "pattern": ID_PATTERN},
            "additionalProperties": {"type": "string", "pattern": "^[a-z_][a-z0-9_]*(\\.[a-z_][a-z0-9_]*)*$"},
        }
    if not shared:
        return {
            "$schema": DIALECT,
            "$id": f"https://charter.dev/schemas/{kind}.schema.json",
            "title": f"Charter {kind} policy",
            "type": "object",
            "additionalProperties": False,
            "required": ["charter", "kind", "id", *required],
            "properties": {**head, **(extra or {})},
            "$defs": {"metadata": {"type": "object", "properties": METADATA}},
        }
    properties: dict[str, Any] = {
        **head,
        "facts": {
            "type": "object",
            "propertyNames": {"pattern": NAME_PATTERN},
            "additionalProperties": {"$ref": "#/$defs/fact"},
        },
        "scores": {
            "type": "object",
            "propertyNames": {"pattern": NAME_PATTERN},
            "additionalProperties": {"$ref": "#/$defs/score"},
        },
        "outputs": {
            "type": "object",
            "propertyNames": {"pattern": NAME_PATTERN},
            "additionalProperties": {"$ref": "#/$defs/output"},
            "minProperties": 1,
        },
        "tables": {"type": "array", "items": {"$ref": "#/$defs/table"}},
    }
    properties.update(extra or {})
    return {
        "$schema": DIALECT,
        "$id": f"https://charter.dev/schemas/{kind}.schema.json",
        "title": f"Charter {kind} policy",
        "type": "object",
        "additionalProperties": False,
        "required": ["charter", "kind", "id", "outputs"],
        "properties": properties,
        "$defs": {
            "fact": FACT,
            "score": SCORE,
            "output": OUTPUT,
            "rule": RULE,
            "table": TABLE,
            "band": BAND,
            "bands": BANDS,
        },
    }


def schemas(domains: Mapping[str, Domain]) -> dict[str, dict[str, Any]]:
    """Every policy kind's schema, by kind."""
    return {kind: domain_schema(domain) for kind, domain in domains.items()}


def domain_schema(domain: Domain) -> dict[str, Any]:
    """The schema of a ``Domain``'s policy files. Any policy may use the decisions of other
    domains: which ones are loaded is checked after the schema (P160), so the schema of a
    kind does not depend on what else is installed."""
    schema = policy_schema(
        domain.kind, extra=domain.schema_extra, shared=domain.shared, required=domain.required, uses=True
    )
    out: dict[str, Any] = _with_periods(copy.deepcopy(schema))
    return out


def _with_periods(node: Any) -> Any:
    """Allow ``effective_from``, ``effective_to`` and ``mode`` on the policy and on every object with an ``id``."""
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict) and "id" in props and node.get("type") == "object":
            props.update(PERIODS)
        for value in node.values():
            _with_periods(value)
    elif isinstance(node, list):
        for item in node:
            _with_periods(item)
    return node


def write_schemas(domains: Mapping[str, Domain], directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema as ``<kind>.schema.json`` into ``directory``; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, schema in schemas(domains).items():
        path = directory / f"{kind}.schema.json"
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written
