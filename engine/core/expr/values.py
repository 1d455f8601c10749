"""Text literals a condition compares a name with: ``outputs.value_tier == "hgh"``,
``resource.tier != "high"``, ``customer.industry in ["retail", "finanse"]``.

The loader checks them against the values the name is declared to take (an output's
``values``, a fact's ``allowed``, another domain's output): a literal outside them is a typo
that makes the comparison constant, and silently changes decisions.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping

from engine.core.expr.ast import Binary, ListLit, Lit, Node, children, dotted
from engine.errors import did_you_mean


def compared(node: Node, names: Collection[str]) -> Iterator[tuple[Lit, str]]:
    """Each text literal compared (``==``, ``!=``, ``in [...]``) with one of ``names``, and the name."""
    stack = [node]
    while stack:
        n = stack.pop()
        stack.extend(children(n))
        if not isinstance(n, Binary) or n.left is None or n.right is None:
            continue
        if n.op in ("==", "!="):
            for name_side, lit in ((n.left, n.right), (n.right, n.left)):
                name = dotted(name_side)
                if name is not None and name in names and isinstance(lit, Lit) and isinstance(lit.value, str):
                    yield lit, name
        elif n.op == "in" and isinstance(n.right, ListLit):
            name = dotted(n.left)
            if name is not None and name in names:
                for item in n.right.items:
                    if isinstance(item, Lit) and isinstance(item.value, str):
                        yield item, name


def never(node: Node, values: Mapping[str, Collection[str]]) -> Iterator[tuple[Lit, str]]:
    """The literals of ``compared`` that are not among their name's declared ``values``."""
    for lit, name in compared(node, values):
        if lit.value not in values[name]:
            yield lit, name


def never_message(
    value: str, name: str, values: Collection[str], then: str = "this comparison always gives the same answer"
) -> tuple[str, str]:
    """The message and hint for a text ``value`` that ``name`` never takes."""
    listed = ", ".join(f"`{v}`" for v in values)
    return (
        f"`{name}` is never `{value}`, so {then}",
        did_you_mean(value, [str(v) for v in values]) or f"its values: {listed}",
    )
