"""What a diff finds (``Change``, ``FileDiff``, ``Report``), and finding it.

Both directories are loaded and validated, their files paired by ``kind``, and each pair
compared as data by ``DocDiff``: policy-level keys, declarations, rules, and their order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.api import Engine
from engine.core.load import DocPath, Document, load_file, policy_files
from engine.errors import CharterError, Location, PolicyError, PolicyErrors
from engine.plugins import Registry, build_registry, installed
from engine.workbench.diff.structure import (
    Item,
    _canon,
    _declaration_keys,
    _diff_values,
    _items,
    _rule_keys,
    _strip,
)
from engine.workbench.diff.words import _field_text, show

DOC_FIELDS = ("message", "description", "title", "label", "clause", "owner")  # left out of "added" summaries


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
# one pair of files
# --------------------------------------------------------------------------------------------


class DocDiff:
    """The changes between two versions of one domain's policy file."""

    def __init__(self, domain: str, old: Document, new: Document) -> None:
        self.domain, self.old, self.new = domain, old, new
        self.spec = installed().domains.get(domain)
        self.units = self.spec.period_words if self.spec is not None else {}
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
            text = _field_text(what, name, before, after, noun, self.units)
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
        shown = [f"{k} {show(v, k, item.noun, self.units)}" for k, v in item.data.items() if k not in DOC_FIELDS]
        text += f": {', '.join(shown)}" if shown else ""
        return self._change("rule_added", item.subject, text, (None, item.path), rule=item.key, new=item.data)

    def _ordered_by(self, item: Item) -> str | None:
        """Why the order of ``item``'s container decides, or None when it does not."""
        if item.parent is not None:
            tables = [
                i.parent for i in (self.old_items.get(item.key), item) if i and i.parent and i.parent.noun == "table"
            ]
            return "hit: first" if any(t.data.get("hit") == "first" for t in tables) else None
        # a top-level list whose order decides says why (``Domain.ordered``)
        return self.spec.ordered.get(str(item.path[0])) if self.spec is not None else None

    def _order(self) -> Iterator[Change]:
        groups: dict[tuple[str, Any], list[str]] = {}
        for key, item in self.new_items.items():
            old = self.old_items.get(key)
            if old is None or old.container != item.container or self._ordered_by(item) is None:
                continue
            within = self.spec.ordered_within.get(str(item.path[0])) if self.spec is not None else None
            group = (item.container, _canon((), item.data.get(within) if within else None))
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
