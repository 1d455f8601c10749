"""``charter fmt``: policy files in one canonical form, every comment kept.

One file goes through five steps:

1. the engine's own loader (``load_text``) reads it: a YAML syntax error stops here, located;
2. a scan of PyYAML's tokens finds every comment and blank line and ties it to an entry (a
   mapping key or a list item): a full-line comment or blank line to the entry below it, an
   end-of-line comment to the entry on its line; the comments above the first key are the
   file's header and stay on top, the `yaml-language-server` modeline first;
3. ruamel.yaml's round-trip loader reads it again (only after step 1 accepted it, so no tag
   the safe loader refuses ever reaches it); ruamel's own record of comments is dropped, keys
   are put in canonical order (``key_order``) and the data is dumped: quotes, flow style and
   block scalars as written, 2-space indentation, list items indented under their key, no
   re-wrapping;
4. the comments go back by line next to their entries; flow collections the author broke over
   several lines are broken again before the same items (aligned with the collection's first
   item), and plain text broken over lines at the same words (two columns deeper than its key);
5. the result must keep every comment and, read by ``load_text``, hold the same data (same
   types, same order of user-named keys): otherwise the file is refused, located, untouched.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import difflib
import io
import itertools
import os
import re
import stat
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import Comment, CommentedMap, CommentedSeq
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString

from engine.core.load import DocPath, Document, PolicyLoader, load_file, load_text, policy_files
from engine.errors import CharterError, Location, PolicyError, PolicyErrors

DEFAULT_PATH = "policies"
WIDTH = 1_000_000_000  # never re-wrap a line
MODELINE = re.compile(r"#\s*yaml-language-server:")
BREAK = re.compile(r"\r\n|[\n\r\x85\u2028\u2029]")  # the line breaks YAML (and PyYAML's marks) count
BUG = "the file was left as it is; this is a bug in `charter fmt`, please report it with the file"

# --------------------------------------------------------------------------------------------
# the canonical order of keys: the order the shipped policies are written in
# --------------------------------------------------------------------------------------------

_TAIL = "message title description owner clause"  # a rule's own words come last
HEAD = "charter kind id title description owner clause effective_from effective_to mode uses"
SECTIONS = {  # after HEAD, by kind
    "tiering": "facts scores outputs bands tables",
    "classification": "classes rules",
    "access": "actions purposes roles obligations rules exceptions",
    "retention": "record_types hold_fields rules",
    "escalation": "categories severities warning_at calendars clocks priority ladder event_backend churn_patterns",
}
SHARED = {  # facts, scores, outputs, bands and decision tables; `*` is a name the officer chooses
    "facts.*": "type items min max required nullable default allowed max_length sensitive description",
    "scores.*": "scorer expr args description",
    "outputs.*": "type values description",
    "bands[]": "id output score title description owner clause bands",
    "bands[].bands[]": f"id value from to {_TAIL}",
    "tables[]": "id hit inputs output outputs default title description owner clause rules",
    "tables[].rules[]": f"id when match then {_TAIL}",
}
DOMAINS = {
    "classification": {
        "classes[]": "id label title clause description owner message handling",
        "classes[].handling": "encrypt_at_rest cipher mask export graded_permissions purposes",
        "rules[]": f"id class fields detector {_TAIL}",
    },
    "access": {
        "roles.*": "inherits description owner clause",
        "obligations.*": "always description clause",
        "rules[]": f"id effect mask roles classes actions purposes when obligations {_TAIL}",
        "exceptions[]": "id owner expires subjects roles classes actions purposes when waives mask obligations"
        " message title description clause",
    },
    "retention": {"rules[]": f"id record_types classes obligation period starts action {_TAIL}"},
    "escalation": {
        "calendars.*": "description utc_offset days from to holidays",
        "clocks[]": f"id stops within categories severities complexity calendar {_TAIL}",
        "priority[]": f"tier factor {_TAIL}",
        "ladder[]": "level owner at after actions message title description clause",
        "churn_patterns[]": f"id first then absent within unless score_at_most {_TAIL}",
    },
}


def _pattern(text: str) -> tuple[str, ...]:
    return tuple(part for name in text.split(".") for part in ((name[:-2], "[]") if name.endswith("[]") else (name,)))


_PATTERNS = {
    kind: [(_pattern(p), tuple(order.split())) for p, order in {**SHARED, **DOMAINS.get(kind, {})}.items()]
    for kind in SECTIONS
}


def key_order(kind: str | None, path: DocPath) -> tuple[str, ...] | None:
    """The known keys, in order, of the mapping at ``path`` of a ``kind`` policy; None: keep its order.

    Mappings whose keys the officer names (facts, outputs, roles, ``then:``...) keep their
    order; so does every mapping below the top of a file of no known kind. In a known kind, a
    list item in a list not named here gets its ``id`` first.
    """
    if not path:
        return tuple(f"{HEAD} {SECTIONS.get(kind or '', '')}".split())
    if kind not in SECTIONS:
        return None
    shape = tuple("[]" if isinstance(p, int) else p for p in path)
    for pattern, order in _PATTERNS[kind]:
        if len(pattern) == len(shape) and all(
            p == s or (p == "*" and s != "[]") for p, s in zip(pattern, shape, strict=True)
        ):
            return order
    return ("id",) if isinstance(path[-1], int) else None


def canonical(keys: Sequence[str], order: Sequence[str]) -> list[str]:
    """``keys`` in ``order``; keys it does not name follow, in their own order."""
    rank = {k: i for i, k in enumerate(order)}
    return sorted((k for k in keys if k in rank), key=rank.__getitem__) + [k for k in keys if k not in rank]


# --------------------------------------------------------------------------------------------
# the source: comments, blank lines and entries, by line
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Note:
    """A comment (``text`` from its ``#``) or a blank line (``text`` empty); 0-based line and column."""

    line: int
    column: int
    text: str = ""
    eol: bool = False  # after other text on its line
    gap: int = 1  # the spaces between that text and an end-of-line comment


@dataclass(frozen=True)
class FlowItem:
    """A key or item at any depth of a flow collection (`{...}`, `[...]`)."""

    inner: DocPath  # its path inside the collection
    line: int
    column: int
    align: int  # the column of the first item of its own collection
    first: bool  # the first item of its own collection


@dataclass
class Entry:
    """A mapping key or a list item outside flow collections, with where it and its value lie."""

    path: DocPath
    line: int  # 0-based line of the key, or of the list item's first character
    indent: int  # the indentation of that line
    end: int  # the last line of its value
    items: list[FlowItem] | None  # a flow collection value: its keys and items, at every depth
    first: bool  # the first entry of its mapping or list
    column: int = 0  # of the key, or of the list item's first character
    plain: tuple[int, int, list[int]] | None = None  # a plain scalar value: line, column, length of each line


def _line_starts(text: str) -> list[int]:
    return [0] + [m.end() for m in BREAK.finditer(text)]


def scan(text: str) -> list[Note]:
    """Every comment and every blank line outside scalars, in order."""
    starts = _line_starts(text)
    covered: list[tuple[int, int]] = []
    in_scalar: set[int] = set()  # lines inside multi-line scalars: their blank lines are content
    notes: list[Note] = []
    for token in yaml.scan(text, Loader=PolicyLoader):
        a, b = token.start_mark, token.end_mark
        if b.index > a.index:
            covered.append((a.index, b.index))
        if isinstance(token, yaml.ScalarToken):
            in_scalar.update(_scalar_lines(text, token, starts))
            if token.style in ("|", ">"):
                notes.extend(_header_comment(text, a.index, starts))
    position = 0
    for a, b in [*sorted(covered), (len(text), len(text))]:
        notes.extend(_comments(text, position, a, starts))
        position = max(position, b)
    last = len(starts) - (1 if starts[-1] == len(text) else 0)
    for n in range(last):
        if n not in in_scalar and not _line(text, starts, n).strip():
            notes.append(Note(n, 0))
    return sorted(notes, key=lambda note: (note.line, note.column))


def _line(text: str, starts: list[int], n: int) -> str:
    end = starts[n + 1] if n + 1 < len(starts) else len(text)
    return BREAK.sub("", text[starts[n] : end])


def _scalar_lines(text: str, token: Any, starts: list[int]) -> range:
    a, b = token.start_mark, token.end_mark
    if token.style not in ("|", ">"):
        return range(a.line, b.line + 1)
    last = b.line if b.column else b.line - 1
    header = _line(text, starts, a.line)[a.column :]
    if "+" not in re.match(r"[|>][0-9+-]*", header).group():  # type: ignore[union-attr]  # always matches
        while last > a.line and not _line(text, starts, last).strip():
            last -= 1  # trailing blank lines belong to the scalar only when it keeps them (`|+`)
    return range(a.line + 1, last + 1)


def _header_comment(text: str, index: int, starts: list[int]) -> list[Note]:
    """The comment after a block scalar's `|` or `>`, which PyYAML counts as part of the scalar."""
    line = bisect.bisect_right(starts, index) - 1
    header = _line(text, starts, line)
    found = re.search(r"[ \t]+#", header[index - starts[line] :])
    if not found:
        return []
    column = index - starts[line] + found.end() - 1
    return [Note(line, column, header[column:].rstrip(), True, len(found.group()) - 1)]


def _comments(text: str, start: int, stop: int, starts: list[int]) -> Iterator[Note]:
    """The comments between two tokens: a `#` there always starts one, up to the end of its line."""
    i = text.find("#", start, stop)
    while i != -1:
        line = bisect.bisect_right(starts, i) - 1
        before = text[starts[line] : i]
        end = BREAK.search(text, i)
        stop_at = end.start() if end else len(text)
        eol = bool(before.strip())
        yield Note(line, len(before), text[i:stop_at].rstrip(), eol, len(before) - len(before.rstrip()) if eol else 1)
        i = text.find("#", stop_at, stop)


def entries(text: str) -> list[Entry]:
    """Every mapping key and list item outside flow collections, in document order."""
    root = yaml.compose(text, Loader=PolicyLoader)  # nodes only: nothing is constructed
    out: list[Entry] = []
    if root is not None:
        _walk(root, (), out, set(), text)
    return out


def _walk(node: yaml.Node, path: DocPath, out: list[Entry], seen: set[int], source: str) -> None:
    if id(node) in seen or getattr(node, "flow_style", False):
        return
    seen.add(id(node))  # an alias is walked once
    pairs: list[tuple[DocPath, yaml.Node, yaml.Node]]
    if isinstance(node, yaml.MappingNode):
        pairs = [((*path, str(k.value)), k, v) for k, v in node.value]
    elif isinstance(node, yaml.SequenceNode):
        pairs = [((*path, i), v, v) for i, v in enumerate(node.value)]
    else:
        return
    for n, (child, head, value) in enumerate(pairs):
        at = head.start_mark
        indent = _indent(source[source.rfind("\n", 0, at.index) + 1 : at.index])
        entry = Entry(child, at.line, indent, _last_line(value), _flow_items(value), n == 0, at.column)
        if isinstance(value, yaml.ScalarNode) and not value.style:
            words = BREAK.split(source[value.start_mark.index : value.end_mark.index])
            entry.plain = (value.start_mark.line, value.start_mark.column, [len(w.strip(" \t")) for w in words])
        out.append(entry)
        _walk(value, child, out, seen, source)


def _last_line(node: yaml.Node) -> int:
    end = node.end_mark
    return end.line if end.column or end.line == node.start_mark.line else end.line - 1


def _flow_items(node: yaml.Node, inner: DocPath = ()) -> list[FlowItem] | None:
    if not getattr(node, "flow_style", False):
        return None
    pairs: list[tuple[str | int, yaml.Node, yaml.Node]]
    if isinstance(node, yaml.MappingNode):
        pairs = [(str(k.value), k, v) for k, v in node.value]
    else:
        pairs = [(i, v, v) for i, v in enumerate(node.value)]
    out: list[FlowItem] = []
    for n, (name, head, value) in enumerate(pairs):
        align = pairs[0][1].start_mark.column
        out.append(FlowItem((*inner, name), head.start_mark.line, head.start_mark.column, align, n == 0))
        out += _flow_items(value, (*inner, name)) or []
    return out


# --------------------------------------------------------------------------------------------
# tying comments to entries
# --------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """Where each comment and blank line goes, by the entry it belongs to."""

    header: list[Note] = field(default_factory=list)
    before: defaultdict[DocPath, list[Note]] = field(default_factory=lambda: defaultdict(list))
    eol: defaultdict[tuple[DocPath, str | DocPath], list[Note]] = field(default_factory=lambda: defaultdict(list))
    inside: defaultdict[tuple[DocPath, DocPath], list[Note]] = field(default_factory=lambda: defaultdict(list))
    breaks: dict[DocPath, set[DocPath]] = field(default_factory=dict)  # flow items that begin a line
    wraps: dict[DocPath, list[int]] = field(default_factory=dict)  # plain text over lines: each line's length
    trailing: list[tuple[Note, Entry | None]] = field(default_factory=list)


def attach(notes: list[Note], found: list[Entry]) -> Plan:
    plan = Plan()
    lines = [e.line for e in found]
    for note in notes:
        at = bisect.bisect_right(lines, note.line) - 1
        owner = found[at] if at >= 0 else None
        in_flow = owner is not None and owner.items is not None and owner.line <= note.line <= owner.end
        if owner is None:
            plan.before[found[0].path].append(Note(note.line, 0, note.text))  # before the first key
        elif note.eol:
            _attach_eol(plan, note, owner, in_flow)
        elif in_flow and note.line < owner.end and _attach_inside(plan, note, owner):
            continue
        elif at + 1 < len(found):
            plan.before[found[at + 1].path].append(note)
        else:
            plan.trailing.append((note, next((e for e in reversed(found) if e.indent <= note.column), None)))
    for e in found:
        if e.items:
            starts = {b.inner for a, b in itertools.pairwise(e.items) if b.line > a.line}
            if starts:
                plan.breaks[e.path] = starts
        if e.plain and len(e.plain[2]) > 1 and all(e.plain[2]):  # no blank line: those are line breaks
            plan.wraps[e.path] = e.plain[2]
    _split_header(plan, found[0].path)
    return plan


def _attach_eol(plan: Plan, note: Note, owner: Entry, in_flow: bool) -> None:
    item = next((it for it in reversed(owner.items or []) if it.line <= note.line), None)
    if in_flow and item is not None:
        plan.eol[(owner.path, item.inner)].append(note)
    else:
        plan.eol[(owner.path, "line" if note.line == owner.line else "end")].append(note)


def _attach_inside(plan: Plan, note: Note, owner: Entry) -> bool:
    """A line inside a flow collection broken over lines; False: it goes below the collection."""
    if not note.text:
        return True  # blank lines inside `[...]` go
    following = next((it for it in owner.items or [] if it.line > note.line), None)
    if following is None:
        return False
    plan.inside[(owner.path, following.inner)].append(note)
    return True


def _split_header(plan: Plan, first: DocPath) -> None:
    """The comments above the first key are the file's header, the modeline first; blank lines
    between the header and that key stay with the key."""
    lines = plan.before.pop(first, [])
    cut = max((i + 1 for i, note in enumerate(lines) if note.text), default=0)
    plan.header, plan.before[first] = lines[:cut], lines[cut:]
    moved: list[Note] = []
    for group in (plan.header, *plan.before.values(), *plan.inside.values()):
        moved += [n for n in group if MODELINE.match(n.text)]
        group[:] = [n for n in group if not MODELINE.match(n.text)]
    moved += [n for n, _ in plan.trailing if MODELINE.match(n.text)]
    plan.trailing = [(n, e) for n, e in plan.trailing if not MODELINE.match(n.text)]
    plan.header[:0] = moved
    while plan.header and not plan.header[0].text:
        del plan.header[0]


# --------------------------------------------------------------------------------------------
# ruamel.yaml: keys in canonical order, dumped without comments
# --------------------------------------------------------------------------------------------


class _Timestamp(str):
    """An unquoted timestamp, kept as written (ruamel would rewrite `2001-12-14 21:59:43.10 -5`)."""


def _yaml() -> YAML:
    y = YAML(typ="rt", pure=True)
    y.preserve_quotes = True
    y.width = WIDTH
    y.indent(mapping=2, sequence=4, offset=2)
    y.brace_single_entry_mapping_in_flow_sequence = True  # `[{a: 1}]` stays, not `[a: 1]`
    y.constructor.add_constructor("tag:yaml.org,2002:timestamp", lambda c, node: _Timestamp(node.value))
    y.representer.add_representer(_Timestamp, _represent_timestamp)
    return y


def _represent_timestamp(representer: RoundTripRepresenter, value: _Timestamp) -> Any:
    return representer.represent_scalar("tag:yaml.org,2002:timestamp", str(value))


def dump(text: str, kind: str | None) -> str:
    """``text`` with keys in canonical order and no comments or blank lines, as ruamel.yaml writes it."""
    y = _yaml()
    data = y.load(text)
    _reorder(data, (), kind, set())
    out = io.StringIO()
    y.dump(data, out)
    return out.getvalue()


def _reorder(node: Any, path: DocPath, kind: str | None, seen: set[int]) -> None:
    if isinstance(node, (LiteralScalarString, FoldedScalarString)):
        node.comment = None  # type: ignore[union-attr]  # a slot the stubs omit; the comment after `|`: put back by `assemble`
    if not isinstance(node, (CommentedMap, CommentedSeq)) or id(node) in seen:
        return
    seen.add(id(node))
    setattr(node, Comment.attrib, Comment())
    if isinstance(node, CommentedSeq):
        for i, item in enumerate(node):
            _reorder(item, (*path, i), kind, seen)
        return
    order = key_order(kind, path)
    if order is not None:
        names = {str(k): k for k in node}
        for name in canonical(list(names), order):
            node.move_to_end(names[name])
    for key, value in node.items():
        _reorder(value, (*path, str(key)), kind, seen)


# --------------------------------------------------------------------------------------------
# putting the comments back
# --------------------------------------------------------------------------------------------


@dataclass
class _Line:
    text: str
    above: list[str] = field(default_factory=list)
    cuts: list[tuple[int, int]] = field(default_factory=list)  # a flow collection goes on: column, alignment
    between: defaultdict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    ends: defaultdict[int, list[Note]] = field(default_factory=lambda: defaultdict(list))  # -1: the last piece


def assemble(dumped: str, plan: Plan) -> str:
    lines = [_Line(t) for t in BREAK.split(dumped)[:-1]]
    placed = entries(dumped)
    where = {e.path: e for e in placed}
    for e in placed:
        flow = {it.inner: it for it in e.items or []}
        cuts = [flow[k] for k in plan.breaks.get(e.path, set()) if k in flow and not flow[k].first]
        if cuts and len({it.line for it in flow.values()}) == 1:  # ruamel wrote the collection on one line
            lines[cuts[0].line].cuts = sorted((it.column, it.align) for it in cuts)
        wrap = plan.wraps.get(e.path)
        if wrap and e.plain and e.plain[2] == [sum(wrap) + len(wrap) - 1]:  # plain still, on one line
            line, column = e.plain[0], e.plain[1]
            bounds = itertools.accumulate(n + 1 for n in wrap[:-1])
            lines[line].cuts = [(column + b, e.column + 2) for b in bounds]
    for e in placed:
        _place(e, plan, lines)
    return _render(plan, lines, where)


def _place(e: Entry, plan: Plan, lines: list[_Line]) -> None:
    line = lines[e.line]
    notes = plan.before.get(e.path, [])
    if e.first and len(e.path) > 1:
        notes = notes[next((i for i, n in enumerate(notes) if n.text), len(notes)) :]
    line.above += [" " * e.indent + n.text if n.text else "" for n in notes]
    flow = {it.inner: it for it in e.items or []}
    for target, notes in ((t, n) for (path, t), n in plan.eol.items() if path == e.path):
        item = flow.get(target) if isinstance(target, tuple) else None
        if item is not None:
            lines[item.line].ends[_piece(lines[item.line], item.column)] += notes
        else:
            (line.ends[0] if target == "line" else lines[e.end].ends[-1]).extend(notes)
    for (path, inner), notes in plan.inside.items():
        item = flow.get(inner)
        if path != e.path or item is None:
            continue
        here = lines[item.line]
        if (item.column, item.align) in here.cuts:
            here.between[_piece(here, item.column)] += [n.text for n in notes]
        else:
            line.above += [" " * e.indent + n.text for n in notes]


def _piece(line: _Line, column: int) -> int:
    return sum(cut <= column for cut, _ in line.cuts)


def _render(plan: Plan, lines: list[_Line], where: dict[DocPath, Entry]) -> str:
    out: list[tuple[str, bool]] = [(n.text, True) for n in plan.header]  # (text, a comment or blank line)
    for line in lines:
        out += [(t, True) for t in line.above]
        pieces = _cut(line.text, [cut for cut, _ in line.cuts])
        for p, piece in enumerate(pieces):
            align = line.cuts[p - 1][1] if p else 0
            out += [(" " * align + t, True) for t in line.between.get(p, [])]
            piece = " " * align + piece if p else piece
            ends = line.ends.get(p, []) + (line.ends.get(-1, []) if p == len(pieces) - 1 else [])
            out += [(" " * _indent(piece) + n.text, True) for n in ends[1:]]  # one end-of-line comment a line
            out.append((piece + (" " * ends[0].gap + ends[0].text if ends else ""), False))
    for note, entry in plan.trailing:
        indent = where[entry.path].indent if entry is not None and entry.path in where else 0
        out.append((" " * indent + note.text if note.text else "", True))
    kept: list[str] = []
    for text, added in out:
        if added and not text and (not kept or not kept[-1]):
            continue  # no blank line at the top, none twice
        kept.append(text)
    while kept and not kept[-1] and len(kept) > 1:
        kept.pop()
    return "\n".join(kept) + "\n"


def _cut(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *cuts, len(text)]
    return [text[a:b].rstrip() if i < len(cuts) else text[a:b] for i, (a, b) in enumerate(itertools.pairwise(bounds))]


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip(" "))


