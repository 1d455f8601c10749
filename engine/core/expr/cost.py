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

At run time a ``Meter`` enforces the same budget on each evaluation of an expression for one
decision, by counting work, never reading a clock: a comprehension spends its list's length
(and one) each time it runs, ``map`` and ``filter`` the length of the list they build, and a
``+`` of two texts or two lists the length of its result, spent *before* the result is made;
no text or list built may be longer than ``MAX_SIZE``. Plain comparisons, arithmetic and
calls are not counted (they cost the hot path nothing). The count never exceeds the static
bound for lists within the lengths the bound assumed, so the guard stops only what the
static model cannot see: texts built by ``+`` (their length is not known at load), and lists
longer than assumed (a plugin function's result, facts that did not pass the boundary). Over
the budget, ``BudgetExceeded`` (V008) fails the decision; the same facts fail the same way
on replay. ``Meter.budget`` and ``Meter.max_size`` are read at run time, never captured when
compiling: tests lower them (``monkeypatch.setattr(Meter, "budget", 100)``) after a policy
loads, to reach them with small facts while E160 checks the real budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.core.expr.ast import Binary, Call, Cond, ListLit, Lit, Macro, Node, Unary, children, dotted
from engine.core.expr.errors import BudgetExceeded
from engine.core.expr.printer import source
from engine.core.expr.types import DYN, ListType

MAX_ITEMS = 10_000  # the most items of any list in the facts of one decision (the boundary checks)
BUDGET = 1_000_000  # the most steps one expression may take for one decision
MAX_SIZE = 100_000  # the most characters of a text, or items of a list, one expression may build

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


# --------------------------------------------------------------------------------------------
# the run-time guard
# --------------------------------------------------------------------------------------------

METER = "\x00meter"  # where an evaluation's count sits in its activation (no name can be this)


class Meter:
    """The run-time limits: class attributes, read when each evaluation starts, so that a
    test can lower them. One evaluation's count is a one-item list, ``[steps left]`` (from
    ``budget``) at ``METER`` in its copy of the activation: the cheapest cell its closures
    can share; the same facts count the same."""

    budget = BUDGET
    max_size = MAX_SIZE


def over(node: Node, size: int = 0, what: str = "list") -> BudgetExceeded:
    """The error when ``node`` (a comprehension or ``+``) spent past the budget or was to build
    a ``what`` ("text" or "list") of ``size``, more than ``Meter.max_size``."""
    text = _shown(node)
    if size > Meter.max_size:
        unit = "characters" if what == "text" else "items"
        return BudgetExceeded(
            f"`{text}` would build a {what} of {size:,} {unit}, more than the {Meter.max_size:,} allowed",
            expression=text,
            hint="test parts of a text (`startsWith`, `contains`, `matches`) rather than building a longer one",
        )
    return BudgetExceeded(
        f"`{text}` goes over the {Meter.budget:,} steps one expression may take for one decision",
        expression=text,
        hint="walk shorter lists (declare a smaller `max_length` on the list fact), or nest fewer comprehensions",
    )


def _shown(node: Node, most: int = 120) -> str:
    """``node``'s text, cut to ``most`` characters (a long chain of ``+`` is not echoed whole)."""
    text = source(node)
    return text if len(text) <= most else text[: most - 1] + "…"
