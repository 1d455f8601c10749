"""Stage 2, validate: a loaded ``Document`` into a checked ``Policy``, or every error at once.

Two passes, each collecting all errors sorted by location:

1. ``schema``: the JSON Schema of the policy's kind (``jsonschema``), errors translated
   into plain words with the offending key or value located;
2. ``semantics``: what a schema cannot say — duplicate rule ids, expressions that do not
   parse or type-check, references to unknown facts, scores, scorers or outputs, values
   an output does not allow, overlapping rows in a ``unique`` table, percentile bands that
   do not cover 0–100, outputs set by two steps, and dependency cycles between steps.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jsonschema

from engine.core import cells
from engine.core.expr import (
    BOOL,
    DOUBLE,
    DURATION,
    DYN,
    INT,
    STRING,
    TIMESTAMP,
    ExprError,
    ListType,
    Node,
    ObjectType,
    Type,
    check,
    parse,
    references,
)
from engine.core.expr import values as enum_values
from engine.core.expr.cost import BUDGET, MAX_ITEMS, Cost, estimate
from engine.core.expr.functions import Signature
from engine.core.expr.types import MapType
from engine.core.load import DocPath, Document
from engine.core.model import (
    BandDecl,
    BandsDecl,
    Cell,
    FactDecl,
    OutputDecl,
    Policy,
    RuleDecl,
    ScoreDecl,
    Step,
    TableDecl,
    UseDecl,
)
from engine.core.schema import domain_schema
from engine.errors import Location, PolicyError, PolicyErrors, did_you_mean
from engine.hookspecs import Registry

FACT_EXPR_TYPES: dict[str, Type] = {
    "string": STRING,
    "integer": INT,
    "number": DOUBLE,
    "boolean": BOOL,
    "timestamp": TIMESTAMP,
}
_validators: dict[tuple[Any, ...], jsonschema.protocols.Validator] = {}


def expr_type(kind: str, items: str | None = None) -> Type:
    """The expression-language type of a fact or output declared as ``kind``."""
    if kind == "list":
        return ListType(FACT_EXPR_TYPES.get(items or "", DYN) if items else STRING)
    return FACT_EXPR_TYPES[kind]


def validate(doc: Document, registry: Registry) -> Policy:
    """Check one loaded policy file. Raises ``PolicyErrors`` with every error found."""
    errors = check_schema(doc, registry)
    if errors:
        raise PolicyErrors(errors)
    checker = Semantics(doc, registry)
    policy = checker.run()
    if checker.errors:
        raise PolicyErrors(checker.errors)
    return policy


# --------------------------------------------------------------------------------------------
# pass 1: schema
# --------------------------------------------------------------------------------------------


def check_schema(doc: Document, registry: Registry) -> list[PolicyError]:
    data = doc.data
    if not isinstance(data, dict):
        return [
            PolicyError(
                "a policy file must be a mapping of keys to values",
                doc.location(()),
                code="P010",
                hint="start the file with `kind:` and the policy's domain",
            )
        ]
    kind = data.get("kind")
    domains = registry.domains
    if not isinstance(kind, str) or kind not in domains:
        where = doc.location(("kind",)) if "kind" in data else doc.location(())
        shown = f"`{kind}`" if kind is not None else "nothing"
        hint = did_you_mean(str(kind), domains) or "write one of " + ", ".join(f"`{k}`" for k in domains)
        return [PolicyError(f"unknown policy kind {shown}", where, code="P011", hint=hint)]
    domain = domains[kind]
    cache_key = (kind, id(domain.schema_extra), domain.shared, domain.required)  # the same across registries
    validator = _validators.get(cache_key)
    if validator is None:
        validator = _validators[cache_key] = jsonschema.Draft202012Validator(domain_schema(domain))
    seen: set[tuple[DocPath, str]] = set()
    out = []
    for err in validator.iter_errors(data):
        for located in _translate(doc, err):
            key = (located.location.path, located.code)
            if key not in seen:
                seen.add(key)
                out.append(located)
    # `output:` for `outputs:` is one mistake, not two: drop "missing `outputs`" when a
    # misspelt key next to it is already reported with "did you mean `outputs`?"
    suggested = {e.hint for e in out if e.code == "P020" and e.hint}
    return [e for e in out if not (e.code == "P021" and f"did you mean `{e.message.split('`')[1]}`?" in suggested)]


def _translate(doc: Document, err: jsonschema.ValidationError) -> list[PolicyError]:
    path: DocPath = tuple(err.absolute_path)
    where = doc.location(path)
    value = err.instance
    schema: dict[str, Any] = err.schema if isinstance(err.schema, dict) else {}
    expected: Any = err.validator_value
    if err.validator == "additionalProperties" and isinstance(value, dict):
        allowed = list(schema.get("properties", {}))
        known = set(allowed)
        return [
            PolicyError(
                f"unknown key `{k}`",
                doc.location((*path, k), key=True),
                code="P020",
                hint=did_you_mean(k, allowed)
                or (
                    "inside `{...}`, text with a comma must be in double quotes"
                    if value[k] is None and " " in k
                    else "allowed here: " + ", ".join(f"`{a}`" for a in allowed)
                ),
            )
            for k in value
            if k not in known
        ]
    if err.validator == "required":
        missing = str(err.message).split("'")[1] if "'" in err.message else "?"
        return [PolicyError(f"missing key `{missing}`", where, code="P021", hint=f"add `{missing}:` here")]
    if err.validator in ("enum", "const"):
        return [_not_a_choice(expected if err.validator == "enum" else [expected], value, where)]
    if err.validator == "type":
        wanted: list[str] = expected if isinstance(expected, list) else [expected]
        hint = _type_hint(wanted, value, schema)
        if "string" in wanted and isinstance(value, int | float) and "description" in schema:
            hint = f"write it with its unit, {schema['description']}"  # `period: 5` for `5y`
        return [
            PolicyError(
                f"expected {' or '.join(_TYPE_WORDS.get(w, w) for w in wanted)}, found {_describe(value)}",
                where,
                code="P023",
                hint=hint,
            )
        ]
    if err.validator == "pattern":
        meant = did_you_mean(str(value), [str(e) for e in schema.get("examples", ())])
        if "description" in schema:
            return [
                PolicyError(
                    f"`{value}` is not written as expected", where, code="P024", hint=meant or schema["description"]
                )
            ]
        dash = re.fullmatch(str(expected), "a-b") is not None
        letters = "lowercase letters, digits, `-` and `_`" if dash else "lowercase letters, digits and `_`"
        if (
            meant is None
            and not dash
            and "-" in str(value)
            and re.fullmatch(str(expected), str(value).replace("-", "_"))
        ):
            meant = f"did you mean `{str(value).replace('-', '_')}`?"
        return [
            PolicyError(
                f"`{value}` is not a valid name",
                where,
                code="P024",
                hint=meant or f"use {letters}, starting with a letter",
            )
        ]
    if err.validator in ("oneOf", "anyOf") and isinstance(value, dict):
        return [_one_of(err, where, value, doc, path)]
    if err.validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return [
            PolicyError(
                f"`{value}` is out of range", where, code="P025", hint=_range_hint(err.validator, expected, value)
            )
        ]
    if err.validator in ("minItems", "minProperties"):
        return [PolicyError("this must not be empty", where, code="P026", hint="add at least one entry")]
    if err.validator == "uniqueItems":
        items = value if isinstance(value, list) else []
        twice = next((v for i, v in enumerate(items) if v in items[:i]), None)
        what = f"`{twice}` is listed twice" if twice is not None else "a value is listed twice"
        return [PolicyError(what, where, code="P027", hint="list each value once")]
    return [PolicyError(str(err.message), where, code="P029")]


def _not_a_choice(choices: Sequence[Any], value: Any, where: Location) -> PolicyError:
    """P022: ``value`` is none of ``choices``; the text of a number or boolean in quotes, or
    YAML's `null` (nothing) for the word, is told as such."""
    words = [str(c) for c in choices]
    same = next((c for c in choices if str(c) == str(value) and type(c) is not type(value)), None)
    if same is not None and isinstance(value, str):
        return PolicyError(
            f'found the text `"{value}"` (in quotes)', where, code="P022", hint=f"write `{same}` without quotes"
        )
    if value is None:
        hint = (
            'write `"null"` in double quotes: without them YAML reads `null` as nothing'
            if "null" in words
            else "write one of " + ", ".join(f"`{w}`" for w in words)
        )
        return PolicyError(
            "nothing is written here (YAML reads `null` or `~` as nothing)", where, code="P022", hint=hint
        )
    return PolicyError(
        f"`{value}` is not allowed here",
        where,
        code="P022",
        hint=did_you_mean(str(value), words) or "write one of " + ", ".join(f"`{w}`" for w in words),
    )


