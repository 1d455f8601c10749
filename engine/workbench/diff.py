"""``charter diff OLD_DIR NEW_DIR``: what an edit to the policies changes, in plain words.

Not a text diff. Both directories are loaded and validated (a broken one gives its located
policy errors), their files paired by ``kind``, and each pair compared as data:

* policy-level keys (title, owner, clause, effective_from, mode, ``uses``, ...);
* declarations kept by name in a mapping (facts, scores, outputs, roles, calendars, ...);
* rules: every mapping with an ``id`` in a list anywhere in the document (table rows,
  bands, classes, access rules and waivers, clocks, patterns), or, in a list without ids,
  a unique ``level``/``tier`` (ladder steps, priorities). Rules match by id wherever they
  sit, so a rule that moved to another table is reported as moved, not removed and added;
  where order decides (``hit: first`` tables, classification classes, ...) a new order is
  reported too.

Conditions and table cells are compared by meaning (``customer.x>3`` is ``customer.x > 3``),
so comment, quoting and layout edits give "no semantic change". With ``--facts`` both
policy sets decide for every customer or request and the changed decisions are counted.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from engine.api import Engine
from engine.cli import parse_now, read_facts
from engine.core.cells import parse_cell
from engine.core.decision import Decision
from engine.core.expr import ExprError, parse, source
from engine.core.load import DocPath, Document, load_file, policy_files
from engine.errors import CharterError, FactErrors, Location, PolicyError, PolicyErrors, did_you_mean
from engine.plugins import Registry, build_registry
from engine.population import Snapshot

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
DOC_FIELDS = ("message", "description", "title", "label", "clause", "owner")  # left out of "added" summaries
PERIOD_FIELDS = {"period", "within", "after"}
PERIOD = re.compile(r"^\s*(\d+)\s*([ymwdh])\s*$")
NEWLINES = re.compile(r"\s*\n\s*")
UNITS = {"y": "year", "m": "month", "w": "week", "d": "day", "h": "hour"}
ORDERED_VALUES = {"values"}  # scalar lists whose order is meaning (an output's values: the priority)
ORDER_MATTERS = {  # top-level lists whose order decides, and why (a table's rules: when `hit: first`)
    ("classification", "classes"): "the later class is the more restrictive",
    ("classification", "rules"): "between rules of one class, the first decides",
    ("retention", "rules"): "ties go to the rule listed first",
}


# --------------------------------------------------------------------------------------------
# what a diff finds
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One difference: ``subject`` (``band `value-high```) and ``text`` say it in words."""

    kind: str  # file_added|removed|renamed, policy_changed, declaration_added|removed|changed,
    # rule_added|removed|changed|moved, order_changed
    domain: str
    subject: str
    text: str
    rule: str | None = None
    field: str | None = None
    old: Any = None
    new: Any = None
    old_location: Location | None = None
    new_location: Location | None = None

    @property
    def semantic(self) -> bool:
        """Whether decisions can differ: all changes can, but a file's new name."""
        return self.kind != "file_renamed"

    def line(self) -> str:
        return f"{self.subject} ({_where(self.old_location, self.new_location)}): {self.text}"

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("kind", "domain", "subject", "rule", "field", "old", "new")}
        out.update({k: str(loc) if (loc := getattr(self, k)) else None for k in ("old_location", "new_location")})
        return {**out, "semantic": self.semantic, "text": self.line()}


@dataclass
class FileDiff:
    domain: str
    old: Document | None
    new: Document | None
    changes: list[Change]

    @property
    def status(self) -> str:
        if self.old is None or self.new is None:
            return "added" if self.old is None else "removed"
        if any(c.semantic for c in self.changes):
            return "changed"
        return "unchanged" if self.old.raw == self.new.raw else "formatting only"

    def to_dict(self) -> dict[str, Any]:
        old, new = (d.path if d else None for d in (self.old, self.new))
        return {"domain": self.domain, "old_file": old, "new_file": new, "status": self.status}


