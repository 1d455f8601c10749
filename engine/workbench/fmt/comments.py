"""Comments and blank lines: tied to the entries they annotate, then put back by line.

``attach`` ties each comment and blank line of the source to an entry (a mapping key or a list
item): a full-line comment or blank line to the entry below it, an end-of-line comment to the
entry on its line; the comments above the first key are the file's header and stay on top, the
`yaml-language-server` modeline first. ``assemble`` puts them back next to their entries in
the dumped text, and breaks lines again where the author had (``layout.line_cuts``).
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections import defaultdict
from dataclasses import dataclass, field

from engine.core.load import DocPath
from engine.workbench.fmt.layout import line_breaks, line_cuts
from engine.workbench.fmt.source import BREAK, Entry, Note, _indent, entries

MODELINE = re.compile(r"#\s*yaml-language-server:")

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
    plan.breaks, plan.wraps = line_breaks(found)
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
    for n, cut in line_cuts(placed, plan.breaks, plan.wraps).items():
        lines[n].cuts = cut
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