def _range_hint(bound: str, limit: Any, value: Any) -> str:
    """What the range allows; a fraction (at most 1) written as a percentage is shown as one."""
    said = {
        "minimum": f"the minimum is {limit}",
        "maximum": f"the maximum is {limit}",
        "exclusiveMinimum": f"it must be more than {limit}",
        "exclusiveMaximum": f"it must be less than {limit}",
    }[bound]
    if bound.endswith("aximum") and isinstance(limit, int | float) and limit <= 1 and isinstance(value, int | float):
        if value >= 2 and value <= 100:
            return f"{said}: a fraction, so write `{value / 100:g}` for {value:g}%"
        return f"{said}: a fraction, like `0.75` for 75%"
    return said


_TYPE_WORDS = {
    "string": "text",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "object": "a mapping (`key: value` lines)",
    "array": "a list (`- item` lines)",
}


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, str) and (value.strip().lower() in _TRUTHS or _PLAIN_NUMBER.fullmatch(value)):
        return f'the text `"{value}"` (in quotes)'  # it would be a boolean or a number without them
    return f"`{value}`"


def _type_hint(wanted: Sequence[str], value: Any = None, schema: Mapping[str, Any] | None = None) -> str:
    if "array" in wanted:
        return "write a list, one `- item` per line or `[a, b]`"
    if "object" in wanted:
        return "write `key: value` lines indented under this key"
    if "string" in wanted:
        return 'put the text in double quotes, like `"high"`'
    kind = "boolean" if "boolean" in wanted else "integer" if wanted == ["integer"] else "number"
    return value_hint(kind, value, (schema or {}).get("maximum"))


