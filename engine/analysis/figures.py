"""``charter lint``'s L040: a rule's message that states a figure its rule does not hold.

Officers write what a rule does into its message ("default risk of 60% or more", "weekly
contact", "kept 5 years"); when they later edit the figure (``>= 0.5``, ``7`` to ``10``,
``5y`` to ``7y``) the message silently goes stale, and every decision cites the old figure.

``stated`` reads the figures a message states: a percentage (``60%``), an amount of time
(``180 days``, ``4 hours``, ``3 years``, ``two weeks``; ``weekly``, ``monthly`` ...) or a
plain number (``2 or less``, ``0.6``), numbers written out to twelve included. Each domain
says which figures a rule holds (``Figure``: a number, or a span of hours from shortest to
longest, since months and years vary). A stated figure is checked only against a rule
holding a figure of a kind it can mean, and reported when none agrees:

* a percentage agrees with a number ``N/100`` or ``N`` (a band's width counts as a number);
* an amount of time with a span of hours that overlaps it, or a number equal to its count
  (``3 years`` and ``relationship_years < 3``);
* a plain number with a number equal to it.

Working and business days are not checked: their length is the calendar's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from engine.analysis.findings import WARNING, Context, Related
from engine.core.expr.ast import Call, Lit, Node, children
from engine.core.load import DocPath
from engine.core.model import BandsDecl, Policy
from engine.errors import Location

HOUR = 3600  # seconds


@dataclass(frozen=True)
class Figure:
    """A figure a rule holds: a number (``hours`` None), or an amount of time from ``low`` to
    ``high`` hours; ``shown`` as the policy writes it, ``location`` where."""

    low: float
    high: float
    shown: str
    location: Location | None = None  # the rule's; ``path`` (and ``offset`` in its text) inside it
    hours: bool = False
    path: DocPath = ()
    offset: int | None = None

    @classmethod
    def number(cls, value: float, shown: str, location: Location | None = None, path: DocPath = ()) -> Figure:
        return cls(float(value), float(value), shown, location, path=path)

    @classmethod
    def span(cls, low: float, high: float, shown: str, location: Location | None = None, path: DocPath = ()) -> Figure:
        return cls(float(low), float(high), shown, location, hours=True, path=path)


@dataclass(frozen=True)
class Stated:
    """A figure a message states: its text and place, its kind (``percent``, ``time`` or
    ``number``), the number as written and, for time, its span in hours."""

    text: str
    start: int
    kind: str
    count: float
    low: float = 0.0
    high: float = 0.0


_WORDS = {
    w: i
    for i, w in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"],
    )
}
_UNITS = {  # hours, shortest to longest
    "hour": (1, 1),
    "day": (24, 24),
    "week": (168, 168),
    "month": (28 * 24, 31 * 24),
    "year": (365 * 24, 366 * 24),
}
_EVERY = {
    "hourly": (1, 1),
    "daily": (24, 24),
    "weekly": (168, 168),
    "fortnightly": (336, 336),
    "biweekly": (336, 336),
    "monthly": (28 * 24, 31 * 24),
    "quarterly": (89 * 24, 92 * 24),
    "yearly": (365 * 24, 366 * 24),
    "annually": (365 * 24, 366 * 24),
}
_NUMBER = r"(?P<n>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|" + "|".join(_WORDS) + r")"
_FIGURE = re.compile(
    rf"(?<![\w.§/,-]){_NUMBER}(?:\s*(?P<pct>%)|\s+(?P<work>working|business)\s+days?|"
    rf"[\s-]+(?P<unit>hour|day|week|month|year)s?\b|(?P<plain>(?![\w.%/,-])))"
    rf"|\b(?P<every>{'|'.join(_EVERY)})\b"
    r"|\b(?P<one>an?)\s+(?P<one_unit>hour|day|week|month|year)\b"
    r"|(?<!first )(?<!second )(?<!last )\b(?P<half>half)\b",
    re.IGNORECASE,
)
_SOURCE = re.compile(
    r"\((?:source|default)[^)]*\)|§\s*[\d.]+|\b(?:Art\.|Article|Section|Clause|No\.)\s*\d+|\b(?:19|20)\d\d\b",
    re.IGNORECASE,
)


def stated(message: str) -> list[Stated]:
    """The figures ``message`` states, in order (citations and years like ``2025`` left out)."""
    blanked = _SOURCE.sub(lambda m: " " * len(m.group()), message)
    out: list[Stated] = []
    for m in _FIGURE.finditer(blanked):
        if m.group("every"):
            lo, hi = _EVERY[m.group("every").lower()]
            out.append(Stated(m.group(), m.start(), "time", 1.0, lo, hi))
            continue
        if m.group("one"):
            lo, hi = _UNITS[m.group("one_unit").lower()]
            out.append(Stated(m.group(), m.start(), "time", 1.0, lo, hi))
            continue
        if m.group("half"):
            out.append(Stated(m.group(), m.start(), "number", 0.5))
            continue
        if m.group("work"):
            continue  # a working day lasts what the calendar says
        raw = m.group("n").lower()
        count = float(_WORDS[raw]) if raw in _WORDS else float(raw.replace(",", ""))
        if m.group("pct"):
            out.append(Stated(m.group(), m.start(), "percent", count))
        elif m.group("unit"):
            lo, hi = _UNITS[m.group("unit").lower()]
            out.append(Stated(m.group(), m.start(), "time", count, count * lo, count * hi))
        elif raw not in _WORDS:  # "one", "two" alone are too often not figures
            out.append(Stated(m.group(), m.start(), "number", count))
    return out


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


# a plain number read as an amount of time, in each unit a fact may count in (hours, days,
# weeks, months, years: `days_since_order > 180` is "6 months"), shortest to longest hours
_AS_TIME = ((1, 1), (24, 24), (168, 168), (28 * 24, 31 * 24), (365 * 24, 366 * 24))


def _agrees(s: Stated, f: Figure) -> bool:
    if s.kind == "time":
        if f.hours:
            return s.low <= f.high + 1e-9 and f.low <= s.high + 1e-9
        return _close(s.count, f.low) or any(
            f.low * lo <= s.high + 1e-9 and s.low <= f.low * hi + 1e-9 for lo, hi in _AS_TIME
        )
    if f.hours:
        return False
    if s.kind == "percent":
        return _close(s.count / 100, f.low) or _close(s.count, f.low)
    return _close(s.count, f.low)


def _checkable(s: Stated, figures: Sequence[Figure]) -> bool:
    """Whether the rule holds a figure of a kind ``s`` can mean (else it speaks of another thing)."""
    if s.kind == "time":
        return bool(figures)
    return any(not f.hours for f in figures)


def check_message(
    ctx: Context, rule_id: str, message: str, base: Location, path: DocPath, figures: Sequence[Figure]
) -> None:
    """L040 for each figure ``message`` (at ``path`` of ``base``'s file) states that none of
    ``figures`` agrees with."""
    if not message or not figures:
        return
    for s in stated(message):
        if not _checkable(s, figures) or any(_agrees(s, f) for f in figures):
            continue
        held = ", ".join(dict.fromkeys(f"`{f.shown}`" for f in figures))
        ctx.add(
            "L040",
            WARNING,
            f"the message of `{rule_id}` says `{s.text.strip()}`, but the rule holds {held}",
            ctx.at(base, path, offset=s.start),
            "update the message to the figure the rule holds, or the figure to the message",
            [Related(_place(ctx, f), f"`{f.shown}` is here") for f in figures if f.location is not None][:1],
        )


def _place(ctx: Context, f: Figure) -> Location:
    assert f.location is not None
    if not f.path:
        return f.location
    return ctx.at(f.location, f.path, offset=f.offset) if f.offset is not None else ctx.at(f.location, f.path)


def check_steps(ctx: Context, policy: Policy) -> None:
    """L040 over a policy's bands and decision tables (the core's steps)."""
    for step in policy.steps:
        if isinstance(step, BandsDecl):
            for band in step.bands:
                shown = f"from {_number(band.low)} to {_number(band.high)}"
                at = (*band.location.path, "from")
                figures = [
                    Figure.number(v, shown, band.location, at) for v in (band.high - band.low, band.low, band.high)
                ]
                path = (*band.location.path, "message")
                check_message(ctx, band.id, band.message, band.location, path, figures)
            continue
        for rule in step.rules:
            when = (*rule.location.path, "when")
            figures = condition_figures(rule.when, rule.location, when)
            figures += numbers(rule.then.items(), rule.location, (*rule.location.path, "then"))
            for cell in rule.match.values():
                for v in (cell.value, *cell.values, cell.low, cell.high):
                    if type(v) in (int, float):
                        figures.append(Figure.number(v, _number(v), rule.location, (*rule.location.path, "match")))
            check_message(ctx, rule.id, rule.message, rule.location, (*rule.location.path, "message"), figures)


# -- the figures of a condition --------------------------------------------------------------


def condition_figures(node: Node | None, where: Location | None = None, path: DocPath = ()) -> list[Figure]:
    """The numbers a condition compares with, and its ``duration("...")`` amounts of time."""
    from engine.core.expr.functions import parse_duration  # only when lint runs

    out: list[Figure] = []
    stack = [node] if node is not None else []
    while stack:
        n = stack.pop()
        if isinstance(n, Call) and n.name == "duration" and n.args and isinstance(n.args[0], Lit):
            text = n.args[0].value
            if isinstance(text, str):
                try:
                    hours = parse_duration(text).total_seconds() / HOUR
                except ValueError:
                    continue
                out.append(Figure(hours, hours, f'duration("{text}")', where, True, path, n.start))
            continue
        if isinstance(n, Lit) and type(n.value) in (int, float):
            out.append(Figure(float(n.value), float(n.value), _number(n.value), where, False, path, n.start))
        stack.extend(children(n))
    return out


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def seconds_figure(seconds: float, key: str, where: Location | None = None, path: DocPath = ()) -> Figure:
    """An amount of time of ``seconds`` a rule's ``key`` holds, shown as ``key: 48h``."""
    for unit, size in (("d", 86400), ("h", HOUR), ("m", 60)):
        if seconds and seconds % size == 0:
            text = f"{int(seconds // size)}{unit}"
            break
    else:
        text = f"{seconds:g}s"
    return Figure.span(seconds / HOUR, seconds / HOUR, f"{key}: {text}", where, path)


def numbers(values: Iterable[tuple[str, object]], where: Location | None = None, path: DocPath = ()) -> list[Figure]:
    """Number figures of (name, value) pairs a rule sets; names ending ``_days`` or ``_hours``
    give amounts of time (``contact_cadence_days: 7`` is a week)."""
    out: list[Figure] = []
    for name, value in values:
        if type(value) not in (int, float):
            continue
        v = float(value)  # type: ignore[arg-type]
        if name.endswith("_days"):
            out.append(Figure.span(v * 24, v * 24, f"{name}: {_number(v)}", where, path))
        elif name.endswith("_hours"):
            out.append(Figure.span(v, v, f"{name}: {_number(v)}", where, path))
        out.append(Figure.number(v, f"{name}: {_number(v)}", where, path))
    return out
