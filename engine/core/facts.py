"""Customer facts: checked against the policy's declarations before evaluation.

Semantics (documented in docs/policies.md):

* a declared fact that is **absent** takes its ``default`` when it has one; a ``required``
  fact that is absent is an error; any other absent fact stays absent — a condition that
  reads it is *undefined* (it does not match, and the decision notes why), and
  ``has(customer.x)`` tests for it;
* ``null`` is allowed only for facts declared ``nullable: true``;
* ``number`` facts accept whole and decimal numbers and are read as decimals;
  ``timestamp`` facts are RFC 3339 text with a zone (``2025-06-30T09:00:00Z``);
* keys the policy does not declare are ignored (other domains may declare them).

Checking uses ``cerberus``. Because cerberus costs tens of microseconds per customer, a
compiled checker built from the same declarations runs first; only when it rejects a
customer is cerberus run to name every broken field. The test suite checks that the two
accept exactly the same documents.
"""

from __future__ import annotations

import functools
import math
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from engine.core.model import FactDecl
from engine.errors import FactError, FactErrors, did_you_mean

_ABSENT = object()


class Reject(Exception):
    """A fact breaks its declaration; ``FactChecker.explain`` says how."""


def parse_timestamp(value: Any) -> datetime:
    """An aware datetime from RFC 3339 text or an aware datetime; raises ``ValueError``."""
    if isinstance(value, datetime):
        stamp = value
    elif isinstance(value, str) and 10 <= len(value) <= 40 and value[:4].isdigit():
        stamp = datetime.fromisoformat(value)
    else:
        raise ValueError("not a timestamp")
    if stamp.tzinfo is None:
        raise ValueError("no time zone")
    return stamp


# --------------------------------------------------------------------------------------------
# the fast checker: one closure per declared fact, returning the converted value
# --------------------------------------------------------------------------------------------

Converter = Callable[[Any], Any]


def _number(decl: FactDecl) -> Converter:
    lo, hi, allowed = decl.min, decl.max, decl.allowed

    def conv(v: Any) -> Any:
        if type(v) is float:
            if not math.isfinite(v):
                raise Reject
        elif type(v) is int:
            if decl.type == "number":
                v = as_float(v)
        else:
            raise Reject
        if decl.type == "integer" and type(v) is not int:
            raise Reject
        if (lo is not None and v < lo) or (hi is not None and v > hi) or (allowed is not None and v not in allowed):
            raise Reject
        return v

    return conv


def _string(decl: FactDecl) -> Converter:
    allowed = frozenset(decl.allowed) if decl.allowed is not None else None
    limit = decl.max_length

    def conv(v: Any) -> Any:
        if type(v) is not str or (allowed is not None and v not in allowed) or (limit is not None and len(v) > limit):
            raise Reject
        return v

    return conv


def _boolean(decl: FactDecl) -> Converter:
    def conv(v: Any) -> Any:
        if type(v) is not bool:
            raise Reject
        return v

    return conv


def _timestamp(decl: FactDecl) -> Converter:
    def conv(v: Any) -> Any:
        try:
            return parse_timestamp(v)
        except (ValueError, TypeError):
            raise Reject from None

    return conv


def _list(decl: FactDecl) -> Converter:
    item = _CONVERTERS[decl.items](FactDecl(decl.name, decl.items, decl.location)) if decl.items else None
    limit = decl.max_length  # the most items (the expression cost bound counts on it)

    def conv(v: Any) -> Any:
        if type(v) is not list or (limit is not None and len(v) > limit):
            raise Reject
        return [item(x) for x in v] if item is not None else list(v)

    return conv


_CONVERTERS: dict[str, Callable[[FactDecl], Converter]] = {
    "number": _number,
    "integer": _number,
    "string": _string,
    "boolean": _boolean,
    "timestamp": _timestamp,
    "list": _list,
}