_LEADING_NUMBER = re.compile(r"\s*([-+]?\d+(?:\.\d+)?)\s*(%|[^\d\s].*)?$")
_PLAIN_NUMBER = re.compile(r"\s*[-+]?\d+(?:\.\d+)?\s*")
_TRUTHS = {"true": "true", "false": "false", "yes": "true", "no": "false", "on": "true", "off": "false"}
_KIND_WORDS = {"integer": "a whole number", "number": "a number", "boolean": "true or false", "string": "text"}


def value_hint(kind: str, value: Any, maximum: Any = None) -> str:
    """What to write for a value of ``kind`` (a declared type: boolean, integer, number, ...)
    in place of ``value``, from what was written: the number without its unit or `%`, the
    fraction a percentage means where the value is at most 1, the boolean without quotes."""
    if kind == "boolean":
        meant = _TRUTHS.get(value.strip().lower()) if isinstance(value, str) else None
        if meant is not None:
            return f"write `{meant}` without quotes"
        return "write `true` or `false`, without quotes"
    if kind in ("integer", "number"):
        m = _LEADING_NUMBER.match(str(value).translate(_FULL_WIDTH)) if isinstance(value, str) else None
        if m is not None:
            number, rest = m.group(1), (m.group(2) or "").strip()
            if rest == "%" and isinstance(maximum, int | float) and maximum <= 1:
                fraction = float(number) / 100
                return f"write `{fraction:g}`: a fraction from 0 to {maximum:g} ({value} is {fraction:g})"
            if rest == "%":
                return f"write `{number}` without `%`"
            if rest:
                return f"write `{number}` without `{rest}`: only the number"
            return f"write `{number}` without quotes"
        if isinstance(maximum, int | float) and maximum <= 1:
            return f"write a number from 0 to {maximum:g} without quotes, like `0.75`"
        if kind == "integer":
            return "write a whole number without quotes, like `7`"
        return "write a number without quotes, like `80`"
    return f"write {_KIND_WORDS.get(kind, f'a {kind}')}"


# full-width digits, full stop and percent sign, as an input method types them
_FULL_WIDTH = str.maketrans({0xFF10 + d: str(d) for d in range(10)} | {0xFF0E: ".", 0xFF05: "%"})


def _one_of(
    err: jsonschema.ValidationError, where: Location, value: dict[str, Any], doc: Document, path: DocPath
) -> PolicyError:
    expected: Any = err.validator_value
    options = [s.get("required", []) for s in expected]
    keys = [k[0] for k in options if k]
    present = [k for k in keys if k in value]
    if not present:  # `detecter:` for `detector:` is the mistake, not a missing key
        for k in value:
            meant = did_you_mean(str(k), keys) if k not in keys else None
            if meant is not None:
                return PolicyError(f"unknown key `{k}`", doc.location((*path, k), key=True), code="P020", hint=meant)
    if len(present) > 1:
        return PolicyError(
            f"write only one of {' and '.join(f'`{k}`' for k in present)}",
            where,
            code="P028",
            hint="remove one of them",
        )
    return PolicyError(
        f"missing one of {' or '.join(f'`{k}`' for k in keys)}", where, code="P021", hint=f"add `{keys[0]}:` here"
    )


# --------------------------------------------------------------------------------------------
# pass 2: semantics
# --------------------------------------------------------------------------------------------


