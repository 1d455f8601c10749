"""Canonical text of an expression (for traces and snapshot digests)."""

from __future__ import annotations

import json

from engine.core.expr.ast import Binary, Call, Cond, Ident, Index, ListLit, Lit, Macro, Node, Select, Unary

_PREC = {
    "||": 1,
    "&&": 2,
    "==": 3,
    "!=": 3,
    "<": 3,
    "<=": 3,
    ">": 3,
    ">=": 3,
    "in": 3,
    "+": 4,
    "-": 4,
    "*": 5,
    "/": 5,
    "%": 5,
}


def _lit(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    return repr(v)


def source(node: Node, parent: int = 0) -> str:
    """The expression written out canonically; parenthesised only where needed."""
    if isinstance(node, Lit):
        return _lit(node.value)
    if isinstance(node, Ident):
        return node.name
    if isinstance(node, Select):
        assert node.operand is not None
        return f"{source(node.operand, 9)}.{node.field}"
    if isinstance(node, Index):
        assert node.operand is not None and node.index is not None
        return f"{source(node.operand, 9)}[{source(node.index)}]"
    if isinstance(node, Call):
        args = ", ".join(source(a) for a in node.args)
        if node.target is not None:
            return f"{source(node.target, 9)}.{node.name}({args})"
        return f"{node.name}({args})"
    if isinstance(node, Macro):
        assert node.target is not None and node.body is not None
        return f"{source(node.target, 9)}.{node.name}({node.var}, {source(node.body)})"
    if isinstance(node, ListLit):
        return "[" + ", ".join(source(i) for i in node.items) + "]"
    if isinstance(node, Unary):
        assert node.operand is not None
        return f"{node.op}{source(node.operand, 8)}"
    if isinstance(node, Binary):
        assert node.left is not None and node.right is not None
        prec = _PREC[node.op]
        text = f"{source(node.left, prec)} {node.op} {source(node.right, prec + 1)}"
        return f"({text})" if prec < parent else text
    if isinstance(node, Cond):
        assert node.cond is not None and node.then is not None and node.other is not None
        text = f"{source(node.cond, 1)} ? {source(node.then, 1)} : {source(node.other)}"
        return f"({text})" if parent > 0 else text
    raise TypeError(type(node).__name__)
