"""Differential tests: Charter's compiled expressions against cel-python, a real CEL implementation.

Hypothesis generates well-typed expressions over typed variables and random values for
them; both engines must give the same value, or both must fail with the same error class.

Known deviations of cel-python 0.5 from the CEL spec, which Charter follows instead, are
kept out of the generated language (and listed in docs/expressions.md):

* int/double comparisons (``1 < 2.5``): allowed by the spec, refused by cel-python — the
  generator compares like types only;
* double division by zero: the spec says IEEE (NaN for ``0.0/0.0``), cel-python gives
  infinity — the generator divides doubles by non-zero literals only;
* an error that passes through another operator (``0 + (1 / 0)``, an error in the
  condition of ``? :``): the spec propagates the original error, cel-python reports "no
  such overload" naming its own error object — any error of ours matches it (both are
  errors; the outcome, undefined, is the same).
"""

from __future__ import annotations

import logging
from typing import Any

import celpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.expr import (
    BOOL,
    DOUBLE,
    INT,
    STRING,
    DivisionByZero,
    EvalError,
    ListType,
    NoSuchKey,
    NoSuchOverload,
    Overflow,
    check,
    compile_expr,
    compile_traced,
    parse,
)

logging.getLogger("celpy").setLevel(logging.ERROR)

TYPES = {"a": INT, "b": INT, "x": DOUBLE, "y": DOUBLE, "s": STRING, "t": STRING, "f": BOOL, "L": ListType(INT)}
CEL = celpy.Environment()
INT_MAX = 2**63 - 1

ints = st.one_of(st.integers(-20, 20), st.sampled_from([INT_MAX, -INT_MAX - 1, 2**62, -(2**62), 0]))
doubles = st.one_of(st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: round(v, 3)), st.sampled_from([0.0, 0.5]))
strings = st.sampled_from(["", "a", "ab", "abc", "ba", "客户", "gold"])


def lit_int(v: int) -> str:
    return f"({v})" if v < 0 else str(v)


def lit_double(v: float) -> str:
    text = repr(float(v))
    return f"({text})" if v < 0 else text


def int_expr(depth: int) -> st.SearchStrategy[str]:
    leaf = st.one_of(ints.map(lit_int), st.sampled_from(["a", "b", "size(s)", "size(L)"]))
    if depth <= 0:
        return leaf
    sub = int_expr(depth - 1)
    return st.one_of(
        leaf,
        st.tuples(sub, st.sampled_from(["+", "-", "*", "/", "%"]), sub).map(lambda p: f"({p[0]} {p[1]} {p[2]})"),
        sub.map(lambda e: f"(-{e})"),
        st.tuples(bool_expr(depth - 1), sub, sub).map(lambda p: f"({p[0]} ? {p[1]} : {p[2]})"),
        doubles.map(lambda v: f"int({lit_double(v)})"),
    )


def double_expr(depth: int) -> st.SearchStrategy[str]:
    leaf = st.one_of(doubles.map(lit_double), st.sampled_from(["x", "y"]))
    if depth <= 0:
        return leaf
    sub = double_expr(depth - 1)
    nonzero = st.floats(0.5, 100, allow_nan=False).map(lambda v: lit_double(round(v, 2)))
    return st.one_of(
        leaf,
        st.tuples(sub, st.sampled_from(["+", "-", "*"]), sub).map(lambda p: f"({p[0]} {p[1]} {p[2]})"),
        st.tuples(sub, nonzero).map(lambda p: f"({p[0]} / {p[1]})"),
        int_expr(depth - 1).map(lambda e: f"double({e})"),
    )


def string_expr(depth: int) -> st.SearchStrategy[str]:
    leaf = st.one_of(strings.map(lambda v: f'"{v}"'), st.sampled_from(["s", "t"]))
    if depth <= 0:
        return leaf
    sub = string_expr(depth - 1)
    return st.one_of(leaf, st.tuples(sub, sub).map(lambda p: f"({p[0]} + {p[1]})"))