@dataclass
class Report:
    old_dir: str
    new_dir: str
    files: list[FileDiff]
    old_engine: Engine
    new_engine: Engine

    @property
    def changes(self) -> list[Change]:
        return [c for f in self.files for c in f.changes]

    @property
    def semantic(self) -> int:
        return sum(c.semantic for c in self.changes)


def _where(old: Location | None, new: Location | None) -> str:
    def short(loc: Location) -> str:
        return f"{Path(loc.file).name}:{loc.line}"

    if old and new:
        return f"{short(old)} → {short(new)}"
    return f"was {short(old)}" if old else f"now {short(new)}" if new else "?"


# --------------------------------------------------------------------------------------------
# loading both sides
# --------------------------------------------------------------------------------------------


def _load(directory: str, registry: Registry) -> tuple[Engine | None, dict[str, Document], list[PolicyError]]:
    if not Path(directory).is_dir():
        raise CharterError(
            f"`{directory}` is not a directory",
            code="C040",
            hint="give two policy directories, like `charter diff policies-before policies`",
        )
    try:
        engine = Engine(directory, registry=registry, log=None)
    except PolicyErrors as exc:
        return None, {}, list(exc.errors)
    docs = [load_file(f) for f in policy_files(directory)]
    return engine, {str(d.data["kind"]): d for d in docs}, []


def diff_directories(old_dir: str, new_dir: str) -> Report:
    """Compare two policy directories. Raises ``PolicyErrors`` when either does not load."""
    registry = build_registry()
    old_engine, old_docs, old_errors = _load(old_dir, registry)
    new_engine, new_docs, new_errors = _load(new_dir, registry)
    if old_engine is None or new_engine is None:
        raise PolicyErrors(old_errors + new_errors)
    files = []
    for kind in sorted(set(old_docs) | set(new_docs)):
        old, new = old_docs.get(kind), new_docs.get(kind)
        files.append(FileDiff(kind, old, new, _diff_pair(kind, old, new)))
    return Report(old_dir, new_dir, files, old_engine, new_engine)


def _diff_pair(kind: str, old: Document | None, new: Document | None) -> list[Change]:
    if old is not None and new is not None:
        renamed = []
        if Path(old.path).name != Path(new.path).name:
            subject, text = f"policy file `{Path(old.path).name}`", f"renamed to `{Path(new.path).name}`"
            old_loc, new_loc = old.location(()), new.location(())
            renamed.append(Change("file_renamed", kind, subject, text, old_location=old_loc, new_location=new_loc))
        return renamed + DocDiff(kind, old, new).changes()
    doc = new or old
    assert doc is not None
    verb, loc = ("added" if old is None else "removed"), doc.location(())
    text = f"policy `{doc.data.get('id')}` {verb}, with {len(_items(doc.data, _rule_keys(doc.data)))} rule(s)"
    subject = f"policy file `{Path(doc.path).name}`"
    if old is None:
        return [Change("file_added", kind, subject, text, new=doc.data, new_location=loc)]
    return [Change("file_removed", kind, subject, text, old=doc.data, old_location=loc)]


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


def show(value: Any, name: str = "", noun: str = "", domain: str = "") -> str:
    """A value as an officer reads it: percentiles, periods in words, text in backticks."""
    if noun == "band" and name in ("from", "to") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"the {_ordinal(value)} percentile"
    if name in PERIOD_FIELDS and isinstance(value, str) and (m := PERIOD.match(value)):
        n, unit = int(m.group(1)), m.group(2)
        word = "minute" if unit == "m" and domain == "escalation" else UNITS[unit]
        return f"{n:,} {word}{'' if n == 1 else 's'}"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        flow = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=1_000_000, sort_keys=False)
        return f"`{flow.strip()}`"
    return "`" + NEWLINES.sub(" ", str(value)) + "`"  # one line: a block scalar's lines joined


