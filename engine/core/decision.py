"""The decision record: what one evaluation decided, why, and everything needed to redo it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

ENGINE_VERSION = "0.2.0"
# Bumped whenever the same policy, facts and `now` could give a different decision
# (expression semantics, hit policies, band rounding, missing-fact handling).
SEMANTICS_VERSION = "2"


@dataclass(frozen=True, slots=True)
class FiredRule:
    """A rule that decided part of the outcome, with where it is written."""

    id: str
    step: str
    outputs: tuple[tuple[str, Any], ...]
    message: str
    file: str
    line: int
    clause: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "step": self.step,
            "set": {k: jsonable(v) for k, v in self.outputs},
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "clause": self.clause,
        }


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One rule's condition as evaluated: matched (True/False, None when undefined) and its tests."""

    step: str
    rule: str
    matched: bool | None
    tests: tuple[tuple[str, tuple[Any, ...], Any], ...]
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "rule": self.rule,
            "matched": self.matched,
            "tests": [
                {"test": t, "values": [jsonable(v) for v in vals], "result": jsonable(r)} for t, vals, r in self.tests
            ],
            **({"error": self.error} if self.error else {}),
        }


Test = tuple[str, tuple[Any, ...], Any]  # one test of a trace step: its text, the values it read, its result


def scope_test(noun: str, names: tuple[str, ...] | list[str], value: Any, every: str = "*") -> Test:
    """A trace test of whether a rule names ``value`` (``every`` names them all): for rules
    scoped by lists of names (record types, roles, channels...)."""
    several = isinstance(value, (set, frozenset, tuple, list))
    if several:
        value = sorted(value)
    if every in names:
        return (f"any {noun}", (value,), True)
    if several:
        return (f"some {noun} in [{', '.join(names)}]", (value,), any(v in names for v in value))
    return (f"{noun} in [{', '.join(names)}]", (value,), value in names)


@dataclass(slots=True)
class Decision:
    """The outcome of evaluating one domain's policy for one customer at the caller's ``now``.

    Treat it as read-only. It is not a frozen dataclass only because freezing costs a
    microsecond per decision (``object.__setattr__`` for each field).
    """

    domain: str
    subject: str | None
    outputs: dict[str, Any]
    fired: tuple[FiredRule, ...]
    now: datetime
    bundle_version: str
    policy_id: str
    snapshot_id: str | None
    scores: dict[str, float]
    notes: tuple[str, ...] = ()
    trace: tuple[TraceStep, ...] | None = None
    upstream: tuple[Decision, ...] = ()  # the decisions of the domains this one `uses:`
    record_id: str | None = None  # set once the decision is durably in a decision log
    audit: Decision | None = None  # what the rules in audit mode decide, beside this (enforced) outcome
    engine_version: str = ENGINE_VERSION
    semantics_version: str = SEMANTICS_VERSION

    @property
    def fired_ids(self) -> tuple[str, ...]:
        return tuple(r.id for r in self.fired)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "domain": self.domain,
            "subject": self.subject,
            "now": self.now.isoformat().replace("+00:00", "Z"),
            "outputs": {k: jsonable(v) for k, v in self.outputs.items()},
            "fired": [r.to_dict() for r in self.fired],
            "scores": self.scores,
            "notes": list(self.notes),
            "bundle_version": self.bundle_version,
            "policy_id": self.policy_id,
            "snapshot_id": self.snapshot_id,
            "engine_version": self.engine_version,
            "semantics_version": self.semantics_version,
        }
        if self.record_id is not None:
            out["record_id"] = self.record_id
        if self.upstream:
            out["upstream"] = [u.to_dict() for u in self.upstream]
        if self.trace is not None:
            out["trace"] = [t.to_dict() for t in self.trace]
        if self.audit is not None:
            out["audit"] = {
                "differs": self.audit_differs,
                "outputs": {k: jsonable(v) for k, v in self.audit.outputs.items()},
                "fired": [r.to_dict() for r in self.audit.fired],
                **({"trace": [t.to_dict() for t in self.audit.trace]} if self.audit.trace is not None else {}),
            }
        return out

    @property
    def audit_differs(self) -> bool:
        """Whether the rules in audit mode would have decided otherwise (outputs or fired rules)."""
        a = self.audit
        return a is not None and (
            {k: jsonable(v) for k, v in a.outputs.items()} != {k: jsonable(v) for k, v in self.outputs.items()}
            or a.fired_ids != self.fired_ids
        )


class RecordedNote(Exception):
    """Raised in place of a plugin at replay, where the logged decision recorded that the
    plugin gave no value: the decision gets ``note`` (the note it had then; None for none),
    exactly, instead of a note about this exception (``engine.audit.replay``)."""

    def __init__(self, note: str | None) -> None:
        super().__init__(note or "")
        self.note = note


_PLAIN = frozenset({str, int, float, bool, type(None)})


def jsonable(value: Any) -> Any:
    """A value as JSON has it: times in ISO form with `Z`, durations in seconds."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g}s"
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):  # in sorted order, so that the JSON is the same every run
        return sorted((jsonable(v) for v in value), key=repr)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, BaseException):
        return str(value)
    return value