def bool_expr(depth: int) -> st.SearchStrategy[str]:
    leaf = st.one_of(st.sampled_from(["true", "false", "f"]))
    if depth <= 0:
        return leaf
    rel = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
    cmp = st.one_of(
        st.tuples(int_expr(depth - 1), rel, int_expr(depth - 1)),
        st.tuples(double_expr(depth - 1), rel, double_expr(depth - 1)),
        st.tuples(string_expr(depth - 1), rel, string_expr(depth - 1)),
    ).map(lambda p: f"({p[0]} {p[1]} {p[2]})")
    sub = bool_expr(depth - 1)
    return st.one_of(
        leaf,
        cmp,
        st.tuples(sub, st.sampled_from(["&&", "||"]), sub).map(lambda p: f"({p[0]} {p[1]} {p[2]})"),
        sub.map(lambda e: f"!{e}"),
        st.tuples(int_expr(depth - 1)).map(lambda p: f"({p[0]} in L)"),
        # cel-python loses the string type of a concatenation: methods are called on leaves
        st.tuples(string_expr(0), st.sampled_from(["startsWith", "endsWith", "contains"]), string_expr(depth - 1)).map(
            lambda p: f"{p[0]}.{p[1]}({p[2]})"
        ),
        st.tuples(st.sampled_from(["exists", "all"]), sub).map(lambda p: f"L.{p[0]}(v, v > a || {p[1]})"),
    )


expressions = st.one_of(int_expr(3), double_expr(3), bool_expr(3), string_expr(2))
activations = st.fixed_dictionaries(
    {
        "a": ints,
        "b": ints,
        "x": doubles,
        "y": doubles,
        "s": strings,
        "t": strings,
        "f": st.booleans(),
        "L": st.lists(st.integers(-5, 5), max_size=4),
    }
)


def ours(text: str, act: dict[str, Any]) -> tuple[str, Any]:
    node = parse(text)
    check(node, TYPES)
    try:
        return "value", compile_expr(node)(act)
    except EvalError as exc:
        return "error", type(exc)


def _plain(v: Any) -> Any:
    if isinstance(v, celpy.celtypes.BoolType):
        return bool(v)
    if isinstance(v, celpy.celtypes.IntType):
        return int(v)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, str):
        return str(v)
    if isinstance(v, list):
        return [_plain(i) for i in v]
    return v


def theirs(text: str, act: dict[str, Any]) -> tuple[str, Any]:
    program = CEL.program(CEL.compile(text))
    try:
        result = program.evaluate({k: celpy.json_to_cel(v) for k, v in act.items()})
    except celpy.CELEvalError as exc:
        cause = exc.args[1] if len(exc.args) > 1 else None
        message = str(exc.args[0]) if exc.args else ""
        if "CELEvalError" in message:  # an error that went through another operator: class lost
            return "error", "propagated-error"
        return "error", {
            ZeroDivisionError: DivisionByZero,
            ValueError: Overflow,
            TypeError: NoSuchOverload,
            KeyError: NoSuchKey,
        }.get(cause, cause)
    return "value", _plain(result)


def same(a: tuple[str, Any], b: tuple[str, Any]) -> bool:
    if a[0] != b[0]:
        return False
    if a[0] == "error":
        return a[1] == b[1] or b[1] == "propagated-error"
    va, vb = a[1], b[1]
    if type(va) is float and type(vb) is float:
        return va == vb or abs(va - vb) <= 1e-9 * max(abs(va), abs(vb))
    return type(va) is type(vb) and va == vb


@settings(
    max_examples=2500,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(expressions, activations)
def test_same_answer_as_cel_python(text: str, act: dict[str, Any]) -> None:
    mine, reference = ours(text, act), theirs(text, act)
    assert same(mine, reference), f"{text}\n  with {act}\n  charter: {mine}\n  cel-python: {reference}"


@settings(max_examples=500, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(expressions, activations)
def test_traced_and_fast_agree(text: str, act: dict[str, Any]) -> None:
    node = parse(text)
    check(node, TYPES)
    fast, traced = compile_expr(node), compile_traced(node)
    try:
        expected: Any = fast(act)
    except EvalError as exc:
        expected = type(exc)
    try:
        got: Any = traced(act, [])
    except EvalError as exc:
        got = type(exc)
    assert got == expected or (got != got and expected != expected)  # NaN equals NaN here


@pytest.mark.parametrize("text", ["1 < 2.5", "customer.clv >= 50000", "2 == 2.0"])
def test_cross_numeric_comparison_follows_the_spec_not_cel_python(text: str) -> None:
    from engine.core.expr import ObjectType

    env = {"customer": ObjectType("customer", {"clv": DOUBLE})}
    node = parse(text)
    check(node, env)
    assert compile_expr(node)({"customer": {"clv": 60000.0}}) is True
