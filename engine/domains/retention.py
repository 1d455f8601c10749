"""Retention (domain.md §4): how long a record is kept, and what happens when the period ends.

Rules apply per record type and data class (the record's classes come from the
classification domain: ``uses: {classification: record}``). Each rule has a period, the
event that starts its clock (``created``, ``last_activity``, ``relationship_ended``,
``consent_withdrawn`` or a named business event ``event:<name>``) and an action at the end
(``delete``, ``anonymise``, ``archive``, ``review``). A rule is either an obligation to
**keep** the record at least that long (accounting, for example) or to **dispose** of it
within that period (data minimisation).

Conflict resolution, in this order (documented in docs/domains.md):

1. an active **legal hold beats everything**: nothing is disposed of; the hold decides;
2. **retaining beats deleting**: a disposal is never due before every ``keep`` rule that
   applies has run out; a ``keep`` rule whose clock has not started keeps the record
   until it starts and runs out;
3. **the longest retention wins**: among ``keep`` rules, the latest end;
4. **then the shortest deletion**: among ``dispose`` rules, the earliest end decides the
   action; ties go to the rule listed first.

A record past its due date is ``overdue``; ``overdue_days`` says by how many whole days.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.core.decision import Decision, FiredRule, TraceStep, scope_test
from engine.core.domain import CheckContext, Domain, DomainResult, Kpi, RuleInfo, Runner
from engine.domains.request import PERIOD, RequestShape, add_period, timestamp
from engine.errors import Location, PolicyError, did_you_mean

if TYPE_CHECKING:
    from engine.core.model import Policy
    from engine.hookspecs import Registry

ANY = "*"
CLOCKS = ("created", "last_activity", "relationship_ended", "consent_withdrawn")
ACTIONS = ("delete", "anonymise", "archive", "review")

_text = {"type": "string", "minLength": 1}
_meta = {"title": _text, "description": _text, "owner": _text, "clause": _text, "message": _text}
_names = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "uniqueItems": True}

SCHEMA: dict[str, Any] = {
    "record_types": {**_names, "description": "the kinds of record a request can name"},
    "hold_fields": {**_names, "description": "boolean fields of a record that, when true, place a legal hold"},
    "rules": {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["id", "record_types", "classes", "obligation", "period", "starts", "action"],
            "properties": {
                "id": {"type": "string", "pattern": "^[a-z][a-z0-9_-]*$"},
                "record_types": _names,
                "classes": _names,
                "obligation": {"enum": ["keep", "dispose"]},
                "period": {"type": "string", "pattern": PERIOD.pattern, "description": "like `5y`, `18m`, `30d`"},
                "starts": {
                    "type": "string",
                    "pattern": "^(created|last_activity|relationship_ended|consent_withdrawn|event:[a-z_][a-z0-9_]*)$",
                    "description": (
                        "`created`, `last_activity`, `relationship_ended`, `consent_withdrawn` or `event:NAME`"
                    ),
                    "examples": ["created", "last_activity", "relationship_ended", "consent_withdrawn"],
                },
                "action": {"enum": list(ACTIONS)},
                **_meta,
            },
        },
    },
}


@dataclass(frozen=True)
class RetentionRule:
    id: str
    record_types: tuple[str, ...]
    classes: tuple[str, ...]
    keep: bool
    period: tuple[int, str]
    starts: str
    action: str
    location: Location
    message: str = ""
    clause: str = ""
    class_locations: tuple[Location, ...] = field(default=(), compare=False)  # of each of ``classes``


@dataclass(frozen=True)
class Retention:
    record_types: tuple[str, ...]
    hold_fields: tuple[str, ...]
    rules: tuple[RetentionRule, ...]


def check(ctx: CheckContext) -> Retention:
    types = tuple(ctx.data["record_types"])
    rules = []
    for i, spec in enumerate(ctx.data["rules"]):
        path = ("rules", i)
        ctx.claim_id(spec["id"], path)
        for j, name in enumerate(spec["record_types"]):
            if name != ANY and name not in types:
                ctx.error(
                    f"unknown record type `{name}`",
                    (*path, "record_types", j),
                    "P191",
                    did_you_mean(name, types) or "declare it under `record_types:`",
                )
        m = PERIOD.match(spec["period"])
        assert m is not None  # the schema checked the pattern
        rules.append(
            RetentionRule(
                spec["id"],
                tuple(spec["record_types"]),
                tuple(spec["classes"]),
                spec["obligation"] == "keep",
                (int(m.group(1)), m.group(2)),
                spec["starts"],
                spec["action"],
                ctx.doc.location(path),
                str(spec.get("message", "")),
                str(spec.get("clause", "")),
                tuple(ctx.doc.location((*path, "classes", j)) for j in range(len(spec["classes"]))),
            )
        )
    return Retention(types, tuple(ctx.data.get("hold_fields", ())), tuple(rules))


def cross_check(policy: Policy, others: Mapping[str, Policy]) -> list[PolicyError]:
    model: Retention = policy.extra
    source = others.get("classification")
    if "classification" not in policy.uses or source is None:
        return [
            PolicyError(
                "retention decides per data class and needs the classification domain",
                policy.location,
                code="P189",
                hint="add `uses: {classification: record}`",
            )
        ]
    classes = {c.id for c in source.extra.classes}
    return [
        PolicyError(
            f"unknown data class `{name}` in `{rule.id}`",
            rule.class_locations[j] if j < len(rule.class_locations) else rule.location,
            code="P185",
            hint=did_you_mean(name, classes) or "classes: " + ", ".join(f"`{c}`" for c in sorted(classes)),
            related=source.location,
        )
        for rule in model.rules
        for j, name in enumerate(rule.classes)
        if name != ANY and name not in classes
    ]


_TS = {"check_with": "timestamp"}
_Plan = tuple[tuple[RetentionRule, ...], tuple[RetentionRule, ...], tuple[RetentionRule, ...]]


class _Compiled:
    def __init__(self, policy: Policy) -> None:
        model: Retention = policy.extra
        self.model = model
        self.shape = RequestShape(
            {
                "record_type": {"type": "string", "required": True, "allowed": list(model.record_types)},
                "record": {"type": "dict", "required": True},
                "customer": {"type": "string"},
                **{f"{c}_at": {**_TS, "nullable": True} for c in CLOCKS},
                "events": {"type": "dict", "valuesrules": _TS},
                "holds": {
                    "type": "list",
                    "schema": {
                        "type": "dict",
                        "schema": {
                            "id": {"type": "string", "required": True},
                            "reason": {"type": "string"},
                            "released_at": {**_TS, "nullable": True},
                        },
                    },
                },
            },
            "retention request",
        )
        self.fired = {
            r.id: FiredRule(r.id, "retention", (), r.message, r.location.file, r.location.line, r.clause)
            for r in model.rules
        }
        # where each rule's clock is read: (True, event name) or (False, request key)
        self.clocks = {
            r.id: (True, r.starts[6:]) if r.starts.startswith("event:") else (False, f"{r.starts}_at")
            for r in model.rules
        }
        self._plans: dict[tuple[str, tuple[str, ...]], _Plan] = {}  # by record type and the record's classes

    def __call__(
        self, facts: Mapping[str, Any], now: datetime, upstream: Mapping[str, Decision], explain: bool
    ) -> DomainResult:
        self.shape.check(facts)
        notes: list[str] = []
        found = upstream["classification"].outputs["classes"]
        rtype = facts["record_type"]
        key = (rtype, tuple(found))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plan(rtype, found, key)
        applicable, keeps, disposals = plan
        classes = set(found)
        hold = self._hold(facts, now)
        out: dict[str, Any] = {
            "action": None,
            "due": None,
            "status": None,
            "overdue_days": None,
            "rule": None,
            "hold": hold,
            "postponed_by": None,
        }
        fired: list[FiredRule] = []
        ends = {r.id: self._end(r, facts) for r in applicable}
        trace = self._trace(rtype, classes, facts, ends) if explain else None
        if not applicable:
            out.update(action="review", status="no_rule")
            notes.append(f"no retention rule applies to a `{rtype}` record of class(es) {sorted(classes)}")
            return DomainResult(out, fired, notes, trace, subject=facts.get("customer"))
        keep_until: datetime | None = None
        keep_rule: RetentionRule | None = None
        open_keep = next((r for r in keeps if ends[r.id] is None), None)
        if open_keep is None and keeps:
            keep_rule = max(keeps, key=lambda r: ends[r.id])  # type: ignore[arg-type,return-value]
            keep_until = ends[keep_rule.id]
        if disposals:
            started = [r for r in disposals if ends[r.id] is not None]
            rule = min(started, key=lambda r: ends[r.id]) if started else disposals[0]  # type: ignore[arg-type,return-value]
            due = ends[rule.id]
            if open_keep is not None:
                due, out["postponed_by"] = None, open_keep.id
            elif due is not None and keep_until is not None and keep_until > due:
                due, out["postponed_by"] = keep_until, keep_rule.id if keep_rule else None
            action = rule.action
        elif open_keep is not None:
            rule, due, action = open_keep, None, open_keep.action
        else:
            assert keep_rule is not None
            rule, due, action = keep_rule, keep_until, keep_rule.action
        out.update(action=action, due=due, rule=rule.id)
        fired.append(self._fire(rule, action, due))
        if out["postponed_by"]:
            fired.append(self._fire(next(r for r in applicable if r.id == out["postponed_by"]), "keep", due))
        if hold is not None:
            out.update(status="held", action="retain")
            notes.append(f"legal hold `{hold}` suspends `{action}` (due {_iso(due)})")
        elif due is None:
            out["status"] = "waiting"
            notes.append(f"the clock of `{out['postponed_by'] or rule.id}` has not started")
        elif now >= due:
            out.update(status="overdue", overdue_days=(now - due).days)
        else:
            out["status"] = "retain"
        if trace is not None:
            trace.append(
                TraceStep(
                    "decided",
                    rule.id,
                    True,
                    (
                        ("keep rules' latest end (open: a clock not started)", (keep_rule.id if keep_rule else None,),
                         "open" if open_keep is not None else keep_until),
                        ("legal hold", (hold,), hold is not None),
                        (f"now >= due ({_iso(due)})", (now,), due is not None and now >= due),
                        ("status", (), out["status"]),
                    ),
                )
            )  # fmt: skip
        return DomainResult(out, fired, notes, trace, subject=facts.get("customer"))

    def _plan(self, rtype: str, classes: list[str], key: tuple[str, tuple[str, ...]]) -> _Plan:
        """The rules that apply to a record type and its classes, in order: all, keep, dispose."""
        found = set(classes)
        applicable = tuple(
            r
            for r in self.model.rules
            if (ANY in r.record_types or rtype in r.record_types)
            and (ANY in r.classes or found.intersection(r.classes))
        )
        plan = (applicable, tuple(r for r in applicable if r.keep), tuple(r for r in applicable if not r.keep))
        if len(self._plans) >= 4096:
            self._plans.clear()
        self._plans[key] = plan
        return plan

    def _trace(
        self, rtype: str, classes: set[str], facts: Mapping[str, Any], ends: Mapping[str, datetime | None]
    ) -> list[TraceStep]:
        """Every rule's tests, in order: the record type, the data classes, and when its period
        ends (a rule that applies)."""
        steps: list[TraceStep] = []
        for r in self.model.rules:
            tests = [scope_test("record type", r.record_types, rtype)]
            if tests[0][2]:
                tests.append(scope_test("data class", r.classes, classes))
            applies = all(t[2] for t in tests)
            if applies:
                start = self._start(r, facts)
                n, unit = r.period
                tests.append(
                    (f"{'keep until' if r.keep else r.action + ' at'} `{r.starts}` + {n}{unit}", (start,), ends[r.id])
                )
            steps.append(TraceStep("retention", r.id, applies, tuple(tests)))
        return steps

    def _fire(self, rule: RetentionRule, action: str, due: datetime | None) -> FiredRule:
        b = self.fired[rule.id]
        return FiredRule(b.id, b.step, (("action", action), ("due", due)), b.message, b.file, b.line, b.clause)

    def _start(self, rule: RetentionRule, facts: Mapping[str, Any]) -> Any:
        """The raw timestamp the rule's clock starts at; None when it has not started."""
        event, key = self.clocks[rule.id]
        if event:
            return (facts.get("events") or {}).get(key)
        return facts.get(key)

    def _end(self, rule: RetentionRule, facts: Mapping[str, Any]) -> datetime | None:
        raw = self._start(rule, facts)
        return add_period(timestamp(raw), rule.period) if raw is not None else None

    def _hold(self, facts: Mapping[str, Any], now: datetime) -> str | None:
        for h in facts.get("holds") or ():
            released = h.get("released_at")
            if released is None or timestamp(released) > now:
                return str(h["id"])
        record = facts["record"]
        for name in self.model.hold_fields:
            if record.get(name) is True:
                return name
        return None


