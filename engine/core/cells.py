"""Decision-table cells: the unary tests of a row's ``match:`` (DMN style).

A cell is written as YAML:

* ``high``, ``7``, ``true`` — equals that value;
* ``[finance, retail]`` — any of those values;
* ``">= 0.8"``, ``"< 3"``, ``"!= retail"`` — a comparison with a constant;
* ``"[10 .. 50)"`` — a range; ``[`` and ``]`` include the end, ``(`` and ``)`` leave it out;
* ``"-"`` or ``any`` — anything.

Because cells are constants, whether two rows can both match is decidable: ``overlaps``
finds every such pair for ``hit: unique`` tables at load time.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from typing import Any

from engine.core.model import Cell, RuleDecl

CELL_HINT = 'write a value, a list `[a, b]`, a comparison like `">= 0.8"` or a range like `"[10 .. 50)"`'

_CMP = re.compile(r"^\s*(>=|<=|!=|==|>|<)\s*(.+?)\s*$")
_RANGE = re.compile(r"^\s*([\[(])\s*(-?[\d.]+)\s*\.\.\s*(-?[\d.]+)\s*([\])])\s*$")
_OPS = {">=": "ge", "<=": "le", "!=": "ne", "==": "eq", ">": "gt", "<": "lt"}


def _literal(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    if text in ("true", "false"):
        return text == "true"
    return text


def parse_cell(raw: Any) -> Cell:
    """A cell from its YAML value. Raises ``ValueError`` with a plain message when malformed."""
    if isinstance(raw, list):
        if not raw:
            raise ValueError("an empty list matches nothing")
        return Cell("in", values=tuple(raw), text=str(raw))
    if not isinstance(raw, str):
        return Cell("eq", value=raw, text=str(raw))
    text = raw.strip()
    if text in ("-", "any"):
        return Cell("any", text=text)
    m = _RANGE.match(text)
    if m:
        low, high = float(m.group(2)), float(m.group(3))
        if low > high:
            raise ValueError(f"the range `{text}` is empty")
        return Cell("range", low=low, high=high, low_closed=m.group(1) == "[", high_closed=m.group(4) == "]", text=text)
    if text[:1] in "[(":
        raise ValueError(f"`{text}` is not a range")
    m = _CMP.match(text)
    if m:
        value = _literal(m.group(2))
        op = _OPS[m.group(1)]
        if op in ("lt", "le", "gt", "ge") and not isinstance(value, (int, float)):
            raise ValueError(f"`{text}` compares with something that is not a number")
        return Cell(op, value=value, text=text)
    return Cell("eq", value=raw, text=text)


# --------------------------------------------------------------------------------------------
# overlap analysis: each cell as a set of numbers (interval) or a set of discrete values
# --------------------------------------------------------------------------------------------

_Interval = tuple[float, bool, float, bool]  # low, low_closed, high, high_closed


def _interval(cell: Cell) -> _Interval | None:
    v = cell.value
    if cell.op == "range":
        assert cell.low is not None and cell.high is not None
        return (cell.low, cell.low_closed, cell.high, cell.high_closed)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return {
        "eq": (v, True, v, True),
        "lt": (-math.inf, False, v, False),
        "le": (-math.inf, False, v, True),
        "gt": (v, False, math.inf, False),
        "ge": (v, True, math.inf, False),
    }.get(cell.op)


def _meet(a: _Interval, b: _Interval) -> bool:
    low, low_closed = max((a[0], a[1]), (b[0], b[1]), key=lambda t: (t[0], not t[1]))
    high, high_closed = min((a[2], a[3]), (b[2], b[3]), key=lambda t: (t[0], t[1]))
    return low < high or (low == high and low_closed and high_closed)


def _values(cell: Cell) -> tuple[Any, ...] | None:
    if cell.op == "eq":
        return (cell.value,)
    if cell.op == "in":
        return cell.values
    return None


def cells_meet(a: Cell, b: Cell) -> bool:
    """Whether some value satisfies both cells (conservative: True when unsure)."""
    if a.op == "any" or b.op == "any":
        return True
    va, vb = _values(a), _values(b)
    if va is not None and vb is not None:
        return any((x == y and type(x) is type(y)) or _same_number(x, y) for x in va for y in vb)
    for values, other in ((va, b), (vb, a)):
        if values is not None:
            return any(test(other)(v) for v in values)
    ia, ib = _interval(a), _interval(b)
    if ia is not None and ib is not None:
        return _meet(ia, ib)
    if a.op == "ne" and b.op == "ne":
        return True
    return True


def _same_number(x: Any, y: Any) -> bool:
    numeric = (int, float)
    return (
        isinstance(x, numeric)
        and isinstance(y, numeric)
        and not isinstance(x, bool)
        and not isinstance(y, bool)
        and x == y
    )


def overlaps(rules: Sequence[RuleDecl], inputs: Sequence[str]) -> list[tuple[RuleDecl, RuleDecl]]:
    """Every pair of rows that some input could match together."""
    out = []
    for i, a in enumerate(rules):
        for b in rules[i + 1 :]:
            if all(cells_meet(a.match.get(name, Cell("any")), b.match.get(name, Cell("any"))) for name in inputs):
                out.append((a, b))
    return out


# --------------------------------------------------------------------------------------------
# compiled tests
# --------------------------------------------------------------------------------------------

_PY_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "ne": operator.ne,
}


def test(cell: Cell) -> Callable[[Any], bool]:
    """A predicate for one cell. Never raises: a value of the wrong type does not match."""
    op, v = cell.op, cell.value
    if op == "any":
        return lambda x: True
    if op == "eq":
        return lambda x: x == v and (type(x) is type(v) or _same_number(x, v))
    if op == "in":
        values = cell.values
        return lambda x: any(x == y and (type(x) is type(y) or _same_number(x, y)) for y in values)
    if op == "range":
        lo, hi = cell.low, cell.high
        assert lo is not None and hi is not None
        lo_ok = operator.le if cell.low_closed else operator.lt
        hi_ok = operator.le if cell.high_closed else operator.lt
        return lambda x: _is_number(x) and lo_ok(lo, x) and hi_ok(x, hi)
    compare = _PY_OPS[op]
    if op == "ne":
        return lambda x: not (x == v and (type(x) is type(v) or _same_number(x, v)))
    return lambda x: _is_number(x) and compare(x, v)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)
