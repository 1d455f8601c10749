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

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from engine.core.expr import BOOL, DOUBLE, INT, STRING, Binary, Call, ListLit, Lit, Node, Type, Unary, dotted, source
from engine.core.model import Cell
from engine.errors import Location

INF = math.inf
LIMIT = 4096  # boxes kept while combining; past it the analyser gives up (and claims nothing)

Interval = tuple[float, bool, float, bool]  # low, low closed, high, high closed
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
_ORDER = ("<", "<=", ">", ">=")


# --------------------------------------------------------------------------------------------
# sets of values
# --------------------------------------------------------------------------------------------


def _nonempty(iv: Interval) -> bool:
    lo, lc, hi, hc = iv
    return lo < hi or (lo == hi and lc and hc)


def _whole(iv: Interval) -> Interval | None:
    """The interval's whole numbers, as a closed interval (infinite ends stay open)."""
    lo, lc, hi, hc = iv
    if not _nonempty(iv) or lo == INF or hi == -INF:
        return None
    if lo != -INF:
        lo, lc = (math.ceil(lo) if lc else math.floor(lo) + 1), True
    if hi != INF:
        hi, hc = (math.floor(hi) if hc else math.ceil(hi) - 1), True
    out = (float(lo), lc, float(hi), hc)
    return out if _nonempty(out) else None


def _merge(ivs: Iterable[Interval], integer: bool) -> tuple[Interval, ...]:
    items = [w for iv in ivs if (w := _whole(iv) if integer else iv) is not None and _nonempty(w)]
    items.sort(key=lambda iv: (iv[0], not iv[1]))
    out: list[Interval] = []
    for iv in items:
        if out:
            lo, lc, hi, hc = out[-1]
            if iv[0] < hi or (iv[0] == hi and (hc or iv[1])) or (integer and iv[0] == hi + 1):
                top = max((hi, hc), (iv[2], iv[3]))
                out[-1] = (lo, lc, top[0], top[1])
                continue
        out.append(iv)
    return tuple(out)


def _meet(a: Sequence[Interval], b: Sequence[Interval], integer: bool) -> tuple[Interval, ...]:
    out = []
    for x in a:
        for y in b:
            low = max((x[0], not x[1]), (y[0], not y[1]))
            high = min((x[2], x[3]), (y[2], y[3]))
            out.append((low[0], not low[1], high[0], high[1]))
    return _merge(out, integer)


def _outside(ivs: Sequence[Interval]) -> list[Interval]:
    out, lo, lc = [], -INF, False
    for a, ac, b, bc in ivs:
        out.append((lo, lc, a, not ac))
        lo, lc = b, not bc
    out.append((lo, lc, INF, False))
    return out