def _ordinal(p: float) -> str:
    if p != int(p):
        return f"{p:g}th"
    n = int(p)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _field_text(what: str, name: str, old: Any, new: Any, noun: str, domain: str) -> str:
    leaf = name.rsplit(".", 1)[-1]
    shown_old, shown_new = show(old, leaf, noun, domain), show(new, leaf, noun, domain)
    return {
        "changed": f"`{name}` changed from {shown_old} to {shown_new}",
        "added": f"added `{name}`: {shown_new}",
        "removed": f"removed `{name}` (was {shown_old})",
        "added_value": f"added `{name}` value {shown_new}",
        "removed_value": f"removed `{name}` value {shown_old}",
        "reordered": f"the order of `{name}` changed from {shown_old} to {shown_new}",
    }[what]


# --------------------------------------------------------------------------------------------
# one pair of files
# --------------------------------------------------------------------------------------------


class DocDiff:
    """The changes between two versions of one domain's policy file."""

    def __init__(self, domain: str, old: Document, new: Document) -> None:
        self.domain, self.old, self.new = domain, old, new
        self.rule_keys = _rule_keys(old.data) | _rule_keys(new.data)
        self.old_items, self.new_items = _items(old.data, self.rule_keys), _items(new.data, self.rule_keys)

    def changes(self) -> list[Change]:
        out = [*self._policy(), *self._declarations(), *self._rules(), *self._order()]
        return sorted(out, key=_sort_line)

    def _change(
        self, kind: str, subject: str, text: str, at: tuple[DocPath | None, DocPath | None], **values: Any
    ) -> Change:
        """A change located at path ``at[0]`` of the old file and ``at[1]`` of the new (None: not there)."""
        old_loc = self.old.location(at[0]) if at[0] is not None else None
        new_loc = self.new.location(at[1]) if at[1] is not None else None
        return Change(kind, self.domain, subject, text, old_location=old_loc, new_location=new_loc, **values)

    def _fields(
        self, kind: str, subject: str, old: Any, new: Any, at: tuple[DocPath, DocPath], **ctx: Any
    ) -> Iterator[Change]:
        noun, rule = ctx.get("noun", ""), ctx.get("rule")
        for what, path, before, after in _diff_values(old, new, ()):
            name = ".".join(path)
            text = _field_text(what, name, before, after, noun, self.domain)
            where = ((*at[0], *path), (*at[1], *path))
            yield self._change(kind, subject, text, where, rule=rule, field=name, old=before, new=after)

    def _policy(self) -> Iterator[Change]:
        decl = set(_declaration_keys(self.old.data, self.new.data))
        old, new = ({k: v for k, v in d.data.items() if k not in decl} for d in (self.old, self.new))
        yield from self._fields(
            "policy_changed", "policy", _strip(old, self.rule_keys), _strip(new, self.rule_keys), ((), ())
        )

    def _declarations(self) -> Iterator[Change]:
        for section in _declaration_keys(self.old.data, self.new.data):
            old, new = (d.data.get(section) for d in (self.old, self.new))
            old, new = (old if isinstance(old, dict) else {}), (new if isinstance(new, dict) else {})
            noun = section[:-1] if section.endswith("s") else section
            for name in dict.fromkeys([*old, *new]):
                subject, at = f"{noun} `{name}`", (section, name)
                if name not in old:
                    yield self._change(
                        "declaration_added", subject, f"added: {show(new[name])}", (None, at), rule=name, new=new[name]
                    )
                elif name not in new:
                    yield self._change("declaration_removed", subject, "removed", (at, None), rule=name, old=old[name])
                else:
                    before, after = _strip(old[name], self.rule_keys), _strip(new[name], self.rule_keys)
                    yield from self._fields(
                        "declaration_changed", subject, before, after, (at, at), rule=name, noun=noun
                    )

    def _rules(self) -> Iterator[Change]:
        for key in dict.fromkeys([*self.new_items, *self.old_items]):
            old, new = self.old_items.get(key), self.new_items.get(key)
            if new is None:
                assert old is not None
                text = f"removed from {old.container}"
                yield self._change("rule_removed", old.subject, text, (old.path, None), rule=key, old=old.data)
            elif old is None:
                yield self._added(new)
            else:
                if old.container != new.container:
                    text = f"moved from {old.container} to {new.container}"
                    values = {"rule": key, "old": old.container, "new": new.container}
                    yield self._change("rule_moved", new.subject, text, (old.path, new.path), **values)
                yield from self._fields(
                    "rule_changed", new.subject, old.data, new.data, (old.path, new.path), rule=key, noun=new.noun
                )

    def _added(self, item: Item) -> Change:
        text = f"added to {item.container}"
        reason = self._ordered_by(item)
        if reason:
            siblings = [i for i in self.new_items.values() if i.container == item.container]
            at = siblings.index(item)
            text += f" ({reason}), " + (f"after `{siblings[at - 1].name}`" if at else "as the first")
        shown = [f"{k} {show(v, k, item.noun, self.domain)}" for k, v in item.data.items() if k not in DOC_FIELDS]
        text += f": {', '.join(shown)}" if shown else ""
        return self._change("rule_added", item.subject, text, (None, item.path), rule=item.key, new=item.data)

    def _ordered_by(self, item: Item) -> str | None:
        """Why the order of ``item``'s container decides, or None when it does not."""
        if item.parent is not None:
            tables = [
                i.parent for i in (self.old_items.get(item.key), item) if i and i.parent and i.parent.noun == "table"
            ]
            return "hit: first" if any(t.data.get("hit") == "first" for t in tables) else None
        return ORDER_MATTERS.get((self.domain, str(item.path[0])))

    def _order(self) -> Iterator[Change]:
        groups: dict[tuple[str, Any], list[str]] = {}
        for key, item in self.new_items.items():
            old = self.old_items.get(key)
            if old is None or old.container != item.container or self._ordered_by(item) is None:
                continue
            by_class = self.domain == "classification" and item.path[0] == "rules"  # only within one class
            group = (item.container, _canon((), item.data.get("class") if by_class else None))
            groups.setdefault(group, []).append(key)
        for new_order in groups.values():
            old_order = [k for k in self.old_items if k in new_order]
            kept = _lcs(old_order, new_order)
            yield from (self._reordered(k, old_order, new_order, kept) for k in new_order if k not in kept)

    def _reordered(self, key: str, old_order: list[str], new_order: list[str], kept: list[str]) -> Change:
        """``key`` changed places with some of the rules that kept theirs: say with which."""
        item, old = self.new_items[key], self.old_items[key]
        was, now = old_order.index, new_order.index
        flipped = [k for k in kept if (was(k) < was(key)) != (now(k) < now(key))]
        side = "before" if now(flipped[0]) > now(key) else "after"
        names = ", ".join(f"`{self.new_items[k].name}`" for k in flipped)
        text = f"now comes {side} {names} in {item.container} ({self._ordered_by(item)})"
        values = {"rule": key, "old": old_order, "new": new_order}
        return self._change("order_changed", item.subject, text, (old.path, item.path), **values)