# --------------------------------------------------------------------------------------------
# formatting one file, checked
# --------------------------------------------------------------------------------------------


def format_document(doc: Document) -> str:
    """The canonical text of a loaded policy file. Raises ``PolicyErrors`` when it cannot be made safely."""
    text = doc.raw.decode("utf-8")
    try:
        found = entries(text)
        if not found:
            return text  # a lone scalar or an empty mapping: nothing to order
        notes = scan(text)
        result = assemble(dump(text, _kind(doc)), attach(notes, found))
    except yaml.MarkedYAMLError as exc:  # PyYAML's loader can be more lenient than its bare scanner (tabs)
        mark = exc.problem_mark or exc.context_mark
        where = Location(doc.path, mark.line + 1, mark.column + 1) if mark else Location(doc.path, 1, 1)
        hint = "the file was left as it is; check the spacing on this line: tabs, for example"
        raise PolicyErrors(
            [PolicyError(f"cannot format this file: {exc.problem}", where, code="P901", hint=hint)]
        ) from None
    except Exception as exc:  # ruamel.yaml, or a bug here: this file is refused and the run goes on
        detail = f" ({type(exc).__name__}: {exc})"
        raise _refused("cannot format this file", Location(doc.path, 1, 1), "P901", detail) from None
    check(doc, result, notes)
    return result