class Semantics:
    """Pass 2: the meaning of a schema-valid document; domains' ``check`` functions receive it."""

    def __init__(self, doc: Document, registry: Registry) -> None:
        self.doc = doc
        self.data: dict[str, Any] = doc.data
        self.registry = registry
        self.errors: list[PolicyError] = []
        self.rule_ids: dict[str, Location] = {}
        self.functions = plugin_signatures(registry)

    def error(
        self,
        message: str,
        path: DocPath,
        code: str,
        hint: str | None = None,
        *,
        key: bool = False,
        related: Location | None = None,
    ) -> None:
        self.errors.append(
            PolicyError(message, self.doc.location(path, key=key), code=code, hint=hint, related=related)
        )

    def run(self) -> Policy:
        facts = {name: self.fact(name, spec) for name, spec in self.data.get("facts", {}).items()}
        outputs = {name: self.output(name, spec) for name, spec in self.data.get("outputs", {}).items()}
        self.env = {
            "customer": ObjectType("customer", {n: expr_type(f.type, f.items) for n, f in facts.items()}),
            "now": TIMESTAMP,
        }
        scores = {name: self.score(name, spec, facts) for name, spec in self.data.get("scores", {}).items()}
        self.env["scores"] = ObjectType("scores", dict.fromkeys(scores, DOUBLE))
        self.env["outputs"] = ObjectType("outputs", {n: expr_type(o.type) for n, o in outputs.items()})
        self.facts, self.outputs, self.scores = facts, outputs, scores
        # the texts a name is declared to take: a literal compared with it must be one of them
        self.enums: dict[str, tuple[Any, ...]] = {
            **{f"customer.{n}": f.allowed for n, f in facts.items() if f.type == "string" and f.allowed},
            **{f"outputs.{n}": o.values for n, o in outputs.items() if o.type == "string" and o.values},
        }
        steps: list[Step] = []
        for i, spec in enumerate(self.data.get("bands", [])):
            steps.append(self.bands(("bands", i), spec))
        for i, spec in enumerate(self.data.get("tables", [])):
            steps.append(self.table(("tables", i), spec))
        ordered = self.order(steps)
        uses = {
            name: UseDecl(name, tuple(path.split(".")), self.doc.location(("uses", name), key=True))
            for name, path in self.data.get("uses", {}).items()
        }
        domain = self.registry.domains[self.data["kind"]]
        extra = domain.check(self) if domain.check is not None else None
        meta: dict[str, str] = {
            k: str(self.data[k]) for k in ("title", "description", "owner", "clause") if k in self.data
        }
        return Policy(
            kind=self.data["kind"],
            id=self.data["id"],
            path=self.doc.path,
            digest=self.doc.digest,
            location=self.doc.location(()),
            facts=facts,
            scores=scores,
            outputs=outputs,
            steps=tuple(ordered),
            env=dict(self.env),
            metadata=meta,
            uses=uses,
            extra=extra,
        )

    # -- declarations ------------------------------------------------------------------------

    def fact(self, name: str, spec: dict[str, Any]) -> FactDecl:
        path: DocPath = ("facts", name)
        kind = spec["type"]
        lo, hi = spec.get("min"), spec.get("max")
        if lo is not None and hi is not None and lo > hi:
            self.error(f"`min` {lo} is above `max` {hi}", (*path, "min"), "P101", "swap the two figures")
        if "items" in spec and kind != "list":
            self.error("`items` only applies to `type: list`", (*path, "items"), "P102", "remove `items`")
        if ("min" in spec or "max" in spec) and kind not in ("integer", "number"):
            self.error(f"`min` and `max` only apply to numbers, not `{kind}`", path, "P102", "remove them")
        decl = FactDecl(
            name=name,
            type=kind,
            location=self.doc.location(path, key=True),
            items=spec.get("items"),
            required=bool(spec.get("required", False)),
            nullable=bool(spec.get("nullable", False)),
            default=spec.get("default"),
            has_default="default" in spec,
            min=lo,
            max=hi,
            allowed=tuple(spec["allowed"]) if "allowed" in spec else None,
            max_length=spec.get("max_length"),
            sensitive=bool(spec.get("sensitive", False)),
            description=str(spec.get("description", "")),
        )
        if decl.has_default and not _fits(kind, decl.default):
            self.error(
                f"default `{decl.default}` is not {_KIND_WORDS.get(kind, f'a {kind}')}",
                (*path, "default"),
                "P103",
                value_hint(kind, decl.default, decl.max),
            )
        return decl

    def output(self, name: str, spec: dict[str, Any]) -> OutputDecl:
        path: DocPath = ("outputs", name)
        values = tuple(spec["values"]) if "values" in spec else None
        kind = spec["type"]
        for i, v in enumerate(values or ()):
            if kind != "list" and not _fits(kind, v):
                self.error(
                    f"value `{v}` is not {_KIND_WORDS.get(kind, f'a {kind}')}",
                    (*path, "values", i),
                    "P104",
                    value_hint(kind, v),
                )
        return OutputDecl(
            name=name,
            type=kind,
            location=self.doc.location(path, key=True),
            values=values,
            description=str(spec.get("description", "")),
        )

    def score(self, name: str, spec: dict[str, Any], facts: Mapping[str, FactDecl]) -> ScoreDecl:
        path: DocPath = ("scores", name)
        where = self.doc.location(path, key=True)
        desc = str(spec.get("description", ""))
        if "expr" in spec:
            node = self.expression((*path, "expr"), spec["expr"], DOUBLE, allowed_roots=("customer", "now"))
            return ScoreDecl(name, where, expr=node, expr_text=spec["expr"], description=desc)
        scorer_name = spec["scorer"]
        args = dict(spec.get("args", {}))
        scorer = self.registry.scorers.get(scorer_name)
        if scorer is None:
            self.error(
                f"no plugin provides the scorer `{scorer_name}`",
                (*path, "scorer"),
                "P110",
                did_you_mean(scorer_name, self.registry.scorers)
                or "install the plugin that provides it, or see `charter plugins`",
            )
            return ScoreDecl(name, where, scorer=scorer_name, args=args, description=desc)
        for fact, kind in scorer.reads.items():
            decl = facts.get(fact)
            if decl is None:
                self.error(
                    f"scorer `{scorer_name}` reads the fact `{fact}`, which this policy does not declare",
                    (*path, "scorer"),
                    "P111",
                    f"declare it under `facts:` as `{fact}: {{type: {kind}}}`",
                )
            elif decl.type != kind and not (kind == "number" and decl.type == "integer"):
                self.error(
                    f"scorer `{scorer_name}` reads `{fact}` as a {kind}, but it is declared as {decl.type}",
                    (*path, "scorer"),
                    "P112",
                    f"declare `{fact}` with `type: {kind}`",
                )
        for arg in args:
            if arg not in scorer.args:
                self.error(
                    f"scorer `{scorer_name}` takes no argument `{arg}`",
                    (*path, "args", arg),
                    "P113",
                    did_you_mean(arg, scorer.args) or "arguments: " + ", ".join(scorer.args),
                    key=True,
                )
        return ScoreDecl(name, where, scorer=scorer_name, args={**scorer.args, **args}, description=desc)

    # -- expressions -------------------------------------------------------------------------

    def expression(
        self,
        path: DocPath,
        text: Any,
        want: Type | None,
        allowed_roots: Sequence[str] | None = None,
        *,
        env: Mapping[str, Type] | None = None,
    ) -> Node | None:
        """Parse and type-check the expression at ``path``; None (and a located error) when wrong."""
        if isinstance(text, bool):
            text = "true" if text else "false"
        enums = getattr(self, "enums", {}) if env is None else {}
        try:
            node = parse(str(text))
            if env is None:
                env = self.env if allowed_roots is None else {k: v for k, v in self.env.items() if k in allowed_roots}
            got = check(node, env, self.functions)
        except ExprError as exc:
            self.errors.append(
                PolicyError(exc.message, self.doc.text_location(path, exc.offset), code=exc.code, hint=exc.hint)
            )
            return None
        if want is not None and got != want and got != DYN and not (want == DOUBLE and got == INT):
            self.error(
                f"this condition gives a {got}, not a {want}",
                path,
                "E150",
                "compare with `==`, `<`, `>=` ... to get true or false" if want == BOOL else None,
            )
            return None
        for lit, name in enum_values.never(node, enums):
            message, hint = enum_values.never_message(lit.value, name, enums[name])
            self.errors.append(PolicyError(message, self.doc.text_location(path, lit.start), code="E130", hint=hint))
            return None
        bound = estimate(node, lambda name: _length(env, getattr(self, "facts", {}), name))
        if bound.steps > BUDGET:
            self.errors.append(_too_costly(bound, str(text), self.doc.text_location(path, _offset(bound))))
            return None
        return node

    # -- steps -------------------------------------------------------------------------------

    def claim_id(self, rule_id: str, path: DocPath) -> None:
        where = self.doc.location((*path, "id"))
        first = self.rule_ids.get(rule_id)
        if first is not None:
            self.error(
                f"rule id `{rule_id}` is used twice", (*path, "id"), "P120", "give each rule its own id", related=first
            )
        else:
            self.rule_ids[rule_id] = where

    def known_output(self, name: str, path: DocPath) -> OutputDecl | None:
        decl = self.outputs.get(name)
        if decl is None:
            self.error(
                f"unknown output `{name}`",
                path,
                "P121",
                did_you_mean(name, self.outputs) or "declare it under `outputs:`",
            )
        return decl

    def check_value(self, out: OutputDecl, value: Any, path: DocPath) -> None:
        if out.type == "list":
            values = value if isinstance(value, list) else [value]
        else:
            values = [value]
            if not _fits(out.type, value):
                self.error(
                    f"{_describe(value)} is not {_KIND_WORDS.get(out.type, f'a {out.type}')},"
                    f" as output `{out.name}` requires",
                    path,
                    "P122",
                    value_hint(out.type, value),
                )
                return
        for v in values:
            if out.values is not None and v not in out.values:
                words = [str(x) for x in out.values]
                self.error(
                    f"`{v}` is not a value of output `{out.name}`",
                    path,
                    "P123",
                    did_you_mean(str(v), words) or "write one of " + ", ".join(f"`{w}`" for w in words),
                )

    def bands(self, path: DocPath, spec: dict[str, Any]) -> BandsDecl:
        self.claim_id(spec["id"], path)
        out = self.known_output(spec["output"], (*path, "output"))
        if spec["score"] not in self.scores:
            self.error(
                f"unknown score `{spec['score']}`",
                (*path, "score"),
                "P124",
                did_you_mean(spec["score"], self.scores) or "declare it under `scores:`",
            )
        items = []
        for i, b in enumerate(spec["bands"]):
            bpath = (*path, "bands", i)
            self.claim_id(b["id"], bpath)
            if out is not None:
                self.check_value(out, b["value"], (*bpath, "value"))
            if b["from"] >= b["to"]:
                self.error(
                    f"band `{b['id']}` runs from {b['from']} to {b['to']}",
                    (*bpath, "from"),
                    "P125",
                    "`from` must be below `to`; `from: 80, to: 100` is the top 20%",
                )
            items.append(
                BandDecl(
                    b["id"],
                    b["value"],
                    float(b["from"]),
                    float(b["to"]),
                    self.doc.location(bpath),
                    str(b.get("message", "")),
                    str(b.get("clause", "")),
                )
            )
        self.check_tiling(path, items)
        return BandsDecl(
            spec["id"],
            spec["output"],
            spec["score"],
            tuple(items),
            self.doc.location(path),
            str(spec.get("clause", "")),
        )

    def check_tiling(self, path: DocPath, bands: list[BandDecl]) -> None:
        ordered = sorted(bands, key=lambda b: b.low)
        edge, prev = 0.0, None
        for b in ordered:
            if b.low > edge:
                what = f"between {edge:g} and {b.low:g}"
                self.errors.append(
                    PolicyError(
                        f"no band covers percentiles {what}",
                        b.location,
                        code="P126",
                        hint=f"set `from: {edge:g}` here or add a band for {what}",
                        related=prev.location if prev else None,
                    )
                )
            elif b.low < edge and prev is not None:
                self.errors.append(
                    PolicyError(
                        f"bands `{prev.id}` and `{b.id}` overlap from {b.low:g} to {edge:g}",
                        b.location,
                        code="P127",
                        hint=f"set `from: {edge:g}` here",
                        related=prev.location,
                    )
                )
            edge, prev = max(edge, b.high), b
        if edge < 100 and prev is not None:
            self.errors.append(
                PolicyError(
                    f"no band covers percentiles {edge:g} to 100",
                    prev.location,
                    code="P126",
                    hint="the top band needs `to: 100`",
                )
            )

    def table(self, path: DocPath, spec: dict[str, Any]) -> TableDecl:
        self.claim_id(spec["id"], path)
        names = tuple(spec["outputs"]) if "outputs" in spec else (spec["output"],)
        key = "outputs" if "outputs" in spec else "output"
        outs = [self.known_output(n, (*path, key)) for n in names]
        hit = spec["hit"]
        inputs: dict[str, Node] = {}
        for name, text in spec.get("inputs", {}).items():
            node = self.expression((*path, "inputs", name), text, None)
            if node is not None:
                inputs[name] = node
        if hit == "priority" and any(o is not None and o.values is None for o in outs):
            self.error(
                "a `priority` table needs its output's `values` listed, highest priority first",
                (*path, "hit"),
                "P130",
                "add `values: [...]` to the output, or use `hit: first`",
            )
        if hit == "collect" and any(o is not None and o.type != "list" for o in outs):
            self.error(
                "a `collect` table gathers every match into a list",
                (*path, "hit"),
                "P131",
                "declare the output with `type: list`, or use `hit: first`",
            )
        rules = tuple(self.rule((*path, "rules", i), r, names, outs, spec) for i, r in enumerate(spec["rules"]))
        default = None
        if "default" in spec:
            default = self.outcome((*path, "default"), spec["default"], names, outs)
        if hit == "unique":
            for a, b in cells.overlaps(rules, list(spec.get("inputs", {}))):
                self.errors.append(
                    PolicyError(
                        f"rows `{a.id}` and `{b.id}` can both match in this `unique` table",
                        b.location,
                        code="P132",
                        related=a.location,
                        hint="make their `match` cells exclusive, or use `hit: first`",
                    )
                )
        return TableDecl(
            spec["id"],
            hit,
            names,
            rules,
            self.doc.location(path),
            inputs,
            dict(spec.get("inputs", {})),
            default,
            str(spec.get("clause", "")),
        )

    def cell_values(self, path: DocPath, name: str, source: str, cell: Cell) -> None:
        """P144: a cell's text that its input (an output or fact with declared values) never takes."""
        declared = getattr(self, "enums", {}).get(source)
        if declared is None or cell.op not in ("eq", "ne", "in"):
            return
        for value in cell.values if cell.op == "in" else (cell.value,):
            if isinstance(value, str) and value not in declared:
                then = "this row " + ("always matches" if cell.op == "ne" else "never matches")
                message, hint = enum_values.never_message(value, source, declared, then)
                self.error(f"input `{name}`: {message}", path, "P144", hint)
                return

    def rule(
        self,
        path: DocPath,
        spec: dict[str, Any],
        names: tuple[str, ...],
        outs: list[OutputDecl | None],
        table: dict[str, Any],
    ) -> RuleDecl:
        self.claim_id(spec["id"], path)
        when = None
        if "when" in spec:
            if table["hit"] == "unique":
                self.error(
                    "rows of a `unique` table are written with `match:`, not `when:`",
                    (*path, "when"),
                    "P133",
                    "declare `inputs:` on the table and give each row `match: {input: value}`",
                    key=True,
                )
            else:
                when = self.expression((*path, "when"), spec["when"], BOOL)
        match: dict[str, Cell] = {}
        declared_inputs = table.get("inputs", {})
        for name, raw in spec.get("match", {}).items():
            if name not in declared_inputs:
                self.error(
                    f"unknown input `{name}`",
                    (*path, "match", name),
                    "P134",
                    did_you_mean(name, declared_inputs) or "declare it under the table's `inputs:`",
                    key=True,
                )
                continue
            try:
                match[name] = cells.parse_cell(raw)
            except ValueError as exc:
                self.error(str(exc), (*path, "match", name), "P135", cells.CELL_HINT)
                continue
            self.cell_values((*path, "match", name), name, str(declared_inputs[name]).strip(), match[name])
        if "when" not in spec and "match" not in spec:
            self.error("a rule needs `when:` or `match:`", path, "P136", 'write `when: "true"` for a catch-all rule')
        elif "when" in spec and "match" in spec and table["hit"] != "unique":
            self.error(
                "a rule has `when:` or `match:`, not both",
                (*path, "match"),
                "P138",
                'fold the match into the condition, e.g. `when: outputs.value_tier == "high" && ...`',
                key=True,
            )
        then = self.outcome((*path, "then"), spec["then"], names, outs)
        return RuleDecl(
            spec["id"],
            self.doc.location(path),
            then,
            when,
            str(spec.get("when", "")),
            match,
            str(spec.get("message", "")),
            str(spec.get("clause", "")),
        )

    def outcome(self, path: DocPath, raw: Any, names: tuple[str, ...], outs: list[OutputDecl | None]) -> dict[str, Any]:
        if len(names) > 1 or isinstance(raw, dict):
            if not isinstance(raw, dict):
                self.error(
                    "this table sets several outputs: write `{output: value, ...}`",
                    path,
                    "P137",
                    "name each output: " + ", ".join(f"`{n}: ...`" for n in names),
                )
                return {}
            result = {}
            for key, value in raw.items():
                if key not in names:
                    self.error(
                        f"this table does not set `{key}`",
                        (*path, key),
                        "P139",
                        did_you_mean(key, names) or "outputs: " + ", ".join(names),
                        key=True,
                    )
                    continue
                out = outs[names.index(key)]
                if out is not None:
                    self.check_value(out, value, (*path, key))
                result[key] = value
            return result
        if outs[0] is not None:
            self.check_value(outs[0], raw, path)
        return {names[0]: raw}

    # -- order -------------------------------------------------------------------------------

    def order(self, steps: list[Step]) -> list[Step]:
        producer: dict[str, Step] = {}
        for step in steps:
            for name in step.outputs:
                if name in producer:
                    first = producer[name]
                    self.errors.append(
                        PolicyError(
                            f"output `{name}` is set by both `{first.id}` and `{step.id}`",
                            step.location,
                            code="P140",
                            related=first.location,
                            hint="let one table set each output",
                        )
                    )
                else:
                    producer[name] = step
        unknown_refs = any(e.code == "P121" for e in self.errors)  # a misspelt output explains the unset one
        for name, out in self.outputs.items():
            if name not in producer and not unknown_refs:
                self.errors.append(
                    PolicyError(
                        f"no table sets output `{name}`",
                        out.location,
                        code="P141",
                        hint="add a table for it or remove the declaration",
                    )
                )
        deps = {s.id: {producer[n].id for n in _reads(s) if n in producer} - {s.id} for s in steps}
        self_loops = [s for s in steps if any(producer.get(n) is s for n in _reads(s))]
        for s in self_loops:
            self.errors.append(
                PolicyError(
                    f"`{s.id}` reads an output it sets itself",
                    s.location,
                    code="P142",
                    hint="read another table's output instead",
                )
            )
        return _toposort(steps, deps, self.errors)