def _iso(t: datetime | None) -> str:
    return t.isoformat().replace("+00:00", "Z") if t is not None else "never"


def rules(policy: Policy) -> list[RuleInfo]:
    """Each rule, as decisions name it."""
    return [RuleInfo(r.location.file, r.location.line, r.id, "rule") for r in policy.extra.rules]


def lint(ctx: Any, policy: Policy) -> None:
    """``charter lint``'s retention checks (L010-L015)."""
    from engine.domains.retention_lint import check_retention

    check_retention(ctx, policy)


def build(policy: Policy, registry: Registry) -> Runner:
    return _Compiled(policy)


def customer_requests(customer: Mapping[str, Any], body: Mapping[str, Any], earlier: Mapping[str, Any]) -> Any:
    """``POST /v1/customer``: the customer's record as ``customer_profile``, created at their
    first purchase and last active at their last, with the body's ``retention`` merged over it."""
    extra = body.get("retention", {})
    if not isinstance(extra, Mapping):
        raise ValueError("`retention` must be a JSON object, merged over the retention request")
    return {
        "customer": customer.get("id"),
        "record_type": "customer_profile",
        "record": dict(customer),
        "created_at": customer.get("first_purchase_at"),
        "last_activity_at": customer.get("last_purchase_at"),
        **extra,
    }


def customer_of(request: Mapping[str, Any]) -> Any:
    """The customer whose record it is: the request's ``customer``."""
    return request.get("customer")


RETENTION = Domain(
    kpis=(
        Kpi(
            "retention",
            "Retention actions: due, overdue, held",
            "status",
            note="`retain`: the action falls due later; `overdue`: it is past due; `held`: a legal hold suspends it;"
            " `waiting`: its clock has not started",
        ),
        Kpi("retention-due", "Retention actions falling due, by month", "action", by="month:outputs.due"),
    ),
    outcome="action",
    kind="retention",
    description="how long a record is kept, what ends it, and what happens then; legal holds",
    schema_extra=SCHEMA,
    shared=False,
    required=("record_types", "rules"),
    uses=("classification",),
    rules=rules,
    sections=("record_types", "hold_fields", "rules"),
    key_order={
        "rules[]": "id record_types classes obligation period starts action message title description owner clause"
    },
    ordered={"rules": "ties go to the rule listed first"},
    lint=lint,
    check=check,
    build=build,
    cross_check=cross_check,
    customer_requests=customer_requests,
    customer_of=customer_of,
)
