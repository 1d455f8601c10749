"""Data classification's fast path: a plan per shape of record, each detector asked once.

The decision of ``engine.domains.classification`` for a flat record (every value text, a
number, a boolean, null or a list) depends on the record's *shape* — its keys in order and
the type of each value — and on the detectors' answers. So for each shape a ``Shape`` is
made once: its fields in sorted order with their best name rule and the detector rules that
could beat it, the outcome when no detector accepts anything, and for each detector the
fields it would be asked of.

A record then costs one search per detector over all of those fields' texts joined by line
breaks, a necessary condition for the detector accepting any of them:

* a detector's screen (``DetectorSpec.screen``), searched with ``re.MULTILINE``, when it is
  context-free apart from a leading ``^`` and a trailing ``$`` (``joined_screen``): what the
  screen matches in one text it matches where that text sits in the joined text;
* a detector that declares ``by_line`` (it accepts a text exactly when it accepts one of the
  text's lines, and never raises), asked of the joined text itself.

When none of them finds anything, which is most records, the shape's outcome is the
decision. Otherwise the fields are decided one by one exactly as the reference path does,
only asking the detectors that found something (the others accept none of the texts). Records
of other shapes (nested objects, lists of objects, non-text keys) take the reference path.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from engine.core.decision import TraceStep

if TYPE_CHECKING:
    from engine.domains.classification import ClassRule, _Outcome, _Plan

    # a field's detector rules that could beat its name rule: (rule key, rule, detector, screen search)
    _Candidates = tuple[tuple[tuple[int, int], ClassRule, Any, Any], ...]

# ``re``'s own parser, to read a screen's structure; without it (another Python) no screen is
# joined and each is searched per text, as the reference path does
try:
    _PARSER: Any = importlib.import_module("re._parser")
except ImportError:  # pragma: no cover - CPython 3.11+ has it
    _PARSER = None

# what a context-free pattern may hold: the match of these at a place depends only on the
# characters matched, never on those around them (no anchor, word boundary or lookaround)
_OPEN = frozenset({"LITERAL", "NOT_LITERAL", "ANY", "IN"})
_REPEATS = frozenset({"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"})
_SCALARS = (str, int, float, bool, type(None))
_TEXT, _NUMBER, _LIST = 1, 2, 3  # what a field's value gives the detectors (``texts_of``)
MAX_SHAPES = 4096


def _context_free(items: Any) -> bool:
    for op, av in items:
        name = str(op)
        if name in _OPEN:
            continue
        if name == "BRANCH":
            if not all(_context_free(p) for p in av[1]):
                return False
        elif name == "SUBPATTERN":
            if not _context_free(av[3]):
                return False
        elif name in _REPEATS:
            if not _context_free(av[2]):
                return False
        elif name == "ATOMIC_GROUP":
            if not _context_free(av):
                return False
        else:  # AT (anchors, \\b), ASSERT / ASSERT_NOT (lookarounds), group references, ...
            return False
    return True


def joined_screen(pattern: str) -> Callable[[str], Any] | None:
    """A search of ``"\\n".join(texts)`` that finds something whenever ``pattern`` (a screen)
    finds something in one of ``texts``, or None when that cannot be shown for it.

    A context-free pattern matches the same characters wherever they sit. One that starts
    with ``^`` and ends with ``$`` apart from that matches a whole text (or all but its final
    line break): in the joined text that text starts at the start or after a line break and
    is followed by one or the end, where ``^`` and ``$`` match under ``re.MULTILINE``."""
    if _PARSER is None or not pattern:
        return None
    try:
        items = list(_PARSER.parse(pattern, 0).data)
        if items and str(items[0][0]) == "AT" and str(items[0][1]) == "AT_BEGINNING":
            items = items[1:]
        if items and str(items[-1][0]) == "AT" and str(items[-1][1]) == "AT_END":
            items = items[:-1]
        if not _context_free(items):
            return None
        return re.compile(pattern, re.MULTILINE).search
    except (re.error, TypeError, ValueError, IndexError, AttributeError):
        return None


def _getter(indices: Sequence[int]) -> Callable[[Sequence[Any]], Sequence[Any]] | None:
    """The values at ``indices``, as a tuple (``itemgetter`` of one index gives the value)."""
    if not indices:
        return None
    if len(indices) == 1:
        i = indices[0]
        return lambda values: (values[i],)
    return itemgetter(*indices)


def texts_of(value: Any) -> list[str]:
    """The texts a detector is asked of in a field's value: the text, a whole number written
    out, the items of a list that are either (lists in a list are not read)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, int) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, list):
        return [t for v in value for t in texts_of(v) if not isinstance(v, list)]
    return []