_TYPE_BY_NAME: dict[str, Type] = {
    "int": INT,
    "double": DOUBLE,
    "string": STRING,
    "bool": BOOL,
    "timestamp": TIMESTAMP,
    "duration": DURATION,
}


def plugin_signatures(registry: Registry) -> tuple[Signature, ...]:
    """The plugins' expression functions as the checker's signatures."""
    return tuple(
        Signature(
            f.name,
            f.method,
            tuple(_TYPE_BY_NAME[t] for t in f.params),
            _TYPE_BY_NAME[f.result],
            f.func,
            plugin=f.plugin or "unnamed",  # the registry always names it; set, it marks a plugin's function
        )
        for f in registry.functions.values()
    )


def _reads(step: Step) -> set[str]:
    """The outputs a step reads (``outputs.NAME`` in its conditions and inputs)."""
    nodes: list[Node | None] = []
    if isinstance(step, TableDecl):
        nodes.extend(step.inputs.values())
        nodes.extend(r.when for r in step.rules)
    found: set[str] = set()
    for node in nodes:
        if node is not None:
            found.update(ref.split(".")[1] for ref in references(node) if ref.startswith("outputs."))
    return found


def _toposort(steps: list[Step], deps: dict[str, set[str]], errors: list[PolicyError]) -> list[Step]:
    by_id = {s.id: s for s in steps}
    done: list[Step] = []
    placed: set[str] = set()
    pending = list(steps)
    while pending:
        ready = [s for s in pending if deps[s.id] <= placed]
        if not ready:
            cycle = sorted(pending, key=lambda s: s.location)
            a, b = cycle[0], cycle[-1]
            errors.append(
                PolicyError(
                    "tables " + ", ".join(f"`{s.id}`" for s in cycle) + " read each other's outputs",
                    a.location,
                    code="P143",
                    related=b.location,
                    hint="break the cycle: one of them must not read the other's output",
                )
            )
            return done + pending
        for s in ready:  # keep file order among independent steps
            done.append(s)
            placed.add(s.id)
            pending.remove(s)
    del by_id
    return done