def _lcs(a: list[str], b: list[str]) -> list[str]:
    """The longest common subsequence of two orders: what kept its relative place."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) - 1, -1, -1):
        for j in range(len(b) - 1, -1, -1):
            table[i][j] = table[i + 1][j + 1] + 1 if a[i] == b[j] else max(table[i + 1][j], table[i][j + 1])
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            out.append(a[i])
            i, j = i + 1, j + 1
        elif table[i + 1][j] > table[i][j + 1]:  # on a tie, call the rule that moved up the mover
            i += 1
        else:
            j += 1
    return out


def _sort_line(c: Change) -> tuple[int, int]:
    loc = c.new_location or c.old_location
    return (loc.line, loc.column) if loc else (0, 0)


# --------------------------------------------------------------------------------------------
# what the edit does to decisions: both policy sets decide for the same customers
# --------------------------------------------------------------------------------------------


@dataclass
class Impact:
    """Decisions of the old and the new policies over one facts file, compared."""

    domain: str
    now: datetime
    facts: str
    total: int = 0
    changed: int = 0
    reasons_only: int = 0  # same outputs, other rules fired
    bad: Counter[str] = field(default_factory=Counter)  # "both", "old" (only), "new" (only)
    by_output: dict[str, Counter[str]] = field(default_factory=dict)
    sample: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    snapshots: dict[str, str] = field(default_factory=dict)  # the population snapshot each side ranked against

    def add(self, facts: Any, old: Decision | CharterError, new: Decision | CharterError, sample: int) -> None:
        self.total += 1
        if not isinstance(old, Decision) or not isinstance(new, Decision):
            self.bad["new" if isinstance(old, Decision) else "old" if isinstance(new, Decision) else "both"] += 1
            for which, result in (("old", old), ("new", new)):
                if isinstance(result, CharterError) and not isinstance(result, FactErrors):
                    self._note(f"the {which} policy could not decide: {result}")
            return
        if old.outputs == new.outputs:
            self.reasons_only += old.fired_ids != new.fired_ids
            return
        self.changed += 1
        before, after = old.to_dict()["outputs"], new.to_dict()["outputs"]
        moved = {k: (before.get(k), after.get(k)) for k in dict.fromkeys([*before, *after])}
        moved = {k: v for k, v in moved.items() if v[0] != v[1]}
        for name, (a, b) in moved.items():
            self.by_output.setdefault(name, Counter())[_transition(a, b)] += 1
        if len(self.sample) < sample:
            subject = new.subject or (facts.get("id") if isinstance(facts, dict) else None)
            outputs = {k: {"old": a, "new": b} for k, (a, b) in moved.items()}
            fired = {"fired_before": list(old.fired_ids), "fired_after": list(new.fired_ids)}
            self.sample.append({"subject": subject, "outputs": outputs, **fired})

    def _note(self, text: str) -> None:
        if text not in self.notes and len(self.notes) < 10:  # one of each, not one per customer
            self.notes.append(text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "now": self.now.isoformat().replace("+00:00", "Z"),
            "facts": self.facts,
            "total": self.total,
            "changed": self.changed,
            "same_outcome_other_rules": self.reasons_only,
            "bad_facts": {"both": self.bad["both"], "old_only": self.bad["old"], "new_only": self.bad["new"]},
            "by_output": {k: dict(v.most_common()) for k, v in self.by_output.items()},
            "sample": self.sample,
            "notes": self.notes,
            "snapshots": self.snapshots,
        }


def _transition(old: Any, new: Any) -> str:
    def brief(v: Any) -> str | None:
        simple = not isinstance(v, (list, dict)) or _scalars(v)
        text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        return text if simple and len(text) <= 60 else None

    a, b = brief(old), brief(new)
    return f"{a} -> {b}" if a is not None and b is not None else "changed"


def _decide(engine: Engine, domain: str, facts: Any, now: datetime) -> Decision | CharterError:
    try:
        return engine.evaluate(domain, facts, now=now)
    except CharterError as exc:  # bad facts above all; counted, never fatal
        return exc


def measure_impact(report: Report, args: argparse.Namespace) -> Impact:
    """Decide every customer (or request) of ``args.facts`` with both policy sets."""
    old, new, domain = report.old_engine, report.new_engine, args.domain
    for engine, which in ((old, "old"), (new, "new")):
        if domain not in engine.domains:
            raise CharterError(
                f"the {which} policies have no `{domain}` policy",
                code="C041",
                hint=did_you_mean(domain, engine.domains)
                or "pass `--domain` with one of: " + ", ".join(engine.domains),
            )
    now = parse_now(args.now)
    impact = Impact(domain, now, args.facts)
    _share_snapshot(impact, old, new, args)
    declared = {**new.program(domain).policy.facts, **old.program(domain).policy.facts}
    for facts in read_facts(args.facts, "auto", declared):
        impact.add(facts, _decide(old, domain, facts, now), _decide(new, domain, facts, now), args.sample)
    return impact


def _ranking_domain(engine: Engine, domain: str) -> str | None:
    """``domain``, or a domain it uses (directly or not), whose policy ranks customers."""
    program = engine.program(domain)
    if program.needs_snapshot:
        return domain
    return next((d for name in program.policy.uses if (d := _ranking_domain(engine, name))), None)


def _share_snapshot(impact: Impact, old: Engine, new: Engine, args: argparse.Namespace) -> None:
    """Rank both policy sets against one population snapshot, built once with the old policy."""
    engines = {"old": old, "new": new}
    ranks = {which: _ranking_domain(e, args.domain) for which, e in engines.items()}
    if ranks["old"] is None and ranks["new"] is None:
        return
    source = args.population or (args.facts if args.domain in ranks.values() else None)
    if source is None or source == "-":
        raise CharterError(
            f"the `{ranks['old'] or ranks['new']}` policy ranks customers, so `{args.domain}` needs a population",
            code="C042",
            hint="pass `--population CUSTOMERS_FILE`",
        )
    builder = "old" if ranks["old"] else "new"
    snap = _snapshot(engines[builder], ranks[builder] or "", source, impact.now)
    for which, engine in engines.items():
        if ranks[which]:
            engine.use_snapshot(snap)
            impact.snapshots[which] = snap.id
    impact.notes.append(
        f"ranked against population snapshot {snap.id[:16]}… of {source}, built with the {builder} policy"
    )
    problem = _misfit(snap, new, ranks["new"]) if ranks["new"] and builder == "old" else None
    if problem is None:
        impact.notes[-1] += ", used for both" if ranks["old"] and ranks["new"] else ""
        return
    own = _snapshot(new, ranks["new"] or "", source, impact.now)
    new.use_snapshot(own)
    impact.snapshots["new"] = own.id
    impact.notes.append(
        f"{problem}: the new policy ranks against its own snapshot {own.id[:16]}… of the same customers"
    )


def _snapshot(engine: Engine, domain: str, source: str, now: datetime) -> Snapshot:
    customers = read_facts(source, "auto", engine.program(domain).policy.facts)
    return engine.build_snapshot(customers, now=now, domain=domain)


def _misfit(snap: Snapshot, engine: Engine, domain: str) -> str | None:
    """Why ``snap`` (built with the old policy) cannot rank customers for the new one."""
    program = engine.program(domain)
    for score, wanted in program.policy.percentiles().items():
        cuts = snap.scores.get(score)
        if cuts is None or cuts.definition != program.compiled.score_digests[score]:
            return f"score `{score}` is new or defined differently in the new policy, so the old snapshot does not fit"
        missing = [p for p in wanted if p not in cuts.cuts]
        if missing:
            listed = ", ".join(f"{p:g}" for p in missing)
            return f"the new bands need percentile {listed} of `{score}`, which the snapshot does not hold"
    return f"the old snapshot does not fit the new policy: {program.unbound}" if program.unbound else None


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------


def render_text(report: Report, impact: Impact | None) -> str:
    lines = [f"policy changes from {report.old_dir} to {report.new_dir}"]
    for f in report.files:
        names = [Path(d.path).name for d in (f.old, f.new) if d is not None]
        head = f"{' → '.join(dict.fromkeys(names))} ({f.domain})"
        status = f.status
        if status == "unchanged":
            lines.append(f"{head}: unchanged")
        elif status == "formatting only":
            lines.append(f"{head}: no semantic change (only comments or formatting differ)")
        else:
            lines.append(f"{head}:")
            lines.extend(f"  {c.line()}" for c in f.changes)
    n, files = report.semantic, sum(f.status in ("changed", "added", "removed") for f in report.files)
    lines.append(f"{n} semantic change(s) in {files} policy file(s)" if n else "no semantic change")
    if impact is not None:
        lines.extend(_impact_lines(impact))
    return "\n".join(lines)


def _impact_lines(impact: Impact) -> list[str]:
    now, bad = impact.now.isoformat().replace("+00:00", "Z"), impact.bad
    both = impact.total - sum(bad.values())  # decided by both policy sets
    share = f" ({impact.changed / both:.1%})" if both else ""
    lines = ["", f"decisions: `{impact.domain}` for {impact.total:,} record(s) of {impact.facts} at {now}"]
    lines += [f"  {note}" for note in impact.notes]
    lines += [
        f"  {impact.changed:,} of {both:,} decision(s) change{share}; {impact.reasons_only:,} keep their outcome"
        " with other rules"
    ]
    if bad:
        lines += [
            f"  bad facts: {bad['both']:,} under both policies, {bad['old']:,} under the old only, "
            f"{bad['new']:,} under the new only"
        ]
    for name, counts in sorted(impact.by_output.items(), key=lambda kv: -kv[1].total()):
        lines += [f"  {name}: {t} ({n:,})" for t, n in counts.most_common(12)]
        lines += [f"  {name}: {len(counts) - 12} other change(s)"] if len(counts) > 12 else []
    lines += ["  for example:"] if impact.sample else []
    for s in impact.sample:
        moved = "; ".join(f"{k} {_transition(v['old'], v['new'])}" for k, v in s["outputs"].items())
        lines.append(f"    {s['subject']}: {moved}")
        lines.append(f"      fired before: {', '.join(s['fired_before']) or 'none'}")
        lines.append(f"      fired after:  {', '.join(s['fired_after']) or 'none'}")
    return lines


def render_json(report: Report, impact: Impact | None) -> str:
    out: dict[str, Any] = {
        "old": report.old_dir,
        "new": report.new_dir,
        "semantic_changes": report.semantic,
        "files": [f.to_dict() for f in report.files],
        "changes": [c.to_dict() for c in report.changes],
    }
    if impact is not None:
        out["impact"] = impact.to_dict()
    return json.dumps(out, ensure_ascii=False, indent=2)


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    if args.population and not args.facts:
        raise CharterError("`--population` is used only with `--facts`", code="C043", hint="add `--facts FILE`")
    report = diff_directories(args.old, args.new)
    impact = measure_impact(report, args) if args.facts else None
    print(render_json(report, impact) if args.format == "json" else render_text(report, impact))
    return 1 if args.exit_code and report.semantic else 0


def add_command(sub: argparse._SubParsersAction[Any]) -> None:
    d = sub.add_parser(
        "diff",
        help="what changed between two policy directories, rule by rule, and which decisions it changes",
        description="Compare two policy directories by meaning: comments and layout are ignored.",
    )
    d.add_argument("old", metavar="OLD_DIR", help="the policies before the edit")
    d.add_argument("new", metavar="NEW_DIR", help="the policies after the edit")
    d.add_argument("--format", choices=["text", "json"], default="text")
    d.add_argument("--exit-code", action="store_true", help="exit 1 when there are semantic changes")
    d.add_argument("--facts", help="customers or requests (.json, .jsonl or .csv): decide each with both policy sets")
    d.add_argument("--domain", default="tiering", help="the domain to decide with --facts (default: tiering)")
    d.add_argument("--now", help="evaluation time, e.g. 2025-06-30T00:00:00Z (default: the current time)")
    d.add_argument("--population", help="customers to rank against (default: --facts, when the domain ranks)")
    d.add_argument("--sample", type=int, default=5, help="changed decisions to show (default: 5)")
    d.set_defaults(run=run)


__all__ = ["Change", "Impact", "Report", "add_command", "diff_directories", "measure_impact"]