def _num(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x  # NaN is no figure


def _float(x: float) -> float:
    """``x`` as a float; a whole number too large for one becomes an infinity."""
    try:
        return float(x)
    except OverflowError:
        return INF if x > 0 else -INF


@dataclass(frozen=True)
class Values:
    """A set of values of one variable: numbers (intervals), text, true/false and null."""

    nums: tuple[Interval, ...] = ()
    strs: frozenset[str] = frozenset()
    co: bool = False  # True: every text except ``strs``
    bools: frozenset[bool] = frozenset()
    null: bool = False
    integer: bool = False  # the numbers are whole numbers only

    @staticmethod
    def of(items: Iterable[Any]) -> Values | None:
        """The set of these constants, or None when one is not a plain value (a list, a map)."""
        nums: list[Interval] = []
        strs: set[str] = set()
        bools: set[bool] = set()
        null = False
        for x in items:
            if isinstance(x, bool):
                bools.add(x)
            elif _num(x):
                nums.append((_float(x), True, _float(x), True))
            elif isinstance(x, str):
                strs.add(x)
            elif x is None:
                null = True
            else:
                return None
        return Values(_merge(nums, False), frozenset(strs), False, frozenset(bools), null)

    @staticmethod
    def between(lo: float, lo_closed: bool, hi: float, hi_closed: bool, integer: bool = False) -> Values:
        return Values(_merge([(_float(lo), lo_closed, _float(hi), hi_closed)], integer), integer=integer)

    @staticmethod
    def everything() -> Values:
        return Values(((-INF, False, INF, False),), frozenset(), True, frozenset((True, False)), True)

    @property
    def empty(self) -> bool:
        return not self.nums and not self.strs and not self.co and not self.bools and not self.null

    def numbers(self) -> Values:
        return Values(self.nums, integer=self.integer)

    def __and__(self, other: Values) -> Values:
        integer = self.integer or other.integer
        if self.co and other.co:
            strs, co = self.strs | other.strs, True
        elif self.co or other.co:
            inside, excluded = (other.strs, self.strs) if self.co else (self.strs, other.strs)
            strs, co = inside - excluded, False
        else:
            strs, co = self.strs & other.strs, False
        nums = _meet(self.nums, other.nums, integer)
        return Values(nums, strs, co, self.bools & other.bools, self.null and other.null, integer)

    def __or__(self, other: Values) -> Values:
        integer = self.integer and other.integer
        if self.co and other.co:
            strs, co = self.strs & other.strs, True
        elif self.co or other.co:
            inside, excluded = (other.strs, self.strs) if self.co else (self.strs, other.strs)
            strs, co = excluded - inside, True
        else:
            strs, co = self.strs | other.strs, False
        nums = _merge((*self.nums, *other.nums), integer)
        return Values(nums, strs, co, self.bools | other.bools, self.null or other.null, integer)

    def __invert__(self) -> Values:
        nums = _merge(_outside(self.nums), self.integer)
        bools = frozenset((True, False)) - self.bools
        return Values(nums, self.strs, not self.co, bools, not self.null, self.integer)

    def __sub__(self, other: Values) -> Values:
        return self & ~other

    def example(self) -> Any:
        """One value of the set, for messages (None only when the set is empty or null)."""
        if self.strs and not self.co:
            return sorted(self.strs)[0]
        if self.co:
            return next(t for t in ("other", "other text", "other value") if t not in self.strs)
        if self.bools:
            return sorted(self.bools)[-1]
        if self.nums:
            lo, lc, hi, hc = self.nums[0]
            if lo == -INF and hi == INF:
                value = 0.0
            elif lo == -INF:
                value = hi if hc else hi - 1
            elif hi == INF:
                value = lo if lc else lo + 1
            else:
                value = lo if lc else hi if hc else (lo + hi) / 2
            return int(value) if value.is_integer() else value
        return None

    def describe(self) -> str:
        """The set as an officer would write it: `high`, one of `a`, `b`, `[10 .. 50)`, `>= 3`."""
        parts = [f"`{s}`" for s in sorted(self.strs)] if not self.co else []
        parts += [f"`{str(b).lower()}`" for b in sorted(self.bools)]
        parts += [_interval_text(iv) for iv in self.nums]
        if self.null:
            parts.append("null")
        if self.co:
            others = ", ".join(f"`{s}`" for s in sorted(self.strs))
            parts.insert(0, f"any text but {others}" if others else "any text")
        if len(parts) == 1:
            return parts[0]
        return "one of " + ", ".join(parts)


def _figure(x: float) -> str:
    return str(int(x)) if x.is_integer() else f"{x:g}"


def _interval_text(iv: Interval) -> str:
    lo, lc, hi, hc = iv
    if lo == hi:
        return f"`{_figure(lo)}`"
    if lo == -INF and hi == INF:
        return "any number"
    if lo == -INF:
        return f"`{'<=' if hc else '<'} {_figure(hi)}`"
    if hi == INF:
        return f"`{'>=' if lc else '>'} {_figure(lo)}`"
    return f"`{'[' if lc else '('}{_figure(lo)} .. {_figure(hi)}{']' if hc else ')'}`"


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


def compare(universe: Values, op: str, value: Any) -> tuple[Values, Values] | None:
    """(values for which ``x op value`` is true, those for which it is false); None: not readable."""
    if op in ("==", "!=", "in"):
        if op == "in" and not isinstance(value, list):
            return None
        consts = Values.of(value if op == "in" else [value])
        if consts is None:
            return None
        true, false = universe & consts, universe - consts
        return (false, true) if op == "!=" else (true, false)
    if op in _ORDER and _num(value):
        v = _float(value)
        interval = {
            "<": (-INF, False, v, False),
            "<=": (-INF, False, v, True),
            ">": (v, False, INF, False),
            ">=": (v, True, INF, False),
        }[op]
        numbers = universe.numbers()
        true = numbers & Values.between(*interval)
        return true, numbers - true
    return None


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
