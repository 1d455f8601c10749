"""Compiling a checked syntax tree into nested Python closures (never ``eval``/``exec``).

Each node becomes one closure taking the activation (a dict of variables). The checked
types choose the operation at compile time: ``customer.clv >= 50000`` becomes one closure
that reads ``env["customer"]["clv"]`` and compares with a constant, with no dispatch at run
time. Run-time errors are ``EvalError`` subclasses; ``&&`` and ``||`` absorb an error on
one side when the other side decides (CEL's commutative logic).

``compile_traced`` builds the same tree but records each comparison, ``in``, ``has`` and
function call with the values it saw (the decision's ``--explain`` trace).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from engine.core.expr import functions
from engine.core.expr.ast import Binary, Call, Cond, Ident, Index, ListLit, Lit, Macro, Node, Select, Unary, dotted
from engine.core.expr.cost import METER, Meter, over
from engine.core.expr.errors import (
    DivisionByZero,
    EvalError,
    FunctionFailed,
    InvalidArgument,
    NoSuchKey,
    NoSuchOverload,
    Overflow,
)
from engine.core.expr.printer import source
from engine.core.expr.types import DOUBLE, DURATION, DYN, INT, STRING, TIMESTAMP, ListType, Type, TypeEnv

Env = Mapping[str, Any]
Compiled = Callable[[Env], Any]
TRACE_KEY = "\x00trace"
INT_MIN, INT_MAX = functions.INT_MIN, functions.INT_MAX


@dataclass(frozen=True)
class TraceStep:
    """One test as evaluated: its text, the values it compared and its result."""

    text: str
    operands: tuple[Any, ...]
    result: Any


TracedCompiled = Callable[[Env, list[TraceStep]], Any]


# --------------------------------------------------------------------------------------------
# run-time operations on CEL values
# --------------------------------------------------------------------------------------------


def _num(x: Any) -> bool:
    return (type(x) is int) or (type(x) is float)


def cel_eq(a: Any, b: Any) -> bool:
    """CEL equality: numbers compare across int and double; other types never equal each other."""
    if _num(a) and _num(b):
        return bool(a == b)
    if type(a) is not type(b):
        if isinstance(a, datetime) and isinstance(b, datetime):
            return a == b
        return False
    if type(a) is list:
        return len(a) == len(b) and all(cel_eq(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return a.keys() == b.keys() and all(cel_eq(v, b[k]) for k, v in a.items())
    return bool(a == b)


_ORDER_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _ordered(op: str) -> Callable[[Any, Any], bool]:
    py = _ORDER_OPS[op]

    def compare(a: Any, b: Any) -> bool:
        ta, tb = type(a), type(b)
        if (
            (ta is tb and ta in (int, float, str, bool, timedelta))
            or (_num(a) and _num(b))
            or (isinstance(a, datetime) and isinstance(b, datetime))
        ):
            return bool(py(a, b))
        raise NoSuchOverload(f"cannot compare {_tn(a)} with {_tn(b)}")

    return compare


def _tn(x: Any) -> str:
    return {
        bool: "bool",
        int: "int",
        float: "double",
        str: "string",
        list: "list",
        dict: "map",
        type(None): "null",
        timedelta: "duration",
    }.get(type(x), "timestamp" if isinstance(x, datetime) else "value")


def _check_int(v: int) -> int:
    if INT_MIN <= v <= INT_MAX:
        return v
    raise Overflow("int overflow")


def _div(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        if b == 0:
            raise DivisionByZero("division by zero")
        q = abs(a) // abs(b)
        return _check_int(q if (a >= 0) == (b >= 0) else -q)
    if type(a) is float and type(b) is float:
        if b == 0.0:  # IEEE 754, as the CEL spec says: ±infinity, or NaN for 0/0
            return math.nan if a == 0.0 or math.isnan(a) else math.copysign(math.inf, a) * math.copysign(1.0, b)
        return a / b
    raise NoSuchOverload(f"cannot divide {_tn(a)} by {_tn(b)}")


def _mod(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        if b == 0:
            raise DivisionByZero("modulus by zero")
        r = abs(a) % abs(b)
        return r if a >= 0 else -r
    raise NoSuchOverload(f"cannot take {_tn(a)} modulo {_tn(b)}")


def _add(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if ta is int and tb is int:
        return _check_int(a + b)
    if (ta is tb and ta in (float, str, list)) or (ta is timedelta and tb is timedelta):
        return a + b
    if (isinstance(a, datetime) and tb is timedelta) or (ta is timedelta and isinstance(b, datetime)):
        try:
            return a + b
        except OverflowError:
            raise Overflow("timestamp out of range") from None
    raise NoSuchOverload(f"cannot add {_tn(a)} and {_tn(b)}")


def _sub(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if ta is int and tb is int:
        return _check_int(a - b)
    if (ta is float and tb is float) or (ta is timedelta and tb is timedelta):
        return a - b
    if isinstance(a, datetime) and (tb is timedelta or isinstance(b, datetime)):
        try:
            return a - b
        except OverflowError:
            raise Overflow("timestamp out of range") from None
    raise NoSuchOverload(f"cannot subtract {_tn(b)} from {_tn(a)}")


def _mul(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if ta is int and tb is int:
        return _check_int(a * b)
    if ta is float and tb is float:
        return a * b
    raise NoSuchOverload(f"cannot multiply {_tn(a)} and {_tn(b)}")


def _in(a: Any, container: Any) -> bool:
    if type(container) is list:
        return any(cel_eq(a, x) for x in container)
    if type(container) is dict:
        return any(cel_eq(a, k) for k in container)
    raise NoSuchOverload(f"`in` needs a list or map, not {_tn(container)}")


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": _add,
    "-": _sub,
    "*": _mul,
    "/": _div,
    "%": _mod,
    "in": _in,
    "==": cel_eq,
    "!=": lambda a, b: not cel_eq(a, b),
    **{op: _ordered(op) for op in _ORDER_OPS},
}


# --------------------------------------------------------------------------------------------
# the compiler
# --------------------------------------------------------------------------------------------


class _Compiler:
    def __init__(self, trace: bool, root: Node | None = None) -> None:
        self.trace = trace
        self.root = root  # the expression compiled: its closure gets a private copy of the activation
        self.metered = False  # whether a closure spends from the meter (a comprehension, a `+` of texts or lists)

    def emit(self, node: Node) -> Compiled:
        method: Callable[[Any], Compiled] = getattr(self, f"_{type(node).__name__.lower()}")
        return method(node)

    def record(self, node: Node, fn: Callable[[Env], tuple[tuple[Any, ...], Any]]) -> Compiled:
        """In trace mode: evaluate, append a TraceStep (also when it fails), return the result."""
        text = source(node)

        def traced(env: Env) -> Any:
            steps: list[TraceStep] = env[TRACE_KEY]
            try:
                operands, result = fn(env)
            except EvalError as exc:
                steps.append(TraceStep(text, (), exc))
                raise
            steps.append(TraceStep(text, operands, result))
            return result

        return traced

    def _lit(self, node: Lit) -> Compiled:
        value = node.value
        return lambda env: value

    def _ident(self, node: Ident) -> Compiled:
        name = node.name

        def ident(env: Env) -> Any:
            try:
                return env[name]
            except KeyError:
                raise NoSuchKey(f"`{name}` is not set") from None

        return ident

    def _select(self, node: Select) -> Compiled:
        path = dotted(node)
        assert node.operand is not None
        if path is not None and path.count(".") == 1:
            root, key = path.split(".")

            def select2(env: Env) -> Any:
                try:
                    return env[root][key]
                except KeyError:
                    raise NoSuchKey(f"`{path}` is absent") from None
                except TypeError:
                    raise NoSuchOverload(f"`{root}` has no fields") from None

            return select2
        base, key = self.emit(node.operand), node.field
        shown = path or key

        def select(env: Env) -> Any:
            value = base(env)
            if type(value) is not dict:
                raise NoSuchOverload(f"{_tn(value)} has no field `{key}`")
            try:
                return value[key]
            except KeyError:
                raise NoSuchKey(f"`{shown}` is absent") from None

        return select

    def _index(self, node: Index) -> Compiled:
        assert node.operand is not None and node.index is not None
        base, idx = self.emit(node.operand), self.emit(node.index)

        def index(env: Env) -> Any:
            container, i = base(env), idx(env)
            if type(container) is list:
                if type(i) is not int:
                    raise NoSuchOverload("a list index must be an int")
                if not 0 <= i < len(container):
                    raise InvalidArgument(f"index {i} out of range")
                return container[i]
            if type(container) is dict:
                for k, v in container.items():
                    if cel_eq(k, i):
                        return v
                raise NoSuchKey(f"no key `{i}`")
            raise NoSuchOverload(f"{_tn(container)} cannot be indexed")

        return index

    def _unary(self, node: Unary) -> Compiled:
        assert node.operand is not None
        inner = self.emit(node.operand)
        if node.op == "!":

            def not_(env: Env) -> bool:
                v = inner(env)
                if type(v) is not bool:
                    raise NoSuchOverload(f"`!` of {_tn(v)}")
                return not v

            return not_

        def neg(env: Env) -> Any:
            v = inner(env)
            if type(v) is int:
                return _check_int(-v)
            if type(v) in (float, timedelta):
                return -v
            raise NoSuchOverload(f"`-` of {_tn(v)}")

        return neg

    def _binary(self, node: Binary) -> Compiled:
        assert node.left is not None and node.right is not None
        if node.op in ("&&", "||"):
            return self._logic(node)
        left, right = self.emit(node.left), self.emit(node.right)
        op = _BINARY[node.op]
        if self.trace and node.op in ("==", "!=", "<", "<=", ">", ">=", "in"):
            return self.record(node, lambda env: ((a := left(env), b := right(env)), op(a, b)))
        fast = self._fast_compare(node, left) or self._fast_arith(node, left, right)
        if fast is not None:
            return fast
        if node.op == "+" and _may_build(node.left.type) and _may_build(node.right.type):
            return self._concat(node, left, right)
        return lambda env: op(left(env), right(env))

    def _concat(self, node: Binary, left: Compiled, right: Compiled) -> Compiled:
        """``+`` that may join two texts or two lists: the result's length is spent first."""
        self.metered = True

        def concat(env: Env) -> Any:
            a, b = left(env), right(env)
            ta = type(a)
            if (ta is str or ta is list) and type(b) is ta:
                size = len(a) + len(b)
                count: list[int] = env[METER]
                count[0] -= size
                if count[0] < 0 or size > Meter.max_size:
                    raise over(node, size, "text" if ta is str else "list")
                return a + b
            return _add(a, b)

        return concat

    def _fast_compare(self, node: Binary, left: Compiled) -> Compiled | None:
        """``x OP constant`` with statically known types: one closure, Python's own operator.

        When ``x`` is a fact, score or output (``customer.clv``), the read is fused in too.
        """
        assert node.left is not None and node.right is not None
        is_constant, c = _constant(node.right)
        if not is_constant or node.op not in ("==", "!=", "<", "<=", ">", ">="):
            return None
        lt = node.left.type
        if not (
            (lt in (INT, DOUBLE) and _num(c))
            or (lt == STRING and type(c) is str)
            or (lt == DURATION and type(c) is timedelta)
            or (lt == TIMESTAMP and isinstance(c, datetime))
        ):
            return None
        py = {"==": operator.eq, "!=": operator.ne, **_ORDER_OPS}[node.op]
        path = dotted(node.left)
        if path is not None and path.count(".") == 1:
            root, key = path.split(".")

            def compare_fact(env: Env) -> bool:
                try:
                    v = env[root][key]
                except KeyError:
                    raise NoSuchKey(f"`{path}` is absent") from None
                if v is None or v is True or v is False:  # a nullable fact holding null
                    raise NoSuchOverload(f"cannot compare {_tn(v)} with {_tn(c)}")
                return py(v, c)  # type: ignore[no-any-return]

            return compare_fact

        def compare(env: Env) -> bool:
            v = left(env)
            if v is None or v is True or v is False:
                raise NoSuchOverload(f"cannot compare {_tn(v)} with {_tn(c)}")
            return py(v, c)  # type: ignore[no-any-return]

        return compare

    def _fast_arith(self, node: Binary, left: Compiled, right: Compiled) -> Compiled | None:
        """Arithmetic whose operand types are known: no run-time dispatch."""
        assert node.left is not None and node.right is not None
        lt, rt, op = node.left.type, node.right.type, node.op
        if op not in ("+", "-", "*") or DYN in (lt, rt) or lt is None or rt is None:
            return None
        py = {"+": operator.add, "-": operator.sub, "*": operator.mul}[op]
        if lt == INT and rt == INT:

            def int_op(env: Env) -> int:
                r = py(left(env), right(env))
                if INT_MIN <= r <= INT_MAX:
                    return r  # type: ignore[no-any-return]
                raise Overflow("int overflow")

            return int_op
        if {lt, rt} <= {DOUBLE, TIMESTAMP, DURATION} and not (op == "*" and lt != DOUBLE):

            def typed_op(env: Env) -> Any:
                try:
                    return py(left(env), right(env))
                except OverflowError:
                    raise Overflow("timestamp or duration out of range") from None
                except TypeError:  # a null fact
                    raise NoSuchOverload(f"`{op}` of a null value") from None

            return typed_op
        return None

    def _logic(self, node: Binary) -> Compiled:
        assert node.left is not None and node.right is not None
        left, right = self.emit(node.left), self.emit(node.right)
        decisive = node.op == "||"  # the value that decides: true for ||, false for &&

        def logic(env: Env) -> bool:
            try:
                a = left(env)
            except EvalError as exc:
                a = exc
            if a is decisive:
                return bool(decisive)
            b = right(env)  # an error here propagates: the left side did not decide
            if b is decisive:
                return bool(decisive)
            if isinstance(a, EvalError):
                raise a
            if type(a) is not bool or type(b) is not bool:
                raise NoSuchOverload(f"`{node.op}` needs true or false")
            return not decisive

        return logic

    def _cond(self, node: Cond) -> Compiled:
        assert node.cond is not None and node.then is not None and node.other is not None
        c, a, b = self.emit(node.cond), self.emit(node.then), self.emit(node.other)

        def cond(env: Env) -> Any:
            test = c(env)
            if test is True:
                return a(env)
            if test is False:
                return b(env)
            raise NoSuchOverload(f"`? :` needs true or false, not {_tn(test)}")

        return cond

    def _listlit(self, node: ListLit) -> Compiled:
        if all(isinstance(i, Lit) for i in node.items):
            values = [i.value for i in node.items if isinstance(i, Lit)]
            return lambda env: list(values)
        items = [self.emit(i) for i in node.items]
        return lambda env: [f(env) for f in items]

    def _call(self, node: Call) -> Compiled:
        if node.name == "has" and node.target is None:
            return self._has(node)
        target_type = node.target.type if node.target is not None else None
        arg_types = [a.type or DYN for a in node.args]
        sig = node.sig or functions.resolve(node.name, target_type, arg_types)
        assert sig is not None, "only a checked tree can be compiled"
        args = ([self.emit(node.target)] if node.target is not None else []) + [self.emit(a) for a in node.args]
        impl = sig.impl
        if sig.literal_check is not None:  # duration("24h"), timestamp("..."), s.matches("re")
            last = node.args[-1]
            assert isinstance(last, Lit)
            if node.name == "matches":
                search = functions.pattern_search(last.value)
                subject = args[0]
                impl_fn: Compiled = lambda env: search(_text(subject(env))) is not None  # noqa: E731
                return self.record(node, lambda env: ((s := subject(env),), impl_fn(env))) if self.trace else impl_fn
            constant = impl(last.value)
            return lambda env: constant

        def call(env: Env) -> Any:
            values = [f(env) for f in args]
            try:
                return impl(*values)
            except EvalError:
                raise
            except (TypeError, AttributeError):
                raise NoSuchOverload(f"`{node.name}` does not take {', '.join(_tn(v) for v in values)}") from None
            except (ValueError, OverflowError) as exc:
                if sig.plugin:
                    raise FunctionFailed(_failed(sig, exc)) from None
                raise InvalidArgument(f"`{node.name}`: {exc}") from None
            except Exception as exc:  # a plugin function's own bug: this condition is undefined, never the decision
                raise FunctionFailed(_failed(sig, exc)) from None

        if self.trace:
            return self.record(node, lambda env: ((), call(env)))
        return call

    def _has(self, node: Call) -> Compiled:
        sel = node.args[0]
        assert isinstance(sel, Select) and sel.operand is not None
        base, key = self.emit(sel.operand), sel.field

        def has(env: Env) -> bool:
            value = base(env)
            if type(value) is not dict:
                raise NoSuchOverload(f"has() on {_tn(value)}")
            return key in value

        if self.trace:
            return self.record(node, lambda env: ((), has(env)))
        return has

    def _macro(self, node: Macro) -> Compiled:
        assert node.target is not None and node.body is not None
        private = node is self.root  # the root's activation is already a copy: no second one
        target, body, var, kind = self.emit(node.target), self.emit(node.body), node.var, node.name
        self.metered = True
        maps = kind == "map"

        def macro(env: Env) -> Any:
            items = target(env)
            if type(items) is dict:
                items = list(items)
            if type(items) is not list:
                raise NoSuchOverload(f"`{kind}` of {_tn(items)}")
            n = len(items)  # a step per item and one for the comprehension (map: and its list), spent first
            count: list[int] = env[METER]
            count[0] -= 2 * n + 1 if maps else n + 1
            if count[0] < 0 or (maps and n > Meter.max_size):
                raise over(node, n if maps else 0)
            scope: dict[str, Any] = env if private else dict(env)  # type: ignore[assignment]
            results: list[Any] = []
            error: EvalError | None = None
            for item in items:
                scope[var] = item
                try:
                    results.append(body(scope))
                except EvalError as exc:
                    if kind in ("filter", "map", "exists_one"):
                        raise
                    error = error or exc
                    results.append(exc)
            result = _macro_result(kind, items, results, error)
            if kind == "filter":  # the list it keeps
                count[0] -= len(result)
                if count[0] < 0 or len(result) > Meter.max_size:
                    raise over(node, len(result))
            return result

        return macro


