"""How a policy document is taken apart and compared as data.

Its rules (named mappings in lists, matched by name wherever they sit), its declarations
(named mappings under a top-level key), and values compared by meaning.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from engine.core.cells import parse_cell
from engine.core.expr import ExprError, parse, source
from engine.core.load import DocPath

# what an entry of a list is called, by the list's key: at the top of a file, and deeper down
TOP_NOUNS = {
    "tables": "table",
    "bands": "bands",
    "classes": "class",
    "exceptions": "exception",
    "clocks": "clock",
    "churn_patterns": "churn pattern",
    "ladder": "ladder step",
    "priority": "priority rule",
}
NESTED_NOUNS = {"bands": "band"}
NATURAL_KEYS = ("id", "level", "tier")  # what names an entry of a list of mappings, first found wins
ORDERED_VALUES = {"values"}  # scalar lists whose order is meaning (an output's values: the priority)


# --------------------------------------------------------------------------------------------
# rules and declarations of one document
# --------------------------------------------------------------------------------------------


@dataclass
class Item:
    """A rule: a named mapping in a list, matched between the two files by its name."""

    key: str
    name: str
    noun: str
    path: DocPath
    container: str  # "table `lifecycle`", or "`rules`" at the top of the file
    parent: Item | None
    data: dict[str, Any]

    @property
    def subject(self) -> str:
        return f"{self.noun} `{self.name}`"


def _natural_key(value: Any) -> str | None:
    """The key naming each entry when ``value`` is a list of rules, else None."""
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        return None
    for key in NATURAL_KEYS:
        names = [v.get(key) for v in value]
        named = all(isinstance(n, (str, int)) and not isinstance(n, bool) for n in names)
        if named and (key == "id" or len(set(names)) == len(names)):
            return key
    return None


def _rule_keys(data: Any) -> set[str]:
    """Every key under which a list of rules sits, anywhere in ``data``."""
    found: set[str] = set()
    if isinstance(data, dict):
        for k, v in data.items():
            if _natural_key(v):
                found.add(k)
            found |= _rule_keys(v)
    elif isinstance(data, list):
        for v in data:
            found |= _rule_keys(v)
    return found


def _items(data: Any, rule_keys: set[str]) -> dict[str, Item]:
    out: dict[str, Item] = {}

    def visit(node: Any, path: DocPath, parent: Item | None) -> None:
        if isinstance(node, list):
            for i, v in enumerate(node):
                visit(v, (*path, i), parent)
        if not isinstance(node, dict):
            return
        for k, v in node.items():
            natural = _natural_key(v)
            if natural is None:
                visit(v, (*path, k), parent)
                continue
            container = f"{parent.subject}" if parent is not None else f"`{k}`"
            noun = (NESTED_NOUNS if parent else TOP_NOUNS).get(k, "rule")
            for i, entry in enumerate(v):
                name = str(entry[natural]) if natural == "id" else f"{natural}: {entry[natural]}"
                key = name if name not in out else f"{name} in {container}"
                data = _strip(entry, rule_keys, natural)
                item = out[key] = Item(key, name, noun, (*path, k, i), container, parent, data)
                visit(entry, (*path, k, i), item)

    visit(data, (), None)
    return out


def _strip(mapping: dict[str, Any], rule_keys: set[str], *drop: str) -> dict[str, Any]:
    """``mapping`` without the keys in ``drop`` and without lists of rules (compared as rules)."""
    return {
        k: _strip(v, rule_keys) if isinstance(v, dict) else v
        for k, v in mapping.items()
        if k not in drop and not (_natural_key(v) or (k in rule_keys and v == []))
    }


def _declaration_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Top-level mappings of named mappings (facts, scores, outputs, roles, calendars ...)."""

    def named(v: Any) -> bool:
        return isinstance(v, dict) and bool(v) and all(isinstance(x, dict) for x in v.values())

    return [k for k in dict.fromkeys([*old, *new]) if named(old.get(k)) or named(new.get(k))]


# --------------------------------------------------------------------------------------------
# comparing values
# --------------------------------------------------------------------------------------------


def _canon(path: tuple[str, ...], value: Any) -> Any:
    """A hashable form of ``value`` that is equal exactly when the meaning is."""
    last, parent = (path[-1] if path else ""), (path[-2] if len(path) > 1 else "")
    if isinstance(value, (str, bool)) and (last in ("when", "expr") or parent == "inputs"):
        text = ("true" if value else "false") if isinstance(value, bool) else value
        try:
            return ("expr", source(parse(text)))
        except ExprError:
            return ("text", text)
    if parent == "match" and not isinstance(value, list):
        try:
            c = parse_cell(value)
        except ValueError:
            return ("text", value)
        return ("cell", c.op, _canon((), [c.value, list(c.values)]), c.low, c.high, c.low_closed, c.high_closed)
    if isinstance(value, bool) or value is None:
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", float(value))
    if isinstance(value, list):
        return ("l", tuple(_canon((), v) for v in value))
    if isinstance(value, dict):
        return ("d", tuple(sorted((str(k), _canon((*path, str(k)), v)) for k, v in value.items())))
    return ("s", str(value))


def _scalars(value: Any) -> bool:
    return isinstance(value, list) and all(not isinstance(v, (list, dict)) for v in value)


def _diff_values(old: Any, new: Any, path: tuple[str, ...]) -> Iterator[tuple[str, tuple[str, ...], Any, Any]]:
    """(what, field path, old, new) for each difference; what is changed, added, removed,
    added_value, removed_value or reordered."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in dict.fromkeys([*old, *new]):
            if k not in new:
                yield "removed", (*path, k), old[k], None
            elif k not in old:
                yield "added", (*path, k), None, new[k]
            else:
                yield from _diff_values(old[k], new[k], (*path, k))
        return
    if _scalars(old) and _scalars(new):
        ok, nk = [_canon(path, v) for v in old], [_canon(path, v) for v in new]
        if len(set(ok)) == len(ok) and len(set(nk)) == len(nk):
            yield from (("removed_value", path, v, None) for v, c in zip(old, ok, strict=True) if c not in nk)
            yield from (("added_value", path, None, v) for v, c in zip(new, nk, strict=True) if c not in ok)
            if set(ok) == set(nk) and ok != nk and path and path[-1] in ORDERED_VALUES:
                yield "reordered", path, old, new
            return
    if _canon(path, old) != _canon(path, new):
        yield "changed", path, old, new
