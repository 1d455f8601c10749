"""Effective dates and audit mode: the policy sets one set of files describes.

A policy, or any rule in it (an item of a list that has an ``id``), may carry

* ``effective_from`` / ``effective_to``: a date (``2026-01-01``, midnight UTC) or an RFC 3339
  time with a zone. From is inclusive, to is exclusive: the rule is in force for
  ``effective_from <= now < effective_to``;
* ``mode: audit``: computed beside the enforced outcome, never changing it (``mode: enforce``
  is the default).

This stage runs between load and validate. Every date written anywhere in the files cuts
time into periods; for each period, ``variant`` gives each document as it stands then: the
rules not in force removed (and, for the enforced set, the rules in audit mode). Each
variant is then validated and compiled like any policy file, so a period whose rules do not
fit together (a gap in the bands from 2026 on) is an error when the files load, not when a
decision is made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.core.load import DocPath, Document
from engine.errors import PolicyError, calendar_hint

KEYS = ("effective_from", "effective_to", "mode")
MODES = ("enforce", "audit")


@dataclass(frozen=True)
class Mark:
    """The effective dates and mode of one rule (``path``) or of the policy (``path == ()``)."""

    path: DocPath
    start: datetime | None = None
    end: datetime | None = None
    audit: bool = False

    def in_force(self, at: datetime | None) -> bool:
        """In force during the period starting at ``at`` (None: the period before every date)."""
        if at is None:
            return self.start is None
        return (self.start is None or self.start <= at) and (self.end is None or at < self.end)


@dataclass
class Marks:
    """Every mark of one document, and the mistakes found reading them."""

    doc: Document
    marks: dict[DocPath, Mark] = field(default_factory=dict)
    errors: list[PolicyError] = field(default_factory=list)

    @property
    def policy(self) -> Mark:
        return self.marks.get((), Mark(()))

    def dates(self) -> set[datetime]:
        return {d for m in self.marks.values() for d in (m.start, m.end) if d is not None}

    @property
    def has_audit(self) -> bool:
        return any(m.audit for m in self.marks.values())


def read_marks(doc: Document) -> Marks:
    """Find every ``effective_from``, ``effective_to`` and ``mode`` in a loaded document."""
    found = Marks(doc)
    _walk(doc.data, (), found, rule=True)
    return found


def _walk(node: Any, path: DocPath, found: Marks, *, rule: bool) -> None:
    if isinstance(node, dict):
        if any(k in node for k in KEYS):
            if rule:
                mark = _mark(node, path, found)
                if mark is not None:
                    found.marks[path] = mark
            else:
                key = next(k for k in KEYS if k in node)
                found.errors.append(
                    PolicyError(
                        f"`{key}` can only be set on a rule (a list item with an `id`) or on the whole policy",
                        found.doc.location((*path, key), key=True),
                        code="P170",
                        hint="move it to the rule it belongs to, or to the top of the file",
                    )
                )
        for key, value in node.items():
            _walk(value, (*path, key), found, rule=False)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _walk(item, (*path, i), found, rule=isinstance(item, dict) and "id" in item)


def _mark(node: dict[str, Any], path: DocPath, found: Marks) -> Mark | None:
    bounds: list[datetime | None] = []
    ok = True
    for key in ("effective_from", "effective_to"):
        value = node.get(key)
        if value is None:
            bounds.append(None)
            continue
        stamp = parse_date(value)
        if stamp is None:
            ok = False
            found.errors.append(
                PolicyError(
                    f"`{key}` must be a date or a time with a zone, not `{value}`",
                    found.doc.location((*path, key)),
                    code="P171",
                    hint=calendar_hint(value)
                    or "write a date like `2026-01-01` (midnight UTC) or `2026-01-01T09:00:00+08:00`",
                )
            )
        bounds.append(stamp)
    start, end = bounds
    if ok and start is not None and end is not None and end <= start:
        ok = False
        found.errors.append(
            PolicyError(
                f"`effective_to` ({_show(end)}) is not after `effective_from` ({_show(start)}): never in force",
                found.doc.location((*path, "effective_to")),
                code="P172",
                related=found.doc.location((*path, "effective_from")),
                hint="effective_to is the first moment the rule no longer applies",
            )
        )
    mode = node.get("mode", "enforce")
    if mode not in MODES:
        ok = False
        found.errors.append(
            PolicyError(
                f"`mode` must be `enforce` or `audit`, not `{mode}`",
                found.doc.location((*path, "mode")),
                code="P173",
                hint="`audit` computes and logs the rule's outcome beside the enforced one without applying it",
            )
        )
    return Mark(path, start, end, mode == "audit") if ok else None


def parse_date(value: Any) -> datetime | None:
    """A date (midnight UTC) or an aware time, from the text an officer wrote; None if neither."""
    if not isinstance(value, str):
        return None
    try:
        if len(value) == 10:
            day = datetime.strptime(value, "%Y-%m-%d")
            return day.replace(tzinfo=UTC)
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp.astimezone(UTC) if stamp.tzinfo is not None else None


def _show(stamp: datetime) -> str:
    return stamp.isoformat().replace("+00:00", "Z")


def period_starts(all_marks: list[Marks]) -> list[datetime | None]:
    """The start of every period: None (before every date), then each date in order."""
    dates: set[datetime] = set()
    for m in all_marks:
        dates |= m.dates()
    return [None, *sorted(dates)]


def variant(marks: Marks, at: datetime | None, *, audit: bool) -> Document | None:
    """The document as it stands in the period starting at ``at``: rules not in force removed,
    and rules in audit mode removed unless ``audit``. None when the policy itself is not in
    force then (or, for the enforced set, is in audit mode)."""
    policy = marks.policy
    if not policy.in_force(at) or (policy.audit and not audit):
        return None
    doc = marks.doc
    if not any(p for p in marks.marks if p):  # no rule carries a mark: the document as written
        return doc
    spans: dict[DocPath, Any] = {}
    key_spans: dict[DocPath, Any] = {}

    def keep(path: DocPath) -> bool:
        mark = marks.marks.get(path)
        return mark is None or (mark.in_force(at) and (audit or not mark.audit))

    def copy(node: Any, old: DocPath, new: DocPath) -> Any:
        if old in doc.spans:
            spans[new] = doc.spans[old]
        if old in doc.key_spans:
            key_spans[new] = doc.key_spans[old]
        if isinstance(node, dict):
            return {k: copy(v, (*old, k), (*new, k)) for k, v in node.items()}
        if isinstance(node, list):
            out: list[Any] = []
            for i, item in enumerate(node):
                if keep((*old, i)):
                    out.append(copy(item, (*old, i), (*new, len(out))))
            return out
        return node

    data = copy(doc.data, (), ())
    return Document(doc.path, data, doc.raw, spans, key_spans)


def describe_period(start: datetime | None, end: datetime | None) -> str:
    if start is None and end is None:
        return "at all times"
    if start is None:
        return f"before {_show(end)}" if end is not None else "at all times"
    if end is None:
        return f"from {_show(start)} on"
    return f"from {_show(start)} to {_show(end)}"
