"""Type checking: every node gets its type, or an ``ExprError`` says where and why not.

Rules follow CEL: int and double do not mix in arithmetic (``1 + 1.0`` is an error), but
comparisons and equality across int and double are allowed (current CEL spec), which is
what lets ``customer.clv >= 50000`` work on a decimal fact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from engine.core.expr import functions
from engine.core.expr.ast import Binary, Call, Cond, Ident, Index, ListLit, Lit, Macro, Node, Select, Unary, dotted
from engine.core.expr.errors import ExprError
from engine.core.expr.parser import INT_MAX
from engine.core.expr.types import (
    BOOL,
    DOUBLE,
    DURATION,
    DYN,
    INT,
    NULL,
    NUMERIC,
    STRING,
    TIMESTAMP,
    ListType,
    MapType,
    ObjectType,
    Type,
    TypeEnv,
)
from engine.errors import did_you_mean

_ARITH: dict[str, list[tuple[Type, Type, Type]]] = {
    "+": [
        (INT, INT, INT),
        (DOUBLE, DOUBLE, DOUBLE),
        (STRING, STRING, STRING),
        (TIMESTAMP, DURATION, TIMESTAMP),
        (DURATION, TIMESTAMP, TIMESTAMP),
        (DURATION, DURATION, DURATION),
    ],
    "-": [
        (INT, INT, INT),
        (DOUBLE, DOUBLE, DOUBLE),
        (TIMESTAMP, TIMESTAMP, DURATION),
        (TIMESTAMP, DURATION, TIMESTAMP),
        (DURATION, DURATION, DURATION),
    ],
    "*": [(INT, INT, INT), (DOUBLE, DOUBLE, DOUBLE)],
    "/": [(INT, INT, INT), (DOUBLE, DOUBLE, DOUBLE)],
    "%": [(INT, INT, INT)],
}
_ORDERED = (INT, DOUBLE, STRING, TIMESTAMP, DURATION, BOOL)


def _err(node: Node, message: str, code: str, hint: str | None = None) -> ExprError:
    return ExprError(message, offset=node.start, length=max(node.end - node.start, 1), code=code, hint=hint)


def comparable(a: Type, b: Type) -> bool:
    """Whether ``==`` may compare values of these types."""
    if DYN in (a, b) or NULL in (a, b) or a == b:
        return True
    if a in NUMERIC and b in NUMERIC:
        return True
    return isinstance(a, ListType) and isinstance(b, ListType)


class Checker:
    def __init__(self, env: TypeEnv, extra: Sequence[functions.Signature] = ()) -> None:
        self.scopes: list[dict[str, Type]] = [dict(env)]
        self.extra = tuple(extra)

    def lookup(self, name: str) -> Type | None:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return None

    def check(self, node: Node) -> Type:
        method: Callable[[Node], Type] = getattr(self, f"_{type(node).__name__.lower()}")
        t = method(node)
        node.type = t
        return t

    def _lit(self, node: Node) -> Type:
        assert isinstance(node, Lit)
        v = node.value
        if isinstance(v, bool):
            return BOOL
        if isinstance(v, int):
            if not -INT_MAX - 1 <= v <= INT_MAX:
                raise _err(node, f"the number `{v}` is too large", "E105", "whole numbers must fit in 64 bits")
            return INT
        if isinstance(v, float):
            return DOUBLE
        if isinstance(v, str):
            return STRING
        return NULL

    def _ident(self, node: Node) -> Type:
        assert isinstance(node, Ident)
        t = self.lookup(node.name)
        if t is None:
            names = [n for s in self.scopes for n in s]
            hint = did_you_mean(node.name, names)
            customer = self.lookup("customer")
            if hint is None and isinstance(customer, ObjectType) and node.name in customer.fields:
                hint = f"write `customer.{node.name}`"
            raise _err(node, f"unknown name `{node.name}`", "E110", hint or self._roots_hint(node.name))
        return t

    def _roots_hint(self, name: str) -> str:
        """The names this expression may start with (its domain's), and quotes for text."""
        roots = sorted({n for scope in self.scopes for n in scope})
        objects = [f"`{n}.`" for n in roots if isinstance(self.lookup(n), ObjectType)]
        plain = [f"`{n}`" for n in roots if not isinstance(self.lookup(n), ObjectType)]
        names = "names start with " + ", ".join(objects) if objects else "names are " + ", ".join(plain)
        if objects and plain:
            names += " or are " + ", ".join(plain)
        return f'text goes in double quotes, like `"{name}"`; {names}'

    def _select(self, node: Node) -> Type:
        assert isinstance(node, Select) and node.operand is not None
        base = self.check(node.operand)
        if isinstance(base, ObjectType):
            t = base.fields.get(node.field)
            if t is None:
                what = {"customer": "fact", "scores": "score", "outputs": "output"}.get(base.name, "field")
                full = dotted(node) or node.field
                close = did_you_mean(node.field, base.fields)
                section = "facts" if base.name == "customer" else base.name
                hint = (
                    close.replace("`", f"`{base.name}.", 1) if close else f"declare `{node.field}` under `{section}:`"
                )
                raise _err(node, f"unknown {what} `{full}`", "E111", hint)
            return t
        if isinstance(base, MapType):
            return base.value
        if base == DYN:
            return DYN
        raise _err(node, f"`{dotted(node.operand) or 'this'}` is a {base} and has no field `{node.field}`", "E112")

    def _index(self, node: Node) -> Type:
        assert isinstance(node, Index) and node.operand is not None and node.index is not None
        base, idx = self.check(node.operand), self.check(node.index)
        if isinstance(base, ListType):
            if idx not in (INT, DYN):
                raise _err(node.index, f"a list index must be an int, not {idx}", "E120")
            return base.elem
        if isinstance(base, MapType):
            return base.value
        if base == DYN:
            return DYN
        raise _err(node, f"a {base} cannot be indexed with `[...]`", "E120")

    def _unary(self, node: Node) -> Type:
        assert isinstance(node, Unary) and node.operand is not None
        t = self.check(node.operand)
        if node.op == "!":
            if t not in (BOOL, DYN):
                raise _err(node, f"`!` needs true or false, not a {t}", "E121")
            return BOOL
        if t not in (INT, DOUBLE, DURATION, DYN):
            raise _err(node, f"`-` needs a number, not a {t}", "E121")
        return t

    def _binary(self, node: Node) -> Type:
        assert isinstance(node, Binary) and node.left is not None and node.right is not None
        lt, rt = self.check(node.left), self.check(node.right)
        op = node.op
        if op in ("&&", "||"):
            for side, t in ((node.left, lt), (node.right, rt)):
                if t not in (BOOL, DYN):
                    raise _err(
                        side,
                        f"`{op}` needs true or false on both sides, not a {t}",
                        "E121",
                        "compare it with `==`, `<`, `>=` ...",
                    )
            return BOOL
        if op in ("==", "!="):
            if not comparable(lt, rt):
                raise _err(
                    node,
                    f"cannot compare `{self._text(node.left)}` ({lt}) with `{self._text(node.right)}` ({rt})",
                    "E122",
                    _literal_hint(lt, rt),
                )
            return BOOL
        if op in ("<", "<=", ">", ">="):
            if DYN in (lt, rt) or (lt in NUMERIC and rt in NUMERIC) or (lt == rt and lt in _ORDERED):
                return BOOL
            raise _err(
                node,
                f"cannot compare `{self._text(node.left)}` ({lt}) with `{self._text(node.right)}` ({rt})",
                "E122",
                _literal_hint(lt, rt),
            )
        if op == "in":
            if isinstance(rt, ListType):
                if not comparable(lt, rt.elem):
                    raise _err(node, f"a {lt} is never in a list of {rt.elem}", "E122")
                return BOOL
            if isinstance(rt, MapType) or rt == DYN:
                return BOOL
            raise _err(
                node.right, f"`in` needs a list on its right, not a {rt}", "E122", 'write a list like `["a", "b"]`'
            )
        return self._arith(node, lt, rt)

    def _arith(self, node: Binary, lt: Type, rt: Type) -> Type:
        assert node.left is not None and node.right is not None
        if DYN in (lt, rt):
            return DYN
        if node.op == "+" and isinstance(lt, ListType) and isinstance(rt, ListType):
            return lt if lt == rt else ListType(DYN)
        for a, b, result in _ARITH[node.op]:
            if lt == a and rt == b:
                return result
        hint = None
        if lt in NUMERIC and rt in NUMERIC:
            hint = (
                "whole numbers and decimals do not mix in arithmetic: write `2.0` instead of `2`, or use `double(...)`"
            )
        raise _err(node, f"cannot apply `{node.op}` to {lt} and {rt}", "E123", hint)

    def _cond(self, node: Node) -> Type:
        assert isinstance(node, Cond) and node.cond and node.then and node.other
        ct = self.check(node.cond)
        if ct not in (BOOL, DYN):
            raise _err(node.cond, f"the condition before `?` must be true or false, not a {ct}", "E121")
        a, b = self.check(node.then), self.check(node.other)
        if a == b or b == NULL:
            return a
        if a == NULL or DYN in (a, b):
            return b if a == NULL else DYN
        raise _err(node, f"both branches of `? :` must have one type, not {a} and {b}", "E124", _literal_hint(a, b))

    def _listlit(self, node: Node) -> Type:
        assert isinstance(node, ListLit)
        types = {self.check(item) for item in node.items}
        return ListType(types.pop() if len(types) == 1 else DYN)

    def _call(self, node: Node) -> Type:
        assert isinstance(node, Call)
        if node.name == "has" and node.target is None:
            if len(node.args) != 1 or not isinstance(node.args[0], Select):
                raise _err(node, "`has` takes one field, like `has(customer.satisfaction)`", "E125")
            self.check(node.args[0])
            return BOOL
        target = self.check(node.target) if node.target is not None else None
        args = [self.check(a) for a in node.args]
        sig = functions.resolve(node.name, target, args, self.extra)
        if sig is None:
            shown = f"{self._text(node.target)}.{node.name}" if node.target is not None else node.name
            known = functions.names(method=target is not None, extra=self.extra)
            if node.name not in known:
                raise _err(
                    node,
                    f"unknown function `{node.name}`",
                    "E126",
                    did_you_mean(node.name, known) or "see docs/expressions.md for the functions",
                )
            raise _err(
                node, f"`{shown}` does not take ({', '.join(str(a) for a in args)})", "E127", functions.usage(node.name)
            )
        if sig.literal_check is not None:
            arg = node.args[-1]
            if not isinstance(arg, Lit) or not isinstance(arg.value, str):
                raise _err(arg, f"the argument of `{node.name}` must be written as text in quotes", "E128")
            problem = sig.literal_check(arg.value)
            if problem:
                raise _err(arg, problem, "E128", functions.usage(node.name))
        node.sig = sig
        return sig.result

    def _macro(self, node: Node) -> Type:
        assert isinstance(node, Macro) and node.target is not None and node.body is not None
        t = self.check(node.target)
        if not isinstance(t, (ListType, MapType)) and t != DYN:
            raise _err(node, f"`{node.name}` works on lists, not on a {t}", "E129")
        elem = t.elem if isinstance(t, ListType) else t.key if isinstance(t, MapType) else DYN
        self.scopes.append({node.var: elem})
        try:
            body = self.check(node.body)
        finally:
            self.scopes.pop()
        if node.name == "map":
            return ListType(body)
        if body not in (BOOL, DYN):
            raise _err(node.body, f"the condition of `{node.name}` must be true or false, not a {body}", "E121")
        return t if node.name == "filter" else BOOL

    def _text(self, node: Node) -> str:
        from engine.core.expr.printer import source

        return source(node)


def _literal_hint(a: Type, b: Type) -> str | None:
    if STRING in (a, b) and (a in NUMERIC or b in NUMERIC):
        return "numbers are written without quotes, text with them"
    if TIMESTAMP in (a, b) and STRING in (a, b):
        return 'write `timestamp("2025-01-01T00:00:00Z")` to compare with a date'
    if DURATION in (a, b):
        return 'write a duration like `duration("24h")`'
    return None


def check(node: Node, env: TypeEnv, functions: Sequence[functions.Signature] = ()) -> Type:
    """Type-check ``node`` against the variables in ``env`` (and plugin ``functions``); returns its type."""
    return Checker(env, functions).check(node)