class Shape:
    """What classifies every record of one flat shape (see the module's docstring)."""

    __slots__ = ("groups", "leaves", "lists", "live", "outcome", "static")

    def __init__(
        self,
        leaves: tuple[tuple[str, int, Any, _Candidates, int], ...],
        lists: tuple[int, ...],
        groups: tuple[tuple[Any, Any, tuple[int, ...], tuple[tuple[str, Callable[[str], Any]], ...]], ...],
        live: frozenset[str],
        static: _Outcome,
        outcome: Callable[[list[tuple[str, tuple[int, int] | None]]], _Outcome],
    ) -> None:
        self.leaves = leaves  # (path, value index, found, plan's candidates, _TEXT / _NUMBER / _LIST / 0), sorted
        self.lists = lists  # the indices of list values (a list holding an object is not this shape)
        self.groups = groups  # per detector group: text getters, list indices, (detector, joined search)
        self.live = live  # detectors asked of each text whatever the joined text holds
        self.static = static  # the outcome when no detector accepts anything
        self.outcome = outcome

    def decide(self, values: Sequence[Any]) -> tuple[_Outcome, list[str]] | None:
        """The outcome and the detectors' notes for a record with these values, or None when
        a list holds an object (the record is not of this shape: the reference path decides)."""
        for i in self.lists:
            for item in values[i]:
                if isinstance(item, dict):
                    return None
        live = self.live
        for strings, numbers, lists, searches in self.groups:
            parts = list(strings(values)) if strings is not None else []
            if numbers is not None:
                parts.extend(map(str, numbers(values)))
            for i in lists:
                parts.extend(texts_of(values[i]))
            joined = "\n".join(parts)
            for name, search in searches:
                if name in live:
                    continue
                try:
                    found = bool(search(joined))
                except Exception:  # a detector's bug: it is asked of each text, and noted there
                    found = True
                if found:
                    live = live | {name}
        if not live:
            return self.static, []
        return self._one_by_one(values, live)

    def _one_by_one(self, values: Sequence[Any], live: frozenset[str]) -> tuple[_Outcome, list[str]]:
        """The reference path's loop (``_Compiled.__call__`` without a trace), asking only the
        ``live`` detectors: each of the others accepts none of the texts."""
        notes: list[str] = []
        chosen: list[tuple[str, tuple[int, int] | None]] = []
        for path, i, found, candidates, kind in self.leaves:
            if kind:
                value = values[i]
                texts = [value] if kind == _TEXT else [str(value)] if kind == _NUMBER else texts_of(value)
                if texts:
                    hit = first_hit(path, texts, candidates, notes, live=live)
                    if hit is not None:
                        found = hit
            chosen.append((path, found))
        return self.outcome(chosen), notes


def first_hit(
    path: str,
    texts: Sequence[str],
    candidates: _Candidates,
    notes: list[str],
    *,
    live: frozenset[str] | None = None,
    trace: list[TraceStep] | None = None,
) -> tuple[int, int] | None:
    """The key of the first detector rule (most restrictive first) accepting one of ``texts``
    of the field at ``path``, or None: the one definition both paths decide by. A detector's
    screen skips the texts it does not find, except when tracing (each detector is asked
    and its answer recorded); ``live``: only these detectors are asked (the fast path, where
    the others were shown to accept nothing). A detector that raises is noted, and its rule
    does not classify the field."""
    for key, rule, detect, screen in candidates:
        if live is not None and rule.detector not in live:
            continue
        hit = False
        for text in texts:
            if screen is not None and trace is None and screen(text) is None:
                continue  # a text the detector's screen does not find, it does not accept
            try:
                hit = bool(detect(text))
            except Exception as exc:  # a detector plugin's bug: reported, not fatal
                notes.append(f"detector `{rule.detector}` failed on `{path}`: {type(exc).__name__}")
                break
            if hit:
                break
        if trace is not None:
            trace.append(TraceStep(path, rule.id, hit, ((f"detector `{rule.detector}`", (), hit),)))
        if hit:
            return key
    return None


def make_shape(
    keys: tuple[Any, ...],
    types: tuple[type, ...],
    plan: Callable[[str], _Plan],
    detectors: dict[str, Any],
    screens: dict[str, Callable[[str], Any] | None],
    outcome: Callable[[list[tuple[str, tuple[int, int] | None]]], _Outcome],
) -> Shape | None:
    """The ``Shape`` of records with these keys and value types, or None when they are not
    flat (an object value, a key that is not text) and the reference path decides them.
    ``detectors``: each detector's function by name; ``screens``: its joined search."""
    if not all(type(k) is str for k in keys) or not all(t in _SCALARS or t is list for t in types):
        return None
    order = sorted(range(len(keys)), key=keys.__getitem__)
    leaves = []
    asked: dict[str, list[int]] = {}  # the fields each detector is asked of
    for i in order:
        found, candidates = plan(keys[i])
        kind = {str: _TEXT, int: _NUMBER, list: _LIST}.get(types[i], 0) if candidates else 0
        leaves.append((keys[i], i, found, candidates, kind))
        if kind:
            for _, rule, _, _ in candidates:
                asked.setdefault(str(rule.detector), []).append(i)
    live = []
    by_fields: dict[tuple[int, ...], list[tuple[str, Callable[[str], Any]]]] = {}
    for name, fields in asked.items():
        search = screens.get(name)
        if search is None and getattr(detectors.get(name), "by_line", False) is True:
            search = detectors[name]
        if search is None:
            live.append(name)
        else:
            by_fields.setdefault(tuple(dict.fromkeys(fields)), []).append((name, search))
    groups = tuple(
        (
            _getter([i for i in fields if types[i] is str]),
            _getter([i for i in fields if types[i] is int]),
            tuple(i for i in fields if types[i] is list),
            tuple(searches),
        )
        for fields, searches in by_fields.items()
    )
    static = outcome([(path, found) for path, _, found, _, _ in leaves])
    lists = tuple(i for i, t in enumerate(types) if t is list)
    return Shape(tuple(leaves), lists, groups, frozenset(live), static, outcome)