def format_text(text: str, path: str = "<policy>") -> str:
    """The canonical text of a policy file's text. Raises ``PolicyErrors`` (located) instead of changing meaning."""
    return format_document(load_text(text.encode("utf-8"), path))


def check(doc: Document, formatted: str, notes: list[Note] | None = None) -> None:
    """Raise ``PolicyErrors`` unless ``formatted`` keeps every comment of ``doc`` and means the same."""
    try:
        new = load_text(formatted.encode("utf-8"), doc.path)
    except PolicyErrors as exc:
        message = f"formatting would break the file: {exc.errors[0].message}"
        raise _refused(message, Location(doc.path, 1, 1), "P903") from None
    try:
        kept = Counter(n.text for n in scan(formatted) if n.text)
    except yaml.YAMLError as exc:
        raise _refused(f"formatting would break the file: {exc}", Location(doc.path, 1, 1), "P903") from None
    for note in notes if notes is not None else scan(doc.raw.decode("utf-8")):
        if note.text and kept[note.text] <= 0:
            where = Location(doc.path, note.line + 1, note.column + 1)
            raise _refused(f"formatting would lose the comment `{note.text}`", where, "P902")
        kept[note.text] -= 1
    extra = next((text for text, n in kept.items() if text and n > 0), None)
    if extra is not None:
        raise _refused(f"formatting would repeat the comment `{extra}`", Location(doc.path, 1, 1), "P902")
    path = difference(doc.data, new.data, _kind(doc))
    if path is not None:
        shown = Location(doc.path, path=path).dotted_path()
        raise _refused(
            f"formatting would change {f'`{shown}`' if shown else 'the document'}", doc.location(path), "P904"
        )