def _may_build(t: Type | None) -> bool:
    """Whether a ``+`` operand of checked type ``t`` may be a text or a list (unknown: it may)."""
    return t is None or t in (DYN, STRING) or isinstance(t, ListType)


def _constant(node: Node) -> tuple[bool, Any]:
    """Whether ``node`` is a constant (a literal, ``duration("..")``, ``timestamp("..")``) and its value."""
    if isinstance(node, Lit):
        return True, node.value
    if (
        isinstance(node, Call)
        and node.target is None
        and node.name in ("duration", "timestamp")
        and len(node.args) == 1
        and isinstance(node.args[0], Lit)
        and isinstance(node.args[0].value, str)
    ):
        parse = functions.parse_duration if node.name == "duration" else functions.parse_ts
        return True, parse(node.args[0].value)
    return False, None


def _macro_result(kind: str, items: list[Any], results: list[Any], error: EvalError | None) -> Any:
    if kind == "map":
        return results
    if kind == "filter":
        return [item for item, keep in zip(items, results, strict=True) if keep is True]
    if kind == "exists_one":
        return sum(1 for r in results if r is True) == 1
    if kind == "exists":
        if any(r is True for r in results):
            return True
    elif any(r is False for r in results):  # all
        return False
    if error is not None:
        raise error
    return kind == "all"


