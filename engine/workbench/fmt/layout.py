"""Layout: what is kept as written, and where lines are broken again.

``dump`` writes the data through ruamel.yaml's round-trip dumper with keys in canonical order
and no comments: quotes, flow style, block scalars and unquoted timestamps as written,
2-space indentation, list items indented under their key, no re-wrapping. The author's own
line breaks, which the dump loses, are recorded by ``line_breaks`` (flow collections broken
over lines, plain text over lines) and put back by ``line_cuts``.
"""

from __future__ import annotations

import io
import itertools
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import Comment, CommentedMap, CommentedSeq
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString

from engine.core.load import DocPath
from engine.workbench.fmt.order import canonical, key_order
from engine.workbench.fmt.source import Entry

WIDTH = 1_000_000_000  # never re-wrap a line

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
# line breaks: flow collections and plain text the author broke over lines
# --------------------------------------------------------------------------------------------


def line_breaks(found: list[Entry]) -> tuple[dict[DocPath, set[DocPath]], dict[DocPath, list[int]]]:
    """In the source: the flow items that begin a line, and plain text over lines (each line's length)."""
    breaks: dict[DocPath, set[DocPath]] = {}
    wraps: dict[DocPath, list[int]] = {}
    for e in found:
        if e.items:
            starts = {b.inner for a, b in itertools.pairwise(e.items) if b.line > a.line}
            if starts:
                breaks[e.path] = starts
        if e.plain and len(e.plain[2]) > 1 and all(e.plain[2]):  # no blank line: those are line breaks
            wraps[e.path] = e.plain[2]
    return breaks, wraps


def line_cuts(
    placed: list[Entry], breaks: dict[DocPath, set[DocPath]], wraps: dict[DocPath, list[int]]
) -> dict[int, list[tuple[int, int]]]:
    """In the dump: by line, where it is broken again (column, and the alignment of what follows)."""
    out: dict[int, list[tuple[int, int]]] = {}
    for e in placed:
        flow = {it.inner: it for it in e.items or []}
        found = [flow[k] for k in breaks.get(e.path, set()) if k in flow and not flow[k].first]
        if found and len({it.line for it in flow.values()}) == 1:  # ruamel wrote the collection on one line
            out[found[0].line] = sorted((it.column, it.align) for it in found)
        wrap = wraps.get(e.path)
        if wrap and e.plain and e.plain[2] == [sum(wrap) + len(wrap) - 1]:  # plain still, on one line
            line, column = e.plain[0], e.plain[1]
            bounds = itertools.accumulate(n + 1 for n in wrap[:-1])
            out[line] = [(column + b, e.column + 2) for b in bounds]
    return out