def _kind(doc: Document) -> str | None:
    kind = doc.data.get("kind") if isinstance(doc.data, dict) else None
    return kind if isinstance(kind, str) else None


def _refused(message: str, where: Location, code: str, detail: str = "") -> PolicyErrors:
    return PolicyErrors([PolicyError(message, where, code=code, hint=BUG + detail)])


def difference(a: Any, b: Any, kind: str | None, path: DocPath = ()) -> DocPath | None:
    """The first path where two loaded documents differ in value, type or order of user-named keys."""
    if type(a) is not type(b):
        return path
    if isinstance(a, dict):
        if set(a) != set(b) or (key_order(kind, path) is None and list(a) != list(b)):
            return path
        found = (difference(a[k], b[k], kind, (*path, k)) for k in a)
        return next((d for d in found if d is not None), None)
    if isinstance(a, list):
        if len(a) != len(b):
            return path
        found = (difference(x, y, kind, (*path, i)) for i, (x, y) in enumerate(zip(a, b, strict=True)))
        return next((d for d in found if d is not None), None)
    same = a == b or (isinstance(a, float) and a != a and b != b)  # NaN equals itself here
    return None if same else path


# --------------------------------------------------------------------------------------------
# files and the command
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Formatted:
    """One file: its text as it is and as ``charter fmt`` writes it."""

    path: Path
    before: str
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self) -> str:
        """A unified diff from the file as it is to its formatted text."""
        name = str(self.path)
        lines = difflib.unified_diff(_lines(self.before), _lines(self.after), name, name)
        return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def _lines(text: str) -> list[str]:
    return [line for line in re.split(r"(?<=\n)", text) if line]


