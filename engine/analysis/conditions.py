"""Condition analysis for ``charter lint``: the cases in which a condition is true, as sets.

A condition is read three-valued, the way the engine runs it (docs/expressions.md): true,
false, or *undefined* when it reads an absent fact — and an undefined condition does not
match. For every condition the analyser builds two sets of cases, where it is true and
where it is false; the rest is where it is undefined. A set of cases is a union of boxes
(``Cube``): each box gives, per variable (``customer.x``, ``scores.y``, ``outputs.z``, a
table input), the states it may be in — absent, or one of a set of values.

A variable's possible states come from its declaration (``Space``): type, ``min``,
``max``, ``allowed``, an output's ``values``, whether it can be absent (not ``required``
and no ``default``) or null (an output no rule may set). Comparisons of one variable with
constants (``== != < <= > >= in``), ``has()``, ``!``, ``&&``, ``||`` and ``true``/``false``
are read exactly; anything else (arithmetic, functions, times, two variables compared)
becomes an *opaque* proposition that may be true, false or undefined independently of
everything else. So every claim made here — never true, always true, one condition
implies another, inputs no row covers — holds for every customer; when the analyser
cannot prove a claim (or the sets grow past ``LIMIT`` boxes) it makes none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from engine.analysis.values import INF, Values, compare
from engine.core.expr import BOOL, DOUBLE, INT, STRING, Binary, Call, ListLit, Lit, Node, Type, Unary, dotted, source
from engine.core.model import Cell
from engine.errors import Location

LIMIT = 4096  # boxes kept while combining; past it the analyser gives up (and claims nothing)
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


# --------------------------------------------------------------------------------------------
# variables, their states, and boxes of states
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    """The states a variable may be in: one of ``values``, or (``absent``) not there at all."""

    values: Values
    absent: bool = False

    @property
    def empty(self) -> bool:
        return self.values.empty and not self.absent

    def __and__(self, other: State) -> State:
        return State(self.values & other.values, self.absent and other.absent)

    def __sub__(self, other: State) -> State:
        return State(self.values - other.values, self.absent and not other.absent)


@dataclass(frozen=True)
class Var:
    """A variable a condition reads, with what its declaration allows.

    ``bounds`` says in words what the declaration limits (``max 1``, ``allowed: a, b``);
    ``location`` is the declaration's, for findings that name it.
    """

    name: str
    universe: Values
    absent: bool = True
    location: Location | None = None
    bounds: str = ""
    kind: str = "value"  # value | opaque
    known: bool = True  # False: a type the analyser does not read (times, lists), or undeclared

    def full(self) -> State:
        return State(self.universe, self.absent)


Cube = Mapping[str, State]  # a variable left out is in any of its states
Cases = list[Cube]  # a union of boxes; [] is no case at all, [{}] is every case


@dataclass
class Space:
    """The variables a set of conditions reads. Unknown ones may hold anything, or be absent."""

    vars: dict[str, Var] = field(default_factory=dict)

    def var(self, name: str) -> Var:
        found = self.vars.get(name)
        if found is None:
            found = self.vars[name] = Var(name, Values.everything(), known=False)
        return found

    def add(self, var: Var) -> Var:
        self.vars[var.name] = var
        return var

    def opaque(self, node: Node) -> Var:
        name = "?" + source(node)
        found = self.vars.get(name)
        if found is None:
            found = self.vars[name] = Var(name, Values(bools=frozenset((True, False))), kind="opaque")
        return found

    def full(self, name: str) -> State:
        return self.var(name).full()


def _box(space: Space, a: Cube, b: Cube) -> Cube | None:
    out = dict(a)
    for name, state in b.items():
        both = out[name] & state if name in out else state & space.full(name)
        if both.empty:
            return None
        out[name] = both
    return out


def meet(space: Space, a: Cases | None, b: Cases | None) -> Cases | None:
    """The cases in both ``a`` and ``b`` (None: unknown, or too many boxes)."""
    if a is None or b is None:
        return None
    out = [c for x in a for y in b if (c := _box(space, x, y)) is not None]
    return out if len(out) <= LIMIT else None


def join(a: Cases | None, b: Cases | None) -> Cases | None:
    if a is None or b is None:
        return None
    out = [*a, *b]
    return out if len(out) <= LIMIT else None


def subtract(space: Space, a: Cases | None, b: Cases | None) -> Cases | None:
    """The cases in ``a`` and not in ``b``, as disjoint pieces (None: unknown)."""
    if a is None or b is None:
        return None
    result = list(a)
    for cut in b:
        pieces: list[Cube] = []
        for box in result:
            rest: dict[str, State] = dict(box)
            for name, state in cut.items():
                have = rest.get(name) or space.full(name)
                outside = have - state
                if not outside.empty:
                    pieces.append({**rest, name: outside})
                inside = have & state
                if inside.empty:
                    break
                rest[name] = inside
        result = pieces
        if len(result) > LIMIT:
            return None
    return result


def implies(space: Space, a: Cases | None, b: Cases | None) -> bool | None:
    """Whether every case of ``a`` is a case of ``b`` (None: could not tell)."""
    left = subtract(space, a, b)
    return None if left is None else not left


def always(space: Space, a: Cases | None) -> bool | None:
    """Whether ``a`` holds in every case, absent facts included (None: could not tell)."""
    return implies(space, [{}], a)


def same(space: Space, a: Cases | None, b: Cases | None) -> bool | None:
    one, two = implies(space, a, b), implies(space, b, a)
    return None if one is None or two is None else one and two


# --------------------------------------------------------------------------------------------
# conditions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Analysis:
    """Where a condition is true and where it is false (elsewhere it is undefined)."""

    true: Cases | None
    false: Cases | None


@dataclass(frozen=True)
class Atom:
    """One comparison the analyser read exactly: its node, variable and true/false value sets."""

    node: Node
    var: Var
    true: State
    false: State


def analyse(node: Node, space: Space, atoms: list[Atom] | None = None) -> Analysis:
    """The true and false cases of a checked condition. ``atoms`` collects its comparisons."""
    if isinstance(node, Lit) and isinstance(node.value, bool):
        return Analysis([{}], []) if node.value else Analysis([], [{}])
    if isinstance(node, Unary) and node.op == "!" and node.operand is not None:
        inner = analyse(node.operand, space, atoms)
        return Analysis(inner.false, inner.true)
    if isinstance(node, Binary) and node.op in ("&&", "||") and node.left is not None and node.right is not None:
        a, b = analyse(node.left, space, atoms), analyse(node.right, space, atoms)
        if node.op == "&&":
            return Analysis(meet(space, a.true, b.true), join(a.false, b.false))
        return Analysis(join(a.true, b.true), meet(space, a.false, b.false))
    atom = _atom(node, space)
    if atom is None:
        var = space.opaque(node)
        atom = Atom(node, var, State(Values(bools=frozenset((True,)))), State(Values(bools=frozenset((False,)))))
    elif atoms is not None:
        atoms.append(atom)
    true: Cases = [{atom.var.name: atom.true}] if not atom.true.empty else []
    false: Cases = [{atom.var.name: atom.false}] if not atom.false.empty else []
    return Analysis(true, false)


def _var(node: Node | None, space: Space) -> Var | None:
    """The variable ``node`` names: a dotted path (``customer.x``), or a declared plain name."""
    path = dotted(node) if node is not None else None
    if path is None or ("." not in path and path not in space.vars):
        return None
    return space.var(path)


def _constant(node: Node | None) -> tuple[bool, Any]:
    if isinstance(node, Lit):
        return True, node.value
    if isinstance(node, ListLit) and all(isinstance(i, Lit) for i in node.items):
        return True, [i.value for i in node.items if isinstance(i, Lit)]
    return False, None


def _atom(node: Node, space: Space) -> Atom | None:
    if isinstance(node, Call) and node.name == "has" and node.target is None and len(node.args) == 1:
        var = _var(node.args[0], space)
        if var is None:
            return None
        return Atom(node, var, State(var.universe), State(Values(), var.absent))
    if isinstance(node, Binary) and node.op in (*_FLIP, "in"):
        op, var, (is_const, value) = node.op, _var(node.left, space), _constant(node.right)
        if var is None and op != "in":
            op, var, (is_const, value) = _FLIP[op], _var(node.right, space), _constant(node.left)
        if var is None or not is_const:
            return None
        sets = compare(var.universe, op, value)
        return None if sets is None else Atom(node, var, State(sets[0]), State(sets[1]))
    var = _var(node, space)
    if var is not None and var.kind == "value" and node.type == BOOL:
        universe = var.universe
        return Atom(node, var, State(universe & Values(bools=frozenset((True,)))), State(universe & _FALSE))
    return None


_FALSE = Values(bools=frozenset((False,)))


# --------------------------------------------------------------------------------------------
# decision-table cells
# --------------------------------------------------------------------------------------------


def cell_state(cell: Cell, var: Var) -> State | None:
    """The input states a cell matches, as ``engine.core.cells.test`` decides (None: not readable)."""
    universe = var.universe
    if cell.op == "any":
        return var.full()
    if cell.op == "range":
        assert cell.low is not None and cell.high is not None
        return State(universe.numbers() & Values.between(cell.low, cell.low_closed, cell.high, cell.high_closed))
    if cell.op in ("eq", "in", "ne"):
        consts = Values.of(cell.values if cell.op == "in" else [cell.value])
        if consts is None:
            return None
        if cell.op == "ne":  # `!=` also matches an undefined input
            return State(universe - consts, var.absent)
        return State(universe & consts)
    sets = compare(universe, {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}[cell.op], cell.value)
    return None if sets is None else State(sets[0])


def universe_of(kind: Type | None) -> Values | None:
    """The values an expression of this checked type can take, for an input that is no plain name."""
    if kind == BOOL:
        return Values(bools=frozenset((True, False)))
    if kind == INT:
        return Values.between(-INF, False, INF, False, integer=True)
    if kind == DOUBLE:
        return Values.between(-INF, False, INF, False)
    if kind == STRING:
        return Values(co=True)
    return None


def present(var: Var) -> Var:
    """The variable without its absent and null states: what a coverage check ranges over."""
    return replace(var, universe=replace(var.universe, null=False), absent=False)
