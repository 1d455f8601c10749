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
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from engine.core.facts import FactValidator, parse_timestamp
from engine.core.pycode import build
from engine.errors import FactError, FactErrors, did_you_mean

Check = Callable[[Any], bool]


_PARSED: dict[str, datetime] = {}  # RFC 3339 texts read before: the shape check reads each, the domain again


def timestamp(value: Any) -> datetime:
    """``parse_timestamp`` (an aware datetime; ``ValueError`` otherwise), kept per text."""
    if type(value) is str:
        hit = _PARSED.get(value)
        if hit is None:
            hit = parse_timestamp(value)
            if len(_PARSED) >= 4096:
                _PARSED.clear()
            _PARSED[value] = hit
        return hit
    return parse_timestamp(value)


def _is_timestamp(v: Any) -> bool:
    try:
        timestamp(v)
    except (ValueError, TypeError):
        return False
    return True


class _ShapeWriter:
    """Writes a shape's yes/no check as one Python function (``engine.core.pycode``): the
    request is read with straight-line tests, no call per field. Names in the source are the
    writer's own (``d`` the document, ``v3`` a value, ``x3``/``k3`` loop variables) and the
    constants it references by generated names (``A5`` an allowed set, ``T_list`` a type tuple)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.refs: dict[str, Any] = {"MISSING": _MISSING, "is_timestamp": _is_timestamp, **_TYPE_REFS}
        self.locals: set[str] = {"d"}
        self.n = 0

    def fresh(self, prefix: str) -> str:
        self.n += 1
        name = f"{prefix}{self.n}"
        self.locals.add(name)
        return name

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def fail(self, depth: int, test: str) -> None:
        """``return False`` when ``test`` holds."""
        self.emit(depth, f"if {test}:")
        self.emit(depth + 1, "return False")

    def fields(self, schema: Mapping[str, Mapping[str, Any]], doc: str, depth: int) -> None:
        """The tests of a dict's named keys (``doc`` is already known to be a dict)."""
        for name, rule in schema.items():
            v = self.fresh("v")
            self.emit(depth, f"{v} = {doc}.get({name!r}, MISSING)")
            if rule.get("required", False):
                self.fail(depth, f"{v} is MISSING")
                self.rule(rule, v, depth)
                continue
            before = len(self.lines)
            self.emit(depth, f"if {v} is not MISSING:")
            self.rule(rule, v, depth + 1)
            if len(self.lines) == before + 1:  # no test for this key: drop the empty branch
                self.lines.pop()

    def rule(self, rule: Mapping[str, Any], v: str, depth: int) -> None:
        """The tests of one value against one rule, each returning False when it fails."""
        if rule.get("nullable", False):
            self.emit(depth, f"if {v} is not None:")
            depth += 1
            mark = len(self.lines)
        else:
            if rule.get("type") is None:  # (a type test fails on None by itself)
                self.fail(depth, f"{v} is None")
            mark = -1
        kind = rule.get("type")
        if kind is not None:
            self.fail(depth, _TYPE_TESTS[kind].format(v=v))
        if rule.get("check_with") == "timestamp":
            self.fail(depth, f"not is_timestamp({v})")
        if "allowed" in rule:
            allowed = f"A{len(self.refs)}"
            self.refs[allowed] = frozenset(rule["allowed"])
            if kind == "list":
                self.each(v, depth, lambda x, d: self.fail(d, f"{x} not in {allowed}"))
            elif kind is not None:
                self.fail(depth, f"{v} not in {allowed}")
            else:
                self.emit(depth, f"if isinstance({v}, T_list):")
                self.each(v, depth + 1, lambda x, d: self.fail(d, f"{x} not in {allowed}"))
                self.emit(depth, f"elif {v} not in {allowed}:")
                self.emit(depth + 1, "return False")
        sub = rule.get("schema")
        if sub is not None and kind == "dict":
            self.fields(sub, v, depth)
        elif sub is not None and kind == "list":
            self.each(v, depth, lambda x, d: self.rule(sub, x, d))
        values = rule.get("valuesrules")
        if values is not None:
            k, x = self.fresh("k"), self.fresh("x")
            self.emit(depth, f"for {k}, {x} in {v}.items():")
            self.fail(depth + 1, f"not isinstance({k}, str)")
            self.rule(values, x, depth + 1)
        if mark == len(self.lines):  # a nullable value with no test
            self.emit(depth, "pass")

    def each(self, v: str, depth: int, body: Callable[[str, int], Any]) -> None:
        x = self.fresh("x")
        self.emit(depth, f"for {x} in {v}:")
        body(x, depth + 1)

    def source(self, schema: Mapping[str, Mapping[str, Any]]) -> str:
        self.fail(1, "not isinstance(d, dict)")
        self.emit(1, "try:")
        self.fields(schema, "d", 2)
        self.emit(1, "except (TypeError, AttributeError):  # unhashable against `allowed`, `.items` of a non-dict")
        self.emit(2, "return False")
        self.emit(1, "return True")
        return "\n".join(["def check(d):", *self.lines]) + "\n"


_MISSING = object()
_TYPE_REFS: dict[str, Any] = {"T_int": (int,), "T_number": (int, float), "T_list": (list, tuple)}
_TYPE_TESTS = {
    "string": "type({v}) is not str and not isinstance({v}, str)",
    "integer": "not isinstance({v}, T_int) or isinstance({v}, bool)",
    "number": "not isinstance({v}, T_number) or isinstance({v}, bool)",
    "boolean": "not isinstance({v}, bool)",
    "list": "not isinstance({v}, T_list)",
    "dict": "type({v}) is not dict and not isinstance({v}, dict)",
}
_BUILTINS = {
    "isinstance": isinstance,
    "type": type,
    "str": str,
    "dict": dict,
    "bool": bool,
    "TypeError": TypeError,
    "AttributeError": AttributeError,
}


def compile_shape(schema: Mapping[str, Mapping[str, Any]]) -> Check:
    """A fast yes/no check of a document against a cerberus schema (the subset above),
    generated as one verified Python function (its source is the function's ``source``)."""
    writer = _ShapeWriter()
    source = writer.source(schema)
    check: Check = build(
        source,
        "check",
        local_names=writer.locals,
        refs=writer.refs,
        builtins=_BUILTINS,
        attrs=("get", "items"),
        label="request shape",
    )
    return check


class RequestShape:
    """A domain's request shape: ``check(doc)`` passes or raises ``FactErrors`` naming each field."""

    def __init__(self, schema: Mapping[str, Mapping[str, Any]], what: str = "request") -> None:
        self.schema = dict(schema)
        self.what = what
        self.fast = compile_shape(self.schema)
        # cerberus names every broken field; it keeps them on the validator, so one per thread,
        # built on the first rejection (cerberus stays off the start-up path)
        self._validators = threading.local()

    def check(self, doc: Any) -> None:
        if not self.fast(doc):
            raise self.explain(doc)

    def validator(self) -> Any:
        """This thread's cerberus validator of the shape (the reference checker), built once."""
        v = getattr(self._validators, "validator", None)
        if v is None:
            v = self._validators.validator = FactValidator(self.schema, allow_unknown=True)
        return v

    def explain(self, doc: Any) -> FactErrors:
        if not isinstance(doc, Mapping):
            return FactErrors(
                [FactError(f"the {self.what} must be a JSON object", field="", value=doc, rule="type", code="F001")]
            )
        v = self.validator()
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