def _failed(sig: functions.Signature, exc: Exception) -> str:
    who = f" of plugin `{sig.plugin}`" if sig.plugin else ""
    return f"function `{sig.name}`{who} failed: {type(exc).__name__}: {exc}"


def _text(value: Any) -> str:
    if type(value) is not str:
        raise NoSuchOverload(f"`matches` of {_tn(value)}")
    return value


def metered(node: Node) -> bool:
    """Whether ``node``'s closure counts its work (a comprehension, or a ``+`` that may join
    texts or lists, anywhere in it): code generated around it must call that closure whole, so
    that the expression spends from one count, as on the exact path."""
    compiler = _Compiler(trace=False, root=node)
    compiler.emit(node)
    return compiler.metered


def compile_expr(node: Node, env: TypeEnv | None = None) -> Compiled:
    """A fast closure for a checked expression: ``fn(activation) -> value``.

    An expression with a comprehension or a ``+`` that may build a text or a list gets a
    fresh count of ``Meter.budget`` steps each time it runs (``engine.core.expr.cost``), in
    a copy of the activation; others run as they are."""
    compiler = _Compiler(trace=False, root=node)
    inner = compiler.emit(node)
    if not compiler.metered:
        return inner

    def metered(activation: Env) -> Any:
        scope = dict(activation)
        scope[METER] = [Meter.budget]  # the steps this evaluation has left
        return inner(scope)

    return metered


def compile_traced(node: Node, env: TypeEnv | None = None) -> TracedCompiled:
    """A closure that also records every test it evaluates: ``fn(activation, steps) -> value``."""
    compiler = _Compiler(trace=True, root=node)
    inner = compiler.emit(node)
    metered = compiler.metered

    def traced(activation: Env, steps: list[TraceStep]) -> Any:
        scope = dict(activation)
        scope[TRACE_KEY] = steps
        if metered:
            scope[METER] = [Meter.budget]
        return inner(scope)

    return traced
