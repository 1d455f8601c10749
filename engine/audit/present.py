"""A logged decision in words: its request as rows, sealed values kept sealed unless opened,
and the trace with the values each test compared. ``charter log show`` prints these,
``charter explain`` prints its trace with ``trace_lines`` too, and the workbench's record page
(``engine.web.log``) lays out the request with ``flatten``.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from engine.audit.protect import SEALED, Protector, SealError
from engine.audit.replay import unseal
from engine.core.decision import Decision
from engine.errors import CharterError

WITHHELD = "$withheld"
HIDDEN = "…"  # a compared value not shown: it may come from a sealed fact


def flatten(value: Any, subject: str, protector: Protector | None, path: str = "") -> list[dict[str, Any]]:
    """A request's values as rows (dotted path, value shown, ``state``: clear, sealed,
    unsealed, withheld or unreadable), nested values one row each; a sealed value stays sealed
    without ``protector``."""
    if isinstance(value, dict) and (SEALED in value or WITHHELD in value):
        if WITHHELD in value:
            return [{"path": path, "value": "", "state": "withheld"}]
        if protector is None:
            return [{"path": path, "value": "", "state": "sealed"}]
        try:
            opened = unseal(value, path, subject, protector)
        except (SealError, CharterError) as exc:  # erased customer, or another key
            return [{"path": path, "value": str(exc), "state": "unreadable"}]
        return [{"path": path, "value": json.dumps(opened, ensure_ascii=False, default=str), "state": "unsealed"}]
    if isinstance(value, dict) and value:
        return [row for k, v in value.items() for row in flatten(v, subject, protector, f"{path}.{k}" if path else k)]
    if isinstance(value, list) and value and any(isinstance(v, dict) for v in value):
        return [row for i, v in enumerate(value) for row in flatten(v, subject, protector, f"{path}[{i}]")]
    shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return [{"path": path, "value": shown, "state": "clear"}]


def request_lines(facts: Any, subject: str, protector: Protector | None) -> list[str]:
    """The request's rows as ``path: value`` lines (a string as it is, anything else as JSON);
    ``(sealed)``, ``(withheld)`` or ``(unreadable: why)`` in place of a value not shown."""
    lines = []
    for row in flatten(facts, subject, protector):
        state, value = row["state"], row["value"]
        if state == "unsealed" and value.startswith('"'):
            value = json.loads(value)  # a string opened: shown as the clear ones are
        hidden = f"(unreadable: {value})" if state == "unreadable" else f"({state})"
        shown = value if state in ("clear", "unsealed") else hidden
        lines.append(f"{row['path'] or '(the request)'}: {shown}")
    return lines


def show_value(value: Any) -> str:
    """A value as an officer would write it: durations in days and hours, times in ISO form."""
    if isinstance(value, timedelta):
        days, rest = divmod(int(value.total_seconds()), 86400)
        return f"{days}d{rest // 3600}h" if days else f"{rest // 3600}h{rest % 3600 // 60}m"
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, BaseException):
        return f"undefined: {value}"
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (str, bool)) or value is None else str(value)


def trace_lines(d: Decision, *, values: bool = True, fired: Collection[str] | None = None) -> list[str]:
    """Each trace step as ``*yes step/rule: test [values compared] -> result; ...`` (``*``:
    the rule fired); without ``values`` the values compared are left out (``…``)."""
    fired = set(d.fired_ids) if fired is None else set(fired)

    def compared(vals: Any) -> str:
        return ", ".join(show_value(v) for v in vals) if values or not vals else HIDDEN

    out = []
    for t in d.trace or ():
        mark = ("*" if t.rule in fired else " ") + {True: "yes", False: "no ", None: "n/a"}[t.matched]
        tests = "; ".join(f"{text} [{compared(vals)}] -> {show_value(res)}" for text, vals, res in t.tests) or "always"
        out.append(f"{mark} {t.step}/{t.rule}: {tests}{'  (' + t.error + ')' if t.error else ''}")
    return out
