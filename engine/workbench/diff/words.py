"""Values and field changes in the words an officer reads: percentiles, periods, text in backticks."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import yaml

PERIOD_FIELDS = {"period", "within", "after"}
PERIOD = re.compile(r"^\s*(\d+)\s*([ymwdh])\s*$")
NEWLINES = re.compile(r"\s*\n\s*")
UNITS = {"y": "year", "m": "month", "w": "week", "d": "day", "h": "hour"}


def show(value: Any, name: str = "", noun: str = "", units: Mapping[str, str] | None = None) -> str:
    """A value as an officer reads it: percentiles, periods in words, text in backticks."""
    if noun == "band" and name in ("from", "to") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"the {_ordinal(value)} percentile"
    if name in PERIOD_FIELDS and isinstance(value, str) and (m := PERIOD.match(value)):
        n, unit = int(m.group(1)), m.group(2)
        word = (units or {}).get(unit) or UNITS[unit]  # a domain may mean another word (``Domain.period_words``)
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


def _field_text(what: str, name: str, old: Any, new: Any, noun: str, units: Mapping[str, str]) -> str:
    leaf = name.rsplit(".", 1)[-1]
    shown_old, shown_new = show(old, leaf, noun, units), show(new, leaf, noun, units)
    return {
        "changed": f"`{name}` changed from {shown_old} to {shown_new}",
        "added": f"added `{name}`: {shown_new}",
        "removed": f"removed `{name}` (was {shown_old})",
        "added_value": f"added `{name}` value {shown_new}",
        "removed_value": f"removed `{name}` value {shown_old}",
        "reordered": f"the order of `{name}` changed from {shown_old} to {shown_new}",
    }[what]