_PY_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "timestamp": lambda v: isinstance(v, str),
    "list": lambda v: isinstance(v, list),
}


def _fits(kind: str, value: Any) -> bool:
    return _PY_TYPES[kind](value)


def _length(env: Mapping[str, Type], facts: Mapping[str, FactDecl], name: str) -> int | None:
    """What the cost model knows of the value at ``name`` (``cost.Lengths``): a declared list's
    most items, 1 for a declared value that is not a list, None when it is not known."""
    root, *rest = name.split(".")
    t: Type | None = env.get(root)
    for part in rest:
        t = t.fields.get(part) if isinstance(t, ObjectType) else None
    if t is None or t == DYN:
        return None
    if isinstance(t, ListType):
        decl = facts.get(rest[0]) if root == "customer" and len(rest) == 1 else None
        return decl.max_length if decl is not None and decl.max_length is not None else MAX_ITEMS
    return None if isinstance(t, MapType | ObjectType) else 1


def _offset(bound: Cost) -> int:
    return bound.costliest.start if bound.costliest is not None else 0


def _too_costly(bound: Cost, text: str, where: Location) -> PolicyError:
    """E160: the expression's bound of work is over the budget, at the comprehension costing most."""
    macro = bound.costliest
    if macro is None:
        return PolicyError(
            f"this expression may take up to {bound.steps:,} steps for one decision, more than the {BUDGET:,} allowed",
            where,
            code="E160",
            hint="split it into smaller conditions",
        )
    term = text[macro.start : macro.end]
    assert macro.target is not None
    walked = text[macro.target.start : macro.target.end]
    return PolicyError(
        f"`{term}` may take up to {bound.steps:,} steps for one decision, more than the {BUDGET:,} allowed:"
        f" it walks up to {bound.length:,} items of `{walked}`, each with all the work inside it",
        where,
        code="E160",
        hint="declare a smaller `max_length` on the list fact it walks (a list may have up to "
        f"{MAX_ITEMS:,} items), or do not nest `{macro.name}` in another comprehension",
    )