class FactChecker:
    """Checks and converts one customer's facts for a policy; ``check`` is the hot path."""

    def __init__(self, facts: Mapping[str, FactDecl], policy: str) -> None:
        self.decls = dict(facts)
        self.policy = policy
        # plain numbers (no `allowed`, not nullable) are checked inline: most facts are numbers
        plain = {
            n for n, d in facts.items() if d.type in ("number", "integer") and d.allowed is None and not d.nullable
        }
        self._numbers = [
            (
                name,
                d.type == "integer",
                -math.inf if d.min is None else d.min,
                math.inf if d.max is None else d.max,
                d.required,
                self.default(d),
                d.has_default,
            )
            for name, d in facts.items()
            if name in plain
        ]
        self._plan = [
            (name, _CONVERTERS[d.type](d), d.required, d.nullable, self.default(d), d.has_default)
            for name, d in facts.items()
            if name not in plain
        ]
        self._schema = cerberus_schema(facts)
        # cerberus validators keep their errors on themselves: one per thread, built on the first
        # rejection (cerberus stays off the start-up path)
        self._cerberus = threading.local()

    @staticmethod
    def default(d: FactDecl) -> Any:
        """The converted default of a declaration."""
        return _CONVERTERS[d.type](d)(d.default) if d.has_default and d.default is not None else d.default

    def converter(self, name: str) -> Converter:
        """The converter of one declared fact (raises ``Reject`` for a bad value)."""
        d = self.decls[name]
        return _CONVERTERS[d.type](d)

    def check(self, facts: Mapping[str, Any]) -> dict[str, Any]:
        """The converted facts, or ``FactErrors`` naming every bad field."""
        out: dict[str, Any] = {}
        try:
            if not isinstance(facts, Mapping):
                raise Reject
            get = facts.get
            self._check_numbers(get, out)
            for name, conv, required, nullable, default, has_default in self._plan:
                v = get(name, _ABSENT)
                if v is _ABSENT:
                    if has_default:
                        out[name] = default
                    elif required:
                        raise Reject
                elif v is None:
                    if not nullable:
                        raise Reject
                    out[name] = None
                else:
                    out[name] = conv(v)
        except Reject:
            raise self.explain(facts) from None
        return out

    def _check_numbers(self, get: Callable[..., Any], out: dict[str, Any]) -> None:
        """The plain numbers, inline (a converter call per fact costs more than the check)."""
        for name, is_int, lo, hi, required, default, has_default in self._numbers:
            v = get(name, _ABSENT)
            t = type(v)
            if t is float:
                if is_int or v - v != 0.0:  # a decimal for an integer, or inf/nan
                    raise Reject
            elif t is int:
                if not is_int:
                    v = as_float(v)
            elif v is _ABSENT:
                if has_default:
                    out[name] = default
                elif required:
                    raise Reject
                continue
            else:
                raise Reject
            if not lo <= v <= hi:
                raise Reject
            out[name] = v

    def explain(self, facts: Any) -> FactErrors:
        """Every broken declaration, found by cerberus (the slow path)."""
        subject = str(facts.get("id", "")) if isinstance(facts, Mapping) else ""
        if not isinstance(facts, Mapping):
            return FactErrors(
                [
                    FactError(
                        "the facts must be a JSON object",
                        field="",
                        value=facts,
                        rule="type",
                        code="F001",
                        hint='write `{"id": ..., ...}`',
                    )
                ],
                subject=subject,
            )
        v = getattr(self._cerberus, "validator", None)
        if v is None:
            v = self._cerberus.validator = FactValidator(self._schema, allow_unknown=True)
        v.validate(dict(facts))
        errors = [self._fact_error(e) for e in _leaves(v._errors)]
        if not errors:  # cannot happen unless the two checkers disagree; never hide a rejection
            errors = [FactError("the facts were rejected", field="", rule="", code="F099")]
        return FactErrors(errors, subject=subject)

    def _fact_error(self, err: Any) -> FactError:
        name = str(err.document_path[0]) if err.document_path else ""
        decl = self.decls.get(name)
        where = f" (declared at {decl.location})" if decl else ""
        value, rule, constraint = err.value, err.rule or "", err.constraint
        if not rule and decl is not None:  # our own check_with errors carry no rule name
            rule, constraint = "check_with", "timestamp" if decl.type == "timestamp" else "finite"
        shown = "null" if value is None else f"`{value}`"
        message, hint = _describe(rule, name, shown, value, constraint, decl)
        return FactError(
            message + where,
            field=name,
            value=value,
            rule=f"{rule}: {constraint}" if constraint is not None else rule,
            hint=hint,
            code=f"F1{_RULE_CODES.get(rule, 99):02d}",
        )


