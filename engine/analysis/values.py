"""Sets of values for the condition analyser (``engine.analysis.conditions``).

``Values`` is a set of values one variable may take: numbers (as intervals, whole numbers
only for an integer), text (listed, or every text but those listed), true/false and null.
``compare`` reads a comparison of a variable with a constant as the two sets for which it
is true and false.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

INF = math.inf

Interval = tuple[float, bool, float, bool]  # low, low closed, high, high closed
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
