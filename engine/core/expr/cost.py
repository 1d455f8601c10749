"""A static bound on the work of an expression, in the spirit of CEL's cost estimator (#19).

Every list an expression can meet has a bounded length: a list fact at most its declared
``max_length`` items, and any list reaching a decision at most ``MAX_ITEMS`` (checked at the
boundary, ``engine.core.state``). From those, ``estimate`` gives an upper bound of the steps
an expression takes: one per name, literal, operator and call, a list's length for each
list copied (``+``, a literal, ``size`` and ``in`` walk theirs), and for a comprehension
(``exists``, ``all``, ``exists_one``, ``filter``, ``map``) its target's length times its body.
A nested comprehension multiplies, which is what makes an expression expensive.

An expression whose bound is over ``BUDGET`` is refused when the policy is loaded (E160),
located at the comprehension that makes it expensive, with the lengths it assumed: a policy
author cannot write a condition that runs for minutes on one customer. Declaring a smaller
``max_length`` on the list fact is the usual way to bring a bound under the budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.core.expr.ast import Binary, Call, Cond, ListLit, Lit, Macro, Node, Unary, children, dotted
from engine.core.expr.types import DYN, ListType

MAX_ITEMS = 10_000  # the most items of any list in the facts of one decision (the boundary checks)
BUDGET = 1_000_000  # the most steps one expression may take for one decision

# what is known of the value at a dotted path (``customer.tags``): the most items of a list
# (``MAX_ITEMS`` when undeclared), 1 for a value that is not a list, None when not known
Lengths = Callable[[str], int | None]


@dataclass(frozen=True)
class Cost:
    """An upper bound of the steps an expression takes, and the comprehension costing most
    (None when there is none) with the length it assumed for the list it walks."""

    steps: int
    costliest: Macro | None = None
    length: int = 0


def estimate(node: Node, lengths: Lengths) -> Cost:
    """The bound of ``node``'s work, given the declared list lengths (others: ``MAX_ITEMS``)."""
    return _Estimator(lengths).cost(node, {})


class _Estimator:
    def __init__(self, lengths: Lengths) -> None:
        self.lengths = lengths
        self.costliest: tuple[int, Macro, int] | None = None

    def cost(self, node: Node, scope: dict[str, int]) -> Cost:
        steps = self._steps(node, scope)
        if self.costliest is None:
            return Cost(steps)
        return Cost(steps, self.costliest[1], self.costliest[2])

    def _steps(self, node: Node, scope: dict[str, int]) -> int:
        if isinstance(node, Macro):
            assert node.target is not None and node.body is not None
            length = self.length(node.target, scope)
            inner = dict(scope)
            inner[node.var] = self.item_length(node.target, scope)
            body = self._steps(node.body, inner)
            steps = self._steps(node.target, scope) + length * (body + 1) + length
            if self.costliest is None or steps > self.costliest[0]:
                self.costliest = (steps, node, length)
            return steps
        steps = 1 + sum(self._steps(child, scope) for child in children(node))
        if isinstance(node, ListLit):
            steps += len(node.items)
        elif isinstance(node, Binary) and node.op in ("+", "in"):
            assert node.left is not None and node.right is not None
            # a list or text made of both sides (or walked by `in`): at most their lengths
            steps += self.length(node.left, scope) + self.length(node.right, scope)
        elif isinstance(node, Call) and node.name in ("size", "join", "contains", "matches"):
            steps += sum(self.length(a, scope) for a in (node.target, *node.args) if a is not None)
        return steps

    def length(self, node: Node, scope: dict[str, int]) -> int:
        """An upper bound of the length of the list ``node`` gives; 1 for anything else (a
        number, a text, a time: copying text is not counted, its length is bounded at the
        boundary by the file and request size limits)."""
        if isinstance(node, ListLit):
            return len(node.items)
        if isinstance(node, Lit | Unary):
            return len(node.value) if isinstance(node, Lit) and isinstance(node.value, list) else 1
        if isinstance(node, Macro):
            assert node.target is not None
            return self.length(node.target, scope) if node.name in ("map", "filter") else 1
        if isinstance(node, Binary):
            assert node.left is not None and node.right is not None
            if node.op != "+":
                return 1  # a comparison, a logical operator or arithmetic: not a list
            return min(self.length(node.left, scope) + self.length(node.right, scope), _TOO_MANY)
        if isinstance(node, Cond):
            assert node.then is not None and node.other is not None
            return max(self.length(node.then, scope), self.length(node.other, scope))
        if isinstance(node, Call):
            result = getattr(node.sig, "result", None)  # set by the checker
            return MAX_ITEMS if result is None or isinstance(result, ListType) or result == DYN else 1
        name = dotted(node)
        if name is not None:
            if name in scope:
                return scope[name]
            declared = self.lengths(name)
            return min(declared, MAX_ITEMS) if declared is not None else MAX_ITEMS
        return MAX_ITEMS  # an index or a selection of something unknown: any list

    def item_length(self, target: Node, scope: dict[str, int]) -> int:
        """The bound for an item of the list ``target``: a declared fact list holds scalars."""
        name = dotted(target)
        if name is not None and name not in scope and self.lengths(name) is not None:
            return 1
        if isinstance(target, ListLit) and all(isinstance(i, Lit) for i in target.items):
            return 1
        return MAX_ITEMS


_TOO_MANY = 1 << 62  # lengths are capped here so that no bound overflows into nonsense
