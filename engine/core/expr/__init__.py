"""Charter's condition language: a documented subset of CEL (see docs/expressions.md).

Pipeline: ``parse`` (text to syntax tree, lark LALR) → ``check`` (types against the
policy's declared facts, scores and outputs) → ``compile_expr`` / ``compile_traced``
(closures). Policy text is never passed to ``eval`` or ``exec``.
"""

from __future__ import annotations

from engine.core.expr.ast import (
    Binary,
    Call,
    Cond,
    Ident,
    Index,
    ListLit,
    Lit,
    Macro,
    Node,
    Select,
    Unary,
    children,
    dotted,
)
from engine.core.expr.checker import check
from engine.core.expr.compiler import Compiled, TracedCompiled, TraceStep, cel_eq, compile_expr, compile_traced
from engine.core.expr.errors import (
    BudgetExceeded,
    DivisionByZero,
    EvalError,
    ExprError,
    InvalidArgument,
    NoSuchKey,
    NoSuchOverload,
    Overflow,
)
from engine.core.expr.parser import parse
from engine.core.expr.printer import source
from engine.core.expr.types import (
    BOOL,
    DOUBLE,
    DURATION,
    DYN,
    INT,
    NULL,
    STRING,
    TIMESTAMP,
    UINT,
    ListType,
    MapType,
    ObjectType,
    Type,
    TypeEnv,
)


def references(node: Node) -> set[str]:
    """The dotted variable paths an expression reads, e.g. ``{"customer.clv", "now"}``."""
    found: set[str] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        path = dotted(n)
        if path is not None:
            found.add(path)
            continue
        stack.extend(children(n))
    return found


__all__ = [
    "BOOL",
    "DOUBLE",
    "DURATION",
    "DYN",
    "INT",
    "NULL",
    "STRING",
    "TIMESTAMP",
    "UINT",
    "Binary",
    "BudgetExceeded",
    "Call",
    "Compiled",
    "Cond",
    "DivisionByZero",
    "EvalError",
    "ExprError",
    "Ident",
    "Index",
    "InvalidArgument",
    "ListLit",
    "ListType",
    "Lit",
    "Macro",
    "MapType",
    "NoSuchKey",
    "NoSuchOverload",
    "Node",
    "ObjectType",
    "Overflow",
    "Select",
    "TraceStep",
    "TracedCompiled",
    "Type",
    "TypeEnv",
    "Unary",
    "cel_eq",
    "check",
    "children",
    "compile_expr",
    "compile_traced",
    "dotted",
    "parse",
    "references",
    "source",
]