def _describe(
    rule: str, name: str, shown: str, value: Any, constraint: Any, decl: FactDecl | None
) -> tuple[str, str | None]:
    """The message and hint for one broken cerberus rule."""
    if rule == "required":
        return f"fact `{name}` is missing", f"add `{name}` to the customer's facts"
    if rule == "type":
        return f"fact `{name}` is {shown}, not a {decl.type if decl else constraint}", _type_hint(decl)
    if rule == "min":
        return f"fact `{name}` is {shown}, below the minimum {constraint}", f"use a value of {constraint} or more"
    if rule == "max":
        return f"fact `{name}` is {shown}, above the maximum {constraint}", f"use a value of {constraint} or less"
    if rule == "allowed":
        choices = [str(c) for c in constraint or ()]
        return (
            f"fact `{name}` is {shown}, which is not allowed",
            did_you_mean(str(value), choices) or "allowed: " + ", ".join(f"`{c}`" for c in choices),
        )
    if rule == "nullable":
        return f"fact `{name}` is null", f"give `{name}` a value, or declare it `nullable: true`"
    if rule == "maxlength":
        return f"fact `{name}` is longer than {constraint} characters", "shorten it"
    if rule == "check_with" and constraint == "timestamp":
        return f"fact `{name}` is {shown}, not a timestamp with a time zone", "write it like `2025-06-30T09:00:00Z`"
    if rule == "check_with":
        return f"fact `{name}` is {shown}, not a finite number", "write an ordinary number"
    return f"fact `{name}` is {shown}, which breaks `{rule}`", None


def as_float(v: int) -> float:
    try:
        return float(v)
    except OverflowError:  # a whole number too large for a decimal: rejected, as cerberus does
        raise Reject from None


_RULE_CODES = {
    "required": 1,
    "type": 2,
    "min": 3,
    "max": 4,
    "allowed": 5,
    "nullable": 6,
    "maxlength": 7,
    "check_with": 8,
}


def _type_hint(decl: FactDecl | None) -> str | None:
    if decl is None:
        return None
    return {
        "number": "write a number without quotes, like `1200.5`",
        "integer": "write a whole number without quotes, like `3`",
        "boolean": "write `true` or `false` without quotes",
        "string": 'write text in double quotes, like `"retail"`',
        "list": 'write a list, like `["a", "b"]`',
        "timestamp": "write it like `2025-06-30T09:00:00Z`",
    }.get(decl.type)


def _leaves(errors: Any) -> list[Any]:
    out = []
    for e in errors:
        if e.is_group_error:
            out.extend(_leaves(e.child_errors))
        else:
            out.append(e)
    return out


# --------------------------------------------------------------------------------------------
# cerberus: the reference checker
# --------------------------------------------------------------------------------------------


@functools.cache
def validator_class() -> type[Any]:
    """cerberus's validator with Charter's types and checks, built on first use: importing
    cerberus costs tens of milliseconds that a start with valid facts never needs."""
    import cerberus

    types = cerberus.Validator.types_mapping.copy()
    types["integer"] = cerberus.TypeDefinition("integer", (int,), (bool,))
    types["number"] = cerberus.TypeDefinition("number", (int, float), (bool,))

    class Validator(cerberus.Validator):  # type: ignore[misc]  # cerberus ships no type hints
        types_mapping = types

        def _check_with_timestamp(self, field: str, value: Any) -> None:
            if value is None:  # cerberus runs `check_with` on null too; `nullable` alone decides about it
                return
            try:
                parse_timestamp(value)
            except (ValueError, TypeError):
                self._error(field, "not a timestamp with a time zone")

        def _check_with_finite(self, field: str, value: Any) -> None:
            too_big = isinstance(value, int) and not isinstance(value, bool) and abs(value) > sys.float_info.max
            if too_big or (isinstance(value, float) and not math.isfinite(value)):
                self._error(field, "not a finite number")

    return Validator


def FactValidator(schema: Mapping[str, Any], **options: Any) -> Any:  # stands for the class
    """A cerberus validator of ``schema`` with Charter's types (``validator_class``)."""
    return validator_class()(dict(schema), **options)


def _rule(decl: FactDecl, *, item: bool = False) -> dict[str, Any]:
    kind = decl.type
    rule: dict[str, Any] = {}
    if kind == "timestamp":
        rule["check_with"] = "timestamp"
    elif kind == "list":
        rule["type"] = "list"
        if decl.items:
            rule["schema"] = _rule(FactDecl(decl.name, decl.items, decl.location), item=True)
    else:
        rule["type"] = kind
    if kind == "number":
        rule["check_with"] = "finite"
    if decl.min is not None:
        rule["min"] = decl.min
    if decl.max is not None:
        rule["max"] = decl.max
    if decl.allowed is not None:
        rule["allowed"] = list(decl.allowed)
    if decl.max_length is not None:
        rule["maxlength"] = decl.max_length
    if not item:
        rule["required"] = decl.required and not decl.has_default
        rule["nullable"] = decl.nullable
    return rule


def cerberus_schema(facts: Mapping[str, FactDecl]) -> dict[str, Any]:
    """The cerberus schema equivalent to the fact declarations."""
    return {name: _rule(decl) for name, decl in facts.items()}
