"""The source: comments, blank lines and entries, by line.

``scan`` finds every comment and blank line outside scalars in PyYAML's tokens; ``entries``
finds every mapping key and list item outside flow collections (with the keys and items of
the flow collections they hold) in PyYAML's nodes. Nothing is constructed.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from engine.core.load import DocPath, PolicyLoader

BREAK = re.compile(r"\r\n|[\n\r\x85\u2028\u2029]")  # the line breaks YAML (and PyYAML's marks) count


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


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip(" "))