def format_file(path: Path) -> Formatted:
    """Format one policy file without writing it. Raises ``PolicyErrors``, located."""
    doc = load_file(path, display=str(path))
    return Formatted(path, doc.raw.decode("utf-8"), format_document(doc))


def collect(paths: Sequence[str]) -> list[Path]:
    """The policy files named: files as given, directories by their ``*.yaml`` and ``*.yml`` files."""
    files: dict[Path, Path] = {}
    for name in paths:
        p = Path(name)
        if p.is_dir():
            found = list(policy_files(p))
            if not found:
                raise CharterError(
                    f"no policy files in `{name}`", code="C021", hint="policy files end in `.yaml` or `.yml`"
                )
        elif p.is_file():
            found = [p]
        else:
            raise CharterError(
                f"`{name}` is not a file or directory",
                code="C020",
                hint=f"name policy files or the directories that hold them (default: `{DEFAULT_PATH}`)",
            )
        for f in found:
            files.setdefault(f.resolve(), f)
    return list(files.values())


def write_atomic(result: Formatted) -> None:
    """Replace the file with its formatted text: a temporary file beside it, then a rename; same mode."""
    where = Location(str(result.path))
    try:
        target = Path(os.path.realpath(result.path))
        if target.read_bytes() != result.before.encode("utf-8"):
            raise PolicyErrors(
                [PolicyError("the file changed while it was being formatted", where, code="P905", hint="run it again")]
            )
        mode = stat.S_IMODE(target.stat().st_mode)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".fmt")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(result.after.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
            os.chmod(temp, mode)
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
    except OSError as exc:
        hint = "check the permissions of the file and its folder"
        raise PolicyErrors(
            [PolicyError(f"cannot write the file: {exc.strerror or exc}", where, code="P906", hint=hint)]
        ) from None


def run(args: argparse.Namespace) -> int:
    """``charter fmt``: exit 1 when a file was refused, or with ``--check`` when one would change."""
    changed = unchanged = refused = 0
    for path in collect(args.paths or [DEFAULT_PATH]):
        try:
            result = format_file(path)
            if result.changed and not (args.check or args.diff):
                write_atomic(result)
        except PolicyErrors as exc:
            refused += 1
            for err in exc.errors:
                print(err.describe(), file=sys.stderr)
            continue
        if not result.changed:
            unchanged += 1
            continue
        changed += 1
        if args.diff:
            sys.stdout.write(result.diff())
        if args.check:
            print(f"would reformat {path}")
        elif not args.diff:
            print(f"reformatted {path}")
    verb = "would be reformatted" if args.check or args.diff else "reformatted"
    summary = f"{changed} file(s) {verb}, {unchanged} unchanged"
    print(summary + (f", {refused} refused" if refused else ""), file=sys.stderr)
    return 1 if refused or (args.check and changed) else 0


def add_command(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "fmt",
        help="rewrite policy files in one canonical form, keeping every comment",
        description="Rewrite policy files in one canonical form: keys in the documented order, 2-space "
        "indentation, every comment kept next to what it annotates. A file whose meaning would change, "
        "or that has a YAML syntax error, is left as it is and reported.",
    )
    p.add_argument("paths", nargs="*", help=f"policy files or directories (default: {DEFAULT_PATH})")
    p.add_argument(
        "--check", action="store_true", help="write nothing; list the files that would change, exit 1 if any"
    )
    p.add_argument("--diff", action="store_true", help="write nothing; print a unified diff of what would change")
    p.set_defaults(run=run)
