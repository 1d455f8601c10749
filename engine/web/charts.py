"""SVG bar charts drawn on the server: horizontal bars, one row per label, optionally two
series side by side (before and after). Every label is escaped; the chart carries a title
and a description for screen readers, and the numbers are written beside the bars."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

ROW, BAR, LABEL_W, BAR_W, NUM_W = 22, 16, 190, 300, 70
SERIES_CLASSES = ("bar-a", "bar-b")


@dataclass(frozen=True)
class Series:
    """One series of a chart: its name (the legend) and a count per label."""

    name: str
    counts: Mapping[str, int]


def bar_chart(title: str, series: Sequence[Series], *, labels: Sequence[str] | None = None) -> Markup:
    """A horizontal bar chart of one or two series over the same labels (default: every label
    of the series, in the order first seen)."""
    names = list(labels) if labels is not None else list(dict.fromkeys(k for s in series for k in s.counts))
    top = max((s.counts.get(n, 0) for s in series for n in names), default=0) or 1
    per_label = ROW * len(series) + 6
    legend = 18 if len(series) > 1 else 0
    height = legend + per_label * len(names) + 4
    width = LABEL_W + BAR_W + NUM_W
    desc = "; ".join(f"{n}: " + ", ".join(f"{s.name} {s.counts.get(n, 0)}" for s in series) for n in names)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" aria-labelledby="{_id(title)}-t {_id(title)}-d">',
        f'<title id="{_id(title)}-t">{escape(title)}</title>',
        f'<desc id="{_id(title)}-d">{escape(desc)}</desc>',
    ]
    if legend:
        x = LABEL_W
        for i, s in enumerate(series):
            parts.append(f'<rect class="{SERIES_CLASSES[i % 2]}" x="{x}" y="3" width="12" height="12"/>')
            parts.append(f'<text x="{x + 16}" y="13">{escape(s.name)}</text>')
            x += 24 + 8 * len(s.name)
    for row, name in enumerate(names):
        y = legend + row * per_label
        parts.append(f'<text class="label" x="{LABEL_W - 6}" y="{y + ROW - 6}" text-anchor="end">{escape(name)}</text>')
        for i, s in enumerate(series):
            count = s.counts.get(name, 0)
            w = round(BAR_W * count / top, 1)
            by = y + i * ROW
            parts.append(
                f'<rect class="{SERIES_CLASSES[i % 2]}" x="{LABEL_W}" y="{by + 3}" width="{w}" height="{BAR}">'
                f"<title>{escape(s.name)}: {escape(name)} {count}</title></rect>"
            )
            parts.append(f'<text class="num" x="{LABEL_W + w + 4}" y="{by + ROW - 6}">{count:,}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # safe: every text above went through escape()


def _id(title: str) -> str:
    """An element id made from a title: letters and digits only."""
    return "c-" + "".join(ch if ch.isalnum() else "-" for ch in title.lower())[:40]


STACK_CLASSES = 8  # s0 … s7 in the stylesheet, then again from s0


def stacked_chart(title: str, rows: Sequence[tuple[str, Mapping[str, int]]], keys: Sequence[str]) -> Markup:
    """Horizontal stacked bars: one bar per row (a day, a category), one segment per key (a
    tier, a state), in ``keys``' order, with a legend; each row's total beside its bar."""
    top = max((sum(c.get(k, 0) for k in keys) for _, c in rows), default=0) or 1
    legend_rows = (len(keys) + 3) // 4
    legend = 18 * legend_rows
    height = legend + ROW * len(rows) + 6
    width = LABEL_W + BAR_W + NUM_W
    desc = "; ".join(f"{label}: " + ", ".join(f"{k} {c.get(k, 0)}" for k in keys) for label, c in rows)
    ident = _id(title)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" aria-labelledby="{ident}-t {ident}-d">',
        f'<title id="{ident}-t">{escape(title)}</title>',
        f'<desc id="{ident}-d">{escape(desc)}</desc>',
    ]
    for i, k in enumerate(keys):
        lx, ly = (i % 4) * (width // 4), (i // 4) * 18
        parts.append(f'<rect class="s{i % STACK_CLASSES}" x="{lx + 4}" y="{ly + 3}" width="12" height="12"/>')
        parts.append(f'<text x="{lx + 20}" y="{ly + 13}">{escape(k)}</text>')
    for row, (label, c) in enumerate(rows):
        y = legend + row * ROW
        parts.append(
            f'<text class="label" x="{LABEL_W - 6}" y="{y + ROW - 6}" text-anchor="end">{escape(label)}</text>'
        )
        x = float(LABEL_W)
        for i, k in enumerate(keys):
            n = c.get(k, 0)
            if not n:
                continue
            w = round(BAR_W * n / top, 1)
            parts.append(
                f'<rect class="s{i % STACK_CLASSES}" x="{x}" y="{y + 3}" width="{w}" height="{BAR}">'
                f"<title>{escape(label)}: {escape(k)} {n}</title></rect>"
            )
            x += w
        total = sum(c.get(k, 0) for k in keys)
        parts.append(f'<text class="num" x="{round(x, 1) + 4}" y="{y + ROW - 6}">{total:,}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # safe: every text above went through escape()
