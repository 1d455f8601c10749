"""Request shapes: the nested facts a domain with its own semantics reads, checked before it runs.

A shape is a cerberus schema (the reference checker, which names every broken field). As
for customer facts, a compiled check built from the same schema runs first and cerberus
runs only to explain a rejection, so a good request costs a few dictionary lookups.
Supported rules: ``type`` (string, integer, number, boolean, list, dict), ``required``,
``nullable``, ``allowed``, ``schema`` (of a dict's keys or a list's items),
``valuesrules`` and ``check_with: timestamp``. Keys a shape does not name are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from engine.core.facts import FactValidator, parse_timestamp
from engine.errors import FactError, FactErrors, did_you_mean

Check = Callable[[Any], bool]

_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "list": (list, tuple),
    "dict": (dict,),
}


def _is_timestamp(v: Any) -> bool:
    try:
        parse_timestamp(v)
    except (ValueError, TypeError):
        return False
    return True


def _compile_rule(rule: Mapping[str, Any]) -> Check:
    tests: list[Check] = []
    kind = rule.get("type")
    if kind is not None:
        types = _PY_TYPES[kind]
        if kind in ("integer", "number"):
            tests.append(lambda v: isinstance(v, types) and not isinstance(v, bool))
        elif kind == "string":
            tests.append(lambda v: type(v) is str or isinstance(v, str))
        elif kind == "dict":
            tests.append(lambda v: type(v) is dict or isinstance(v, dict))
        else:
            tests.append(lambda v: isinstance(v, types))
    if rule.get("check_with") == "timestamp":
        tests.append(_is_timestamp)
    if "allowed" in rule:
        allowed = frozenset(rule["allowed"])
        tests.append(lambda v: all(x in allowed for x in v) if isinstance(v, (list, tuple)) else v in allowed)
    sub = rule.get("schema")
    if sub is not None and kind == "dict":
        tests.append(compile_shape(sub))
    elif sub is not None and kind == "list":
        item = _compile_rule(sub)
        tests.append(lambda v: all(item(x) for x in v))
    values = rule.get("valuesrules")
    if values is not None:
        value = _compile_rule(values)
        tests.append(lambda v: all(isinstance(k, str) and value(x) for k, x in v.items()))
    return _nullable(_all(tests), bool(rule.get("nullable", False)))


def _all(tests: list[Check]) -> Check:
    """One check passing when all of ``tests`` pass (unrolled: a request runs this per field)."""
    if not tests:
        return lambda v: True
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda v: first(v) and second(v)
    return lambda v: all(t(v) for t in tests)


def _nullable(body: Check, nullable: bool) -> Check:
    if nullable:
        return lambda v: v is None or body(v)
    return lambda v: v is not None and body(v)


def compile_shape(schema: Mapping[str, Mapping[str, Any]]) -> Check:
    """A fast yes/no check of a document against a cerberus schema (the subset above)."""
    fields = [(name, _compile_rule(rule), bool(rule.get("required", False))) for name, rule in schema.items()]
    missing = object()

    def check(doc: Any) -> bool:
        if not isinstance(doc, dict):
            return False
        for name, test, required in fields:
            v = doc.get(name, missing)
            if v is missing:
                if required:
                    return False
            elif not test(v):
                return False
        return True

    return check


class RequestShape:
    """A domain's request shape: ``check(doc)`` passes or raises ``FactErrors`` naming each field."""

    def __init__(self, schema: Mapping[str, Mapping[str, Any]], what: str = "request") -> None:
        self.schema = dict(schema)
        self.what = what
        self.fast = compile_shape(self.schema)
        self._validator = FactValidator(self.schema, allow_unknown=True)

    def check(self, doc: Any) -> None:
        if not self.fast(doc):
            raise self.explain(doc)

    def explain(self, doc: Any) -> FactErrors:
        if not isinstance(doc, Mapping):
            return FactErrors(
                [FactError(f"the {self.what} must be a JSON object", field="", value=doc, rule="type", code="F001")]
            )
        v = self._validator
        v.validate(dict(doc))
        errors = [_error(e) for e in _leaves(v._errors)]
        if not errors:  # the two checkers disagree: never hide a rejection
            errors = [FactError(f"the {self.what} was rejected", field="", rule="", code="F099")]
        subject = doc.get("id")
        return FactErrors(errors, subject=str(subject) if subject is not None else "")


def _leaves(errors: Any) -> list[Any]:
    out = []
    for e in errors:
        out.extend(_leaves(e.child_errors) if e.is_group_error else [e])
    return out


_HINTS = {
    "string": 'write text in double quotes, like `"read"`',
    "list": 'write a list, like `["agent"]`',
    "dict": 'write an object, like `{"id": "u1"}`',
    "integer": "write a whole number without quotes",
    "number": "write a number without quotes",
    "boolean": "write `true` or `false`",
}


def _error(err: Any) -> FactError:
    name = ".".join(str(p) for p in err.document_path)
    value, rule, constraint = err.value, err.rule or "check_with", err.constraint
    shown = "null" if value is None else f"`{value}`"
    hint: str | None = None
    if rule == "required":
        message, hint = f"`{name}` is missing", f"add `{name}`"
    elif rule == "type":
        message, hint = f"`{name}` is {shown}, not a {constraint}", _HINTS.get(str(constraint))
    elif rule == "allowed":
        choices = [str(c) for c in constraint or ()]
        bad = [x for x in value if x not in choices] if isinstance(value, list) else [value]
        message = f"`{name}` is {shown}, which is not allowed"
        hint = did_you_mean(str(bad[0]) if bad else "", choices) or "allowed: " + ", ".join(f"`{c}`" for c in choices)
    elif rule == "nullable":
        message, hint = f"`{name}` is null", f"give `{name}` a value"
    elif rule == "check_with":
        message, hint = f"`{name}` is {shown}, not a timestamp with a time zone", "write it like `2025-06-30T09:00:00Z`"
    else:
        message = f"`{name}` is {shown}, which breaks `{rule}`"
    return FactError(message, field=name, value=value, rule=rule, hint=hint, code=f"F2{_CODES.get(rule, 99):02d}")


_CODES = {"required": 1, "type": 2, "allowed": 5, "nullable": 6, "check_with": 8}


# Periods a domain measures time with (retention's `period: 5y`, a consent's validity):
# a count and a unit, years and months by the calendar.
PERIOD = re.compile(r"^(\d{1,4})\s*(y|m|w|d|h)$")


def add_period(start: datetime, period: tuple[int, str]) -> datetime:
    """``start`` plus a period; years and months are calendar ones (31 Jan + 1m = 28/29 Feb)."""
    n, unit = period
    if unit in ("y", "m"):
        months = start.month - 1 + n * (12 if unit == "y" else 1)
        year, month = start.year + months // 12, months % 12 + 1
        day = start.day
        while True:
            try:
                return start.replace(year=year, month=month, day=day)
            except ValueError:
                day -= 1
    return start + timedelta(**{{"w": "weeks", "d": "days", "h": "hours"}[unit]: n})
