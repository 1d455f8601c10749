"""The checked syntax tree. Every node keeps its character span in the expression text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.core.expr.types import Type


@dataclass(eq=False)
class Node:
    start: int
    end: int
    type: Type | None = field(default=None, init=False)


@dataclass(eq=False)
class Lit(Node):
    value: Any = None


@dataclass(eq=False)
class Ident(Node):
    name: str = ""


@dataclass(eq=False)
class Select(Node):
    operand: Node | None = None
    field: str = ""


@dataclass(eq=False)
class Index(Node):
    operand: Node | None = None
    index: Node | None = None


@dataclass(eq=False)
class Call(Node):
    """A function call ``f(x)`` (``target`` None) or a method call ``x.f(y)``."""

    name: str = ""
    target: Node | None = None
    args: list[Node] = field(default_factory=list)
    sig: Any = field(default=None, init=False)  # set by the checker: the signature the call resolved to


@dataclass(eq=False)
class Unary(Node):
    op: str = ""
    operand: Node | None = None


@dataclass(eq=False)
class Binary(Node):
    """Arithmetic, comparison, ``in``, ``&&`` and ``||``."""

    op: str = ""
    left: Node | None = None
    right: Node | None = None


@dataclass(eq=False)
class Cond(Node):
    cond: Node | None = None
    then: Node | None = None
    other: Node | None = None


@dataclass(eq=False)
class ListLit(Node):
    items: list[Node] = field(default_factory=list)


@dataclass(eq=False)
class Macro(Node):
    """``list.exists(x, pred)``, ``all``, ``exists_one``, ``filter``, ``map``."""

    name: str = ""
    target: Node | None = None
    var: str = ""
    body: Node | None = None


def children(node: Node) -> list[Node]:
    """The direct sub-expressions of ``node``."""
    out: list[Node | None]
    if isinstance(node, (Select,)):
        out = [node.operand]
    elif isinstance(node, Index):
        out = [node.operand, node.index]
    elif isinstance(node, Call):
        out = [node.target, *node.args]
    elif isinstance(node, Unary):
        out = [node.operand]
    elif isinstance(node, Binary):
        out = [node.left, node.right]
    elif isinstance(node, Cond):
        out = [node.cond, node.then, node.other]
    elif isinstance(node, ListLit):
        out = list(node.items)
    elif isinstance(node, Macro):
        out = [node.target, node.body]
    else:
        out = []
    return [n for n in out if n is not None]


def dotted(node: Node) -> str | None:
    """``customer.clv`` for a chain of selections from a name, else None."""
    if isinstance(node, Ident):
        return node.name
    if isinstance(node, Select) and node.operand is not None:
        base = dotted(node.operand)
        return f"{base}.{node.field}" if base is not None else None
    return None
