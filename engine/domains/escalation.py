"""Escalation and service levels (domain.md §5): clocks, states, the ladder and churn warnings.

A request carries a ticket (category, severity, complexity and the timestamps of what
happened to it), the customer's facts (tiered by the tiering domain: ``uses: {tiering:
customer}``) and, optionally, the customer's event history. Everything is computed from
those timestamps and the caller's ``now``; nothing reads a clock.

* **Clocks**: each applicable clock runs from ``opened_at`` to its stop event
  (``first_response_at``, ``handled_at``, ``closed_at``) within a target, shortened by the
  customer's tier (``priority:``). Time counts on the clock's calendar (24x7 by default,
  or business hours with holidays) and not while the ticket waits on the customer
  (``pauses``).
* **States**: ``in_progress``; ``nearing_breach`` once ``warning_at`` of the target has
  elapsed; ``breached``; ``paused``; ``succeeded`` (``late: true`` when it stopped after the
  target); ``cancelled`` when the ticket was cancelled before the clock stopped.
* **Ladder**: the highest step whose state has been reached (and, with ``after``, for that
  long since the breach) says who owns the case and what to do.
* **Churn early warning**: ``churn_patterns`` over the event history, evaluated by an
  event-pattern backend plugin (durable-rules by default) fed the events in time order.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING, Any

from engine.core.decision import Decision, FiredRule, Test, TraceStep, scope_test
from engine.core.domain import CheckContext, Domain, DomainResult, Kpi, RuleInfo, Runner
from engine.core.facts import parse_timestamp
from engine.domains.request import RequestShape
from engine.errors import FactError, FactErrors, Location, PolicyError, calendar_hint, did_you_mean
from engine.hookspecs import Alert, EventMatcher, EventPattern

if TYPE_CHECKING:
    from engine.core.model import Policy
    from engine.hookspecs import Registry

ANY = "*"
STATES = ("cancelled", "succeeded", "in_progress", "paused", "nearing_breach", "breached")  # least to most urgent
RANK = {state: i for i, state in enumerate(STATES)}
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DURATION = re.compile(r"^(\d{1,5})\s*(d|h|m)$")
MAX_DAYS = 3660  # a clock spanning more than ten years is refused, bounding the calendar walk
# alerts a decision lists per churn pattern (the backend's first ones; a note says when the cap
# is reached): 1,000 complaints within 14 days would otherwise list 499,500 repeat-complaint pairs
MAX_ALERTS = 100

_text = {"type": "string", "minLength": 1}
_meta = {"title": _text, "description": _text, "owner": _text, "clause": _text, "message": _text}
_id = {"type": "string", "pattern": "^[a-z][a-z0-9_-]*$"}
_names = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "uniqueItems": True}
_duration = {"type": "string", "pattern": DURATION.pattern, "description": "like `24h`, `14d` or `30m`"}
_hhmm = {"type": "string", "pattern": "^([01]\\d|2[0-3]):[0-5]\\d$", "description": "like `09:00`"}

SCHEMA: dict[str, Any] = {
    "categories": _names,
    "severities": _names,
    "impacts": {
        **_names,
        "description": "the scopes of impact a ticket may have (`ticket.impact`), the first the default",
    },
    "warning_at": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
    "calendars": {
        "type": "object",
        "propertyNames": {"pattern": "^[a-z][a-z0-9_-]*$"},
        "additionalProperties": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "utc_offset": {"type": "string", "pattern": "^[+-]([01]\\d|2[0-3]):[0-5]\\d$"},
                "days": {"type": "array", "items": {"enum": list(DAYS)}, "uniqueItems": True},
                "from": _hhmm,
                "to": _hhmm,
                "holidays": {"type": "array", "items": {"type": "string", "format": "date"}},
                "workdays": {
                    "type": "array",
                    "items": {"type": "string", "format": "date"},
                    "description": "make-up working days: dates worked although their weekday is not in `days`",
                },
                "description": _text,
            },
        },
    },
    "clocks": {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["id", "stops", "within"],
            "properties": {
                "id": _id,
                "stops": {"enum": ["first_response", "handled", "resolved", "closed"]},
                "within": _duration,
                "calendar": _id,
                "categories": _names,
                "severities": _names,
                "complexity": _names,
                "impacts": _names,
                **_meta,
            },
        },
    },
    "priority": {
        "type": "array",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["tier", "factor"],
            "properties": {"tier": _text, "factor": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}, **_meta},
        },
    },
    "ladder": {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["level", "owner", "at"],
            "properties": {
                "level": {"type": "integer", "minimum": 0},
                "owner": _text,
                "at": {"enum": ["in_progress", "nearing_breach", "breached"]},
                "after": _duration,
                "actions": {"type": "array", "items": _text},
                **_meta,
            },
        },
    },
    "closing": {
        "type": "object",
        "additionalProperties": False,
        "required": ["actions"],
        "description": "what handling ends with once every clock of a ticket has stopped (succeeded)",
        "properties": {
            "actions": {"type": "array", "items": _text, "minItems": 1, "uniqueItems": True},
            **_meta,
        },
    },
    "event_backend": {"type": "string", "pattern": "^[a-z_][a-z0-9_]*$", "examples": ["durable_rules", "python"]},
    "churn_patterns": {
        "type": "array",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["id", "first"],
            "properties": {
                "id": _id,
                "first": _text,
                "then": _text,
                "absent": _text,
                "unless": _text,
                "within": _duration,
                "score_at_most": {"type": "number"},
                "actions": {
                    "type": "array",
                    "items": _text,
                    "description": "what to do when the pattern fires, e.g. a win-back call",
                },
                **_meta,
            },
        },
    },
}


def seconds(text: str) -> int:
    m = DURATION.match(text)
    assert m is not None  # checked by the schema
    return int(m.group(1)) * {"d": 86400, "h": 3600, "m": 60}[m.group(2)]


@dataclass(frozen=True)
class Calendar:
    """Working time: 24x7 when ``days`` is empty; else those days, ``start``-``end`` local time,
    less ``holidays`` and plus ``workdays`` (make-up working days on a day otherwise off, as
    official calendars move a working day onto a weekend beside a holiday)."""

    offset: timedelta = timedelta(0)
    days: frozenset[int] = frozenset()
    start: time = time(0)
    end: time = time(0)
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()

    # each local day's working window, or None for a day off: computed once per day (bounded)
    _days: dict[date, tuple[datetime, datetime] | None] = field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False
    )

    _always: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_always", not self.days and not self.holidays and not self.workdays)

    @property
    def always(self) -> bool:
        return self._always

    def _day(self, day: date) -> tuple[datetime, datetime] | None:
        """The working window of local ``day`` (in the calendar's offset), None on a day off."""
        try:
            return self._days[day]
        except KeyError:
            pass
        window = None
        if day in self.workdays or ((not self.days or day.weekday() in self.days) and day not in self.holidays):
            tz = timezone(self.offset)
            lo = datetime.combine(day, self.start, tz)
            hi = (
                datetime.combine(day + timedelta(days=1), time(0), tz)
                if self.end == time(0)
                else datetime.combine(day, self.end, tz)
            )
            window = (lo, hi)
        if len(self._days) < 8192:  # about twenty years of days; beyond that, computed each time
            self._days[day] = window
        return window

    def _windows(self, a: datetime, b: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Working windows (UTC) overlapping [a, b), in time order (made as they are read)."""
        tz = timezone(self.offset)
        day = a.astimezone(tz).date()
        last = b.astimezone(tz).date()
        if (last - day).days > MAX_DAYS:
            raise ValueError(f"a clock spanning more than {MAX_DAYS} days")
        return self._walk(day, last, a, b)

    def _walk(self, day: date, last: date, a: datetime, b: datetime) -> Iterator[tuple[datetime, datetime]]:
        one = timedelta(days=1)
        while day <= last:
            window = self._day(day)
            if window is not None:
                x, y = max(window[0], a), min(window[1], b)
                if x < y:
                    yield x, y
            day += one

    def between(self, a: datetime, b: datetime) -> float:
        """Working seconds in [a, b)."""
        if b <= a:
            return 0.0
        if self._always:
            return (b - a).total_seconds()
        return sum((y - x).total_seconds() for x, y in self._windows(a, b))

    def advance(self, a: datetime, secs: float) -> datetime:
        """The moment ``secs`` working seconds after ``a``."""
        if self._always:
            return a + timedelta(seconds=secs)
        cursor, left = a, secs
        for _ in range(MAX_DAYS // 30 + 1):
            for x, y in self._windows(cursor, cursor + timedelta(days=31)):
                span = (y - x).total_seconds()
                if span >= left:
                    return (x + timedelta(seconds=left)).astimezone(UTC)
                left -= span
            cursor += timedelta(days=31)
        raise ValueError(f"no working time within {MAX_DAYS} days")


@dataclass(frozen=True)
class Clock:
    id: str
    stops: str
    within: int
    calendar: str
    categories: tuple[str, ...]
    severities: tuple[str, ...]
    complexity: tuple[str, ...]
    location: Location
    message: str = ""
    clause: str = ""
    impacts: tuple[str, ...] = (ANY,)


@dataclass(frozen=True)
class Step:
    level: int
    owner: str
    at: str
    after: int
    actions: tuple[str, ...]
    location: Location
    message: str = ""
    clause: str = ""


@dataclass(frozen=True)
class Closing:
    """What handling ends with (``closing:``): actions once every clock has stopped."""

    actions: tuple[str, ...]
    location: Location
    message: str = ""
    clause: str = ""


@dataclass(frozen=True)
class Escalation:
    categories: tuple[str, ...]
    severities: tuple[str, ...]
    warning_at: float
    calendars: dict[str, Calendar]
    clocks: tuple[Clock, ...]
    priority: dict[str, tuple[float, str, Location]]
    ladder: tuple[Step, ...]
    backend: str
    patterns: tuple[EventPattern, ...]
    pattern_locations: dict[str, Location] = field(default_factory=dict)
    pattern_meta: dict[str, tuple[str, str]] = field(default_factory=dict)
    pattern_actions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    priority_clauses: dict[str, str] = field(default_factory=dict)
    closing: Closing | None = None
    impacts: tuple[str, ...] = ()  # declared scopes of impact, the first the default


def check(ctx: CheckContext) -> Escalation:
    data = ctx.data
    categories, severities = tuple(data["categories"]), tuple(data["severities"])
    impacts = tuple(data.get("impacts", ()))
    calendars: dict[str, Calendar] = {"24x7": Calendar()}
    for name, spec in data.get("calendars", {}).items():
        calendars[name] = _calendar(ctx, name, spec)
    clocks = []
    for i, spec in enumerate(data["clocks"]):
        path = ("clocks", i)
        ctx.claim_id(spec["id"], path)
        for key, known in (("categories", categories), ("severities", severities), ("impacts", impacts)):
            for j, v in enumerate(spec.get(key, ())):
                if v != ANY and v not in known:
                    ctx.error(
                        f"unknown {_NOUN[key]} `{v}`",
                        (*path, key, j),
                        "P193",
                        did_you_mean(v, known) or f"declare it under `{key}:`",
                    )
        cal = spec.get("calendar", "24x7")
        if cal not in calendars:
            ctx.error(
                f"unknown calendar `{cal}`",
                (*path, "calendar"),
                "P194",
                did_you_mean(cal, calendars) or "declare it under `calendars:`",
            )
        clocks.append(
            Clock(
                spec["id"],
                spec["stops"],
                seconds(spec["within"]),
                cal,
                tuple(spec.get("categories", (ANY,))),
                tuple(spec.get("severities", (ANY,))),
                tuple(spec.get("complexity", (ANY,))),
                ctx.doc.location(path),
                str(spec.get("message", "")),
                str(spec.get("clause", "")),
                tuple(spec.get("impacts", (ANY,))),
            )
        )
    priority = {
        p["tier"]: (float(p["factor"]), str(p.get("message", "")), ctx.doc.location(("priority", i)))
        for i, p in enumerate(data.get("priority", []))
    }
    ladder = tuple(
        Step(
            s["level"],
            s["owner"],
            s["at"],
            seconds(s["after"]) if "after" in s else 0,
            tuple(s.get("actions", ())),
            ctx.doc.location(("ladder", i)),
            str(s.get("message", "")),
            str(s.get("clause", "")),
        )
        for i, s in enumerate(data["ladder"])
    )
    first_at: dict[int, int] = {}
    for i, step in enumerate(ladder):  # two steps of one level: the ladder names each (`ladder-2`) once
        if step.level in first_at:
            ctx.error(
                f"two ladder steps have level {step.level} (steps {first_at[step.level] + 1} and {i + 1})",
                ("ladder", i, "level"),
                "P192",
                f"give each step its own level: this one is probably {max(first_at) + 1}",
            )
        else:
            first_at[step.level] = i
    backend = data.get("event_backend", "durable_rules")
    patterns = []
    locations, meta, actions = {}, {}, {}
    for i, spec in enumerate(data.get("churn_patterns", [])):
        path = ("churn_patterns", i)
        ctx.claim_id(spec["id"], path)
        forms = [k for k in ("then", "absent") if k in spec]
        if len(forms) > 1:
            ctx.error("a pattern has `then` or `absent`, not both", path, "P195", "split it into two patterns")
        if forms and "within" not in spec:
            ctx.error(f"`{forms[0]}` needs `within`", path, "P195", "add e.g. `within: 14d`")
        if "unless" in spec and "then" not in spec:
            ctx.error("`unless` only applies with `then`", (*path, "unless"), "P195", "add `then:` or remove `unless`")
        patterns.append(
            EventPattern(
                spec["id"],
                spec["first"],
                spec.get("then"),
                spec.get("absent"),
                spec.get("unless"),
                seconds(spec["within"]) if "within" in spec else None,
                spec.get("score_at_most"),
            )
        )
        locations[spec["id"]] = ctx.doc.location(path)
        meta[spec["id"]] = (str(spec.get("message", "")), str(spec.get("clause", "")))
        actions[spec["id"]] = tuple(str(a) for a in spec.get("actions", ()))
    if patterns and backend not in ctx.registry.event_backends:
        ctx.error(
            f"no plugin provides the event backend `{backend}`",
            ("event_backend",) if "event_backend" in data else ("churn_patterns",),
            "P196",
            did_you_mean(backend, ctx.registry.event_backends) or "see `charter plugins`",
        )
    return Escalation(
        categories,
        severities,
        float(data.get("warning_at", 0.75)),
        calendars,
        tuple(clocks),
        priority,
        ladder,
        backend,
        tuple(patterns),
        locations,
        meta,
        actions,
        {str(p["tier"]): str(p.get("clause", "")) for p in data.get("priority", [])},
        _closing(ctx, data.get("closing")),
        impacts,
    )


_NOUN = {"categories": "category", "severities": "severity", "impacts": "impact"}


def _closing(ctx: CheckContext, spec: Mapping[str, Any] | None) -> Closing | None:
    if spec is None:
        return None
    return Closing(
        tuple(str(a) for a in spec["actions"]),
        ctx.doc.location(("closing",)),
        str(spec.get("message", "")),
        str(spec.get("clause", "")),
    )


def _calendar(ctx: CheckContext, name: str, spec: Mapping[str, Any]) -> Calendar:
    sign, hh, mm = 1, 0, 0
    off = spec.get("utc_offset", "+00:00")
    sign = -1 if off[0] == "-" else 1
    hh, mm = int(off[1:3]), int(off[4:6])
    dates: dict[str, set[date]] = {"holidays": set(), "workdays": set()}
    for key, found in dates.items():
        for j, text in enumerate(spec.get(key, ())):
            try:
                found.add(date.fromisoformat(text))
            except ValueError:
                ctx.error(
                    f"`{text}` is not a date",
                    ("calendars", name, key, j),
                    "P197",
                    calendar_hint(text) or "write it like `2025-10-01`",
                )
    holidays, workdays = dates["holidays"], dates["workdays"]
    for j, text in enumerate(spec.get("workdays", ())):
        with contextlib.suppress(ValueError):
            if date.fromisoformat(text) in holidays:
                ctx.error(
                    f"`{text}` is both a holiday and a make-up working day",
                    ("calendars", name, "workdays", j),
                    "P197",
                    "keep it in one of `holidays:` and `workdays:`",
                )
    start = time.fromisoformat(spec.get("from", "00:00"))
    end = time.fromisoformat(spec.get("to", "00:00"))
    if end != time(0) and end <= start:
        ctx.error("the working day ends before it starts", ("calendars", name, "to"), "P197", "swap `from` and `to`")
    days = frozenset(DAYS.index(d) for d in spec.get("days", DAYS))
    return Calendar(sign * timedelta(hours=hh, minutes=mm), days, start, end, frozenset(holidays), frozenset(workdays))


def lint(ctx: Any, policy: Policy) -> None:
    """``charter lint``'s escalation checks: L040, a message stating another figure than its
    clock's target, its ladder step's delay, its priority factor or its pattern's window."""
    from engine.analysis.figures import Figure, check_message, seconds_figure

    model: Escalation = policy.extra

    def check(rule_id: str, message: str, where: Location, figures: list[Figure]) -> None:
        check_message(ctx, rule_id, message, where, (*where.path, "message"), figures)

    for clock in model.clocks:
        if clock.calendar == "24x7":  # a working day lasts what the calendar says
            figure = seconds_figure(clock.within, "within", clock.location, (*clock.location.path, "within"))
            check(clock.id, clock.message, clock.location, [figure])
    for step in model.ladder:
        if step.after:
            figure = seconds_figure(step.after, "after", step.location, (*step.location.path, "after"))
            check(f"level {step.level}", step.message, step.location, [figure])
    for tier, (factor, message, where) in model.priority.items():
        check(f"priority {tier}", message, where, [Figure.number(factor, f"factor: {factor:g}", where)])
    for pattern in model.patterns:
        where = model.pattern_locations[pattern.id]
        figures = []
        if pattern.within is not None:
            figures.append(seconds_figure(pattern.within, "within", where, (*where.path, "within")))
        if pattern.score_at_most is not None:
            at_most = pattern.score_at_most
            figures.append(Figure.number(at_most, f"score_at_most: {at_most:g}", where, (*where.path, "score_at_most")))
        check(pattern.id, model.pattern_meta[pattern.id][0], where, figures)


def cross_check(policy: Policy, others: Mapping[str, Policy]) -> list[PolicyError]:
    model: Escalation = policy.extra
    tiering = others.get("tiering")
    if not model.priority:
        return []
    if "tiering" not in policy.uses or tiering is None:
        return [
            PolicyError(
                "`priority` by tier needs the tiering domain",
                policy.location,
                code="P189",
                hint="add `uses: {tiering: customer}`",
            )
        ]
    out = tiering.outputs.get("value_tier")
    tiers = [str(v) for v in (out.values or ())] if out is not None else []
    return [
        PolicyError(
            f"unknown tier `{tier}`",
            where,
            code="P198",
            hint=did_you_mean(tier, tiers) or "tiers: " + ", ".join(f"`{t}`" for t in tiers),
            related=tiering.location,
        )
        for tier, (_, _, where) in model.priority.items()
        if tier not in tiers
    ]


_TS = {"check_with": "timestamp"}
# a ticket's timestamps besides `opened_at`
STAMPS = ("first_response_at", "handled_at", "resolved_at", "closed_at", "cancelled_at")
_TS_OPT = {"check_with": "timestamp", "nullable": True}


class _Compiled:
    # replay only (``engine.audit.replay.Playback``): the backend's alerts come from the record
    playback: Any = None

    def __init__(self, policy: Policy, registry: Registry) -> None:
        model: Escalation = policy.extra
        self.model = model
        self.shape = RequestShape(
            {
                "ticket": {
                    "type": "dict",
                    "required": True,
                    "schema": {
                        "id": {"type": "string", "required": True},
                        "category": {"type": "string", "required": True, "allowed": list(model.categories)},
                        "severity": {"type": "string", "required": True, "allowed": list(model.severities)},
                        "complexity": {"type": "string"},
                        "impact": {"type": "string", **({"allowed": list(model.impacts)} if model.impacts else {})},
                        "opened_at": {**_TS, "required": True},
                        **{name: _TS_OPT for name in STAMPS},
                        "pauses": {
                            "type": "list",
                            "schema": {"type": "dict", "schema": {"from": {**_TS, "required": True}, "to": _TS_OPT}},
                        },
                        "first_contact": {"type": "string"},
                    },
                },
                "events": {
                    "type": "list",
                    "schema": {
                        "type": "dict",
                        "schema": {
                            "type": {"type": "string", "required": True},
                            "at": {**_TS, "required": True},
                            "id": {"type": "string"},
                            "ref": {"type": "string"},
                            "score": {"type": "number"},
                        },
                    },
                },
            },
            "escalation request",
        )
        self.fired = {
            c.id: FiredRule(c.id, "service-level", (), c.message, c.location.file, c.location.line, c.clause)
            for c in model.clocks
        }
        self._fired_in: dict[tuple[str, str], FiredRule] = {}  # (clock, state) -> the rule as fired
        self._step_fired = {
            id(s): FiredRule(
                f"ladder-{s.level}",
                "ladder",
                (("owner", s.owner),),
                s.message,
                s.location.file,
                s.location.line,
                s.clause,
            )
            for s in model.ladder
        }
        closing = model.closing
        self._closing_fired = (
            FiredRule(
                "closing",
                "closing",
                (("actions", closing.actions),),
                closing.message,
                closing.location.file,
                closing.location.line,
                closing.clause,
            )
            if closing is not None
            else None
        )
        self._priority_fired = {
            tier: FiredRule(
                f"priority-{tier}",
                "priority",
                (("factor", factor),),
                message,
                where.file,
                where.line,
                model.priority_clauses.get(tier, ""),
            )
            for tier, (factor, message, where) in model.priority.items()
        }
        self._scoped: dict[tuple[Any, Any, Any, Any], frozenset[str]] = {}  # the clocks a ticket's scope gets
        self._stops = tuple(dict.fromkeys(c.stops for c in model.clocks))
        self._categories, self._severities = frozenset(model.categories), frozenset(model.severities)
        # a ticket's scope of impact: one of those declared (the first when it names none)
        self._impact = model.impacts[0] if model.impacts else ANY
        self._impacts = frozenset(model.impacts) if model.impacts else frozenset({ANY})
        self._prepared: dict[int, _Prepared] = {}  # evaluate_batch: requests read ahead, by id
        self.matcher: EventMatcher | None = None
        if model.patterns:
            spec = registry.event_backends[model.backend]
            self.matcher = spec.prepare(model.patterns, policy.digest[:16])

    def __call__(
        self, facts: Mapping[str, Any], now: datetime, upstream: Mapping[str, Decision], explain: bool
    ) -> DomainResult:
        ready = self._prepared.pop(id(facts), None) if self._prepared else None
        if ready is None or ready.facts is not facts or ready.now != now:
            ready = self._read(facts, now)  # raises FactErrors naming each field the shape refuses
        ticket = facts["ticket"]
        notes: list[str] = []
        tier = upstream["tiering"].outputs.get("value_tier") if "tiering" in upstream else None
        factor = self.model.priority.get(str(tier), (1.0, "", None))[0] if tier is not None else 1.0
        times = ready.times
        trace: list[TraceStep] | None = [] if explain else None
        try:
            clocks, fired, worst, breached_at = self._clocks(ticket, times, now, factor, tier, trace)
        except ValueError as exc:
            raise _fact_error("ticket", str(exc)) from None
        if not clocks:
            notes.append("no service-level clock applies to this ticket")
        elif factor != 1.0:  # the customer's tier shortened every target: that rule decided too
            fired.append(self._priority_fired[str(tier)])
        step = self._ladder(worst, breached_at, now)
        if trace is not None and clocks:
            trace += self._ladder_steps(worst, breached_at, now, step)
        first = ticket.get("first_contact")
        out: dict[str, Any] = {
            "state": worst if clocks else None,
            "clocks": clocks,
            "tier": tier,
            "level": step.level if step else None,
            "owner": self._owner(step, first) if step else None,
            # who has owned the case, the first contact first: it stays named at every level
            "owners": [self._owner(s, first) for s in self.model.ladder if s.level <= step.level] if step else [],
            "first_contact": first,
            "actions": list(step.actions) if step else [],
        }
        if step is not None:
            fired.append(self._step_fired[id(step)])
        closing = self.model.closing
        handled = bool(clocks) and all(c["state"] == "succeeded" for c in clocks.values())  # none cancelled
        if closing is not None and handled:  # handled: feedback to the customer, satisfaction check
            out["actions"] += [a for a in closing.actions if a not in out["actions"]]
            assert self._closing_fired is not None
            fired.append(self._closing_fired)
        if trace is not None and closing is not None and clocks:
            states = tuple(sorted({c["state"] for c in clocks.values()}))
            trace.append(TraceStep("closing", "closing", handled, (("every clock succeeded", states, handled),)))
        raw = facts.get("events") or []
        alerts = ready.churn()
        out["churn_alerts"] = alerts
        out["churn_warning"] = bool(alerts)
        if trace is not None:
            for pattern in self.model.patterns:
                found = [a for a in alerts if a["pattern"] == pattern.id]
                test = (f"events match pattern `{pattern.id}`", (len(raw),), len(found))
                trace.append(TraceStep("churn", pattern.id, bool(found), (test,)))
        self._churn_fired(alerts, out, fired, notes)
        customer = facts.get("customer")
        who = customer.get("id") if isinstance(customer, Mapping) else None
        return DomainResult(out, fired, notes, trace, subject=str(who) if who is not None else ticket["id"])

    def _read(self, facts: Mapping[str, Any], now: datetime) -> _Prepared:
        """The request checked against its shape and its timestamps parsed, in one pass when it
        is plainly well formed (``_plain``); else checked by the shape (``FactErrors`` naming
        each field it refuses) and then read."""
        got = self._plain(facts)
        if got is None:
            self.shape.check(facts)
            raw = facts.get("events") or []
            events = self._events(raw) if raw and self.matcher is not None else []
            got = (self._times(facts["ticket"]), events)
        return _Prepared(facts, now, got[0], got[1], self)

    def _plain(self, facts: Any) -> tuple[_Times, list[dict[str, Any]]] | None:
        """The ticket's timestamps and the history, when the request is plainly what the shape
        accepts (each check here is one the shape makes, or stricter); None when unsure."""
        ticket = facts.get("ticket") if type(facts) is dict else None
        if type(ticket) is not dict:
            return None
        category, severity = ticket.get("category"), ticket.get("severity")
        if not (
            type(category) is str
            and category in self._categories
            and type(severity) is str
            and severity in self._severities
            and isinstance(ticket.get("id"), str)
            and isinstance(ticket.get("complexity", ""), str)
            and type(impact := ticket.get("impact", self._impact)) is str
            and impact in self._impacts
            and isinstance(ticket.get("first_contact", ""), str)
            and type(ticket.get("pauses", ())) in (list, tuple)
            and type(facts.get("events", ())) in (list, tuple)
        ):
            return None
        try:
            opened = parse_timestamp(ticket["opened_at"])
            stamps = {name: _ts(ticket.get(name)) for name in STAMPS}
            pauses = []
            for p in ticket.get("pauses", ()):
                if type(p) is not dict:
                    return None
                pauses.append((parse_timestamp(p["from"]), _ts(p.get("to"))))
            events = []
            for i, e in enumerate(facts.get("events", ())):
                if type(e) is not dict or not isinstance(e["type"], str) or not _plain_event(e):
                    return None
                events.append(
                    {
                        "kind": e["type"],
                        "ts": int(parse_timestamp(e["at"]).timestamp()),
                        "eid": str(e.get("id", f"e{i}")),
                        "ref": e.get("ref"),
                        "score": e.get("score"),
                    }
                )
        except (KeyError, ValueError, TypeError):
            return None
        events.sort(key=_in_time_order)
        return (
            (opened, stamps["cancelled_at"], pauses, {stop: stamps[f"{stop}_at"] for stop in self._stops}),
            events if self.matcher is not None else [],
        )

    def _times(self, ticket: Mapping[str, Any]) -> _Times:
        """The ticket's timestamps, each parsed once: opened, cancelled, the pauses and each
        clock's stop (by field name)."""
        return (
            parse_timestamp(ticket["opened_at"]),
            _ts(ticket.get("cancelled_at")),
            [(parse_timestamp(p["from"]), _ts(p.get("to"))) for p in ticket.get("pauses") or ()],
            {stop: _ts(ticket.get(f"{stop}_at")) for stop in self._stops},
        )

    def _clocks(
        self,
        ticket: Mapping[str, Any],
        times: _Times,
        now: datetime,
        factor: float,
        tier: Any,
        trace: list[TraceStep] | None,
    ) -> tuple[dict[str, dict[str, Any]], list[FiredRule], str, datetime | None]:
        """Each clock that applies to the ticket: its entry, the rule as fired, the worst state
        and the earliest breach."""
        scope = (ticket["category"], ticket["severity"], ticket.get("complexity", "simple"), self._impact_of(ticket))
        applying = self._scoped.get(scope)
        if applying is None:
            applying = frozenset(c.id for c in self.model.clocks if self._applies(c, ticket))
            if len(self._scoped) < 1024:  # categories and severities are declared; complexity is free text
                self._scoped[scope] = applying
        clocks: dict[str, dict[str, Any]] = {}
        fired: list[FiredRule] = []
        worst, breached_at = "cancelled", None
        spans: dict[tuple[str, str], tuple[float, float]] = {}  # clocks on one calendar and stop share them
        for clock in self.model.clocks:
            if clock.id not in applying:
                if trace is not None:
                    trace.append(TraceStep("service-level", clock.id, False, self._scope_tests(clock, ticket)))
                continue
            entry = self._clock(clock, times, now, factor, spans)
            if trace is not None:
                trace.append(self._clock_step(clock, ticket, entry, tier, factor))
            clocks[clock.id] = entry
            state = entry["state"]
            rule = self._fired_in.get((clock.id, state))
            if rule is None:
                b = self.fired[clock.id]
                rule = FiredRule(b.id, b.step, (("state", state),), b.message, b.file, b.line, b.clause)
                self._fired_in[clock.id, state] = rule
            fired.append(rule)
            if RANK[state] > RANK[worst]:
                worst = state
            if state == "breached" and entry["due"] is not None:
                breached_at = min(breached_at or entry["due"], entry["due"])
        return clocks, fired, worst, breached_at

    def _impact_of(self, ticket: Mapping[str, Any]) -> Any:
        return ticket.get("impact", self._impact)

    def _scope_tests(self, clock: Clock, ticket: Mapping[str, Any]) -> tuple[Test, ...]:
        """Whether the clock names the ticket's category, severity, complexity and scope of
        impact, as far as tested."""
        tests: list[Test] = []
        for noun, names, value in (
            ("category", clock.categories, ticket["category"]),
            ("severity", clock.severities, ticket["severity"]),
            ("complexity", clock.complexity, ticket.get("complexity", "simple")),
            ("impact", clock.impacts, self._impact_of(ticket)),
        ):
            tests.append(scope_test(noun, names, value))
            if not tests[-1][2]:
                break
        return tuple(tests)

    def _clock_step(
        self, clock: Clock, ticket: Mapping[str, Any], entry: Mapping[str, Any], tier: Any, factor: float
    ) -> TraceStep:
        """A clock that applies: its target (shortened by the customer's tier), the business
        hours elapsed on its calendar, and the state they give."""
        target, elapsed = entry["target_hours"], entry["elapsed_hours"]
        warn = round(self.model.warning_at * target, 4)
        tests = (
            *self._scope_tests(clock, ticket),
            (f"target: {round(clock.within / 3600, 4)}h x tier factor", (tier, factor), target),
            (f"business hours elapsed on calendar `{clock.calendar}` (less pauses)", (), elapsed),
            ("elapsed >= target (breached)", (elapsed, target), elapsed >= target),
            (f"elapsed >= {self.model.warning_at} x target (nearing breach)", (elapsed, warn), elapsed >= warn),
            (f"stopped by `{clock.stops}_at`", (ticket.get(f"{clock.stops}_at"),), entry["state"] == "succeeded"),
            ("state", (), entry["state"]),
        )
        return TraceStep("service-level", clock.id, True, tests)

    def _ladder_steps(
        self, state: str, breached_at: datetime | None, now: datetime, chosen: Step | None
    ) -> list[TraceStep]:
        """Each ladder step: whether the ticket's worst state reached it (and, for a step after
        a delay, whether the breach is that old); the highest step reached decides."""
        steps = []
        over = (now - breached_at).total_seconds() if breached_at is not None else None
        for s in self.model.ladder:
            tests: list[Test] = [(f"state at or past `{s.at}`", (state,), STATES.index(state) >= STATES.index(s.at))]
            if s.after:
                tests.append((f"breached at least {s.after}s ago", (over,), over is not None and over >= s.after))
            if state in ("succeeded", "cancelled", "paused"):
                tests.append((f"a `{state}` ticket stays with the `in_progress` step", (), s.at == "in_progress"))
            steps.append(TraceStep("ladder", f"ladder-{s.level}", s is chosen, tuple(tests)))
        return steps

    def _applies(self, clock: Clock, ticket: Mapping[str, Any]) -> bool:
        return (
            (ANY in clock.categories or ticket["category"] in clock.categories)
            and (ANY in clock.severities or ticket["severity"] in clock.severities)
            and (ANY in clock.complexity or ticket.get("complexity", "simple") in clock.complexity)
            and (ANY in clock.impacts or self._impact_of(ticket) in clock.impacts)
        )

    def _clock(
        self,
        clock: Clock,
        times: _Times,
        now: datetime,
        factor: float,
        spans: dict[tuple[str, str], tuple[float, float]],
    ) -> dict[str, Any]:
        cal = self.model.calendars[clock.calendar]
        opened, cancelled, pauses, stops = times
        stopped = stops[clock.stops]
        target = clock.within * factor
        span = spans.get((clock.calendar, clock.stops))
        if span is None:  # the time paused and elapsed depend on the calendar and the stop only
            end = stopped if stopped is not None else cancelled if cancelled is not None else now
            if cancelled is not None and cancelled < end:  # the earliest of the three, as min() picks it
                end = cancelled
            if now < end:
                end = now
            paused = sum(cal.between(max(a, opened), min(b or end, end)) for a, b in pauses) if pauses else 0
            span = spans[clock.calendar, clock.stops] = (paused, cal.between(opened, end) - paused)
        paused, elapsed = span
        entry: dict[str, Any] = {"target_hours": round(target / 3600, 4), "elapsed_hours": round(elapsed / 3600, 4)}
        if cancelled is not None and (stopped is None or cancelled < stopped) and cancelled <= now:
            state = "cancelled"
        elif stopped is not None and stopped <= now:
            state = "succeeded"
            entry["late"] = elapsed > target
        elif any(a <= now and (b is None or b > now) for a, b in pauses):
            state = "paused"
        elif elapsed >= target:
            state = "breached"
        elif elapsed >= self.model.warning_at * target:
            state = "nearing_breach"
        else:
            state = "in_progress"
        entry["state"] = state
        entry["due"] = cal.advance(opened, target + paused) if state not in ("paused", "cancelled") else None
        return entry

    @staticmethod
    def _owner(step: Step, first_contact: Any) -> Any:
        """A step's owner: the ticket's first contact for ``owner: first_contact`` (when named)."""
        return (first_contact or step.owner) if step.owner == "first_contact" else step.owner

    def _ladder(self, state: str, breached_at: datetime | None, now: datetime) -> Step | None:
        reached = [
            s
            for s in self.model.ladder
            if RANK[state] >= RANK[s.at]
            and (not s.after or (breached_at is not None and (now - breached_at).total_seconds() >= s.after))
        ]
        if state in ("succeeded", "cancelled", "paused"):
            reached = [s for s in self.model.ladder if s.at == "in_progress"]
        return max(reached, key=lambda s: s.level) if reached else None

    @staticmethod
    def _events(raw: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The event history as backends read it: in time order, timestamps in epoch seconds."""
        return sorted(
            (
                {
                    "kind": e["type"],
                    "ts": int(parse_timestamp(e["at"]).timestamp()),
                    "eid": str(e.get("id", f"e{i}")),
                    "ref": e.get("ref"),
                    "score": e.get("score"),
                }
                for i, e in enumerate(raw)
            ),
            key=_in_time_order,
        )

    def _alerts(self, events: list[dict[str, Any]], now: datetime, answer: list[Alert] | None) -> list[dict[str, Any]]:
        """The backend's alerts on ``events`` (``answer`` when a batch asked already), at most
        ``MAX_ALERTS`` per pattern, as the decision lists them."""
        assert self.matcher is not None
        matcher, at = self.matcher, int(now.timestamp())
        playback = self.playback
        if playback is None:
            alerts = _cap(matcher(events, at) if answer is None else answer)
        else:  # replay: the alerts the logged decision had (the live ones when the record holds none)
            got = playback.call(
                "event_backend", self.model.backend, "events", lambda: _alerts_json(_cap(matcher(events, at)))
            )
            alerts = _cap([Alert(int(a["at"]), str(a["pattern"]), tuple(a["events"])) for a in got])
        return [
            {"pattern": a.pattern, "at": datetime.fromtimestamp(a.at, UTC), "events": list(a.events)} for a in alerts
        ]

    def _churn_fired(
        self, alerts: Sequence[Mapping[str, Any]], out: dict[str, Any], fired: list[FiredRule], notes: list[str]
    ) -> None:
        """Each pattern that matched decided too: its rule, its actions and, at the cap, a note."""
        counts: dict[str, int] = {}
        for a in alerts:
            counts[a["pattern"]] = counts.get(a["pattern"], 0) + 1
        for pid, n in counts.items():
            where = self.model.pattern_locations[pid]
            message, clause = self.model.pattern_meta[pid]
            todo = self.model.pattern_actions.get(pid, ())
            out["actions"] += [a for a in todo if a not in out["actions"]]
            fired.append(
                FiredRule(
                    pid, "churn", (("churn_warning", True), ("actions", todo)), message, where.file, where.line, clause
                )
            )
            if n >= MAX_ALERTS:
                notes.append(
                    f"pattern `{pid}` matched at least {MAX_ALERTS} times: the first {MAX_ALERTS} are listed,"
                    " the most a decision lists per pattern"
                )

    # -- evaluate_batch ------------------------------------------------------------------------

    def prepare_batch(self, requests: Sequence[Any], now: datetime) -> Callable[[], None]:
        """``evaluate_batch``: read a chunk of requests ahead and match all their event histories
        in one call of the backend (for durable-rules, one message to its worker, not one per
        ticket), each history's timestamps parsed once. Each request's decision then uses what
        was read here, once, if it is the same object at the same ``now``; the function returned
        forgets what no decision used. A request that breaks the shape is left to its own
        decision to report; a history the backend fails on fails that decision only."""
        if self.playback is not None or not isinstance(now, datetime) or now.tzinfo is None:
            return _nothing
        ready: list[_Prepared] = []
        for facts in requests:
            try:
                ready.append(self._read(facts, now))
            except (FactErrors, ValueError, TypeError, KeyError):
                continue
        asked = [r for r in ready if r.events]
        many = getattr(self.matcher, "many", None)
        if asked and many is not None:
            at = int(now.timestamp())
            for r, answer in zip(asked, many([(r.events, at) for r in asked]), strict=True):
                r.answer = answer
        for r in ready:
            self._prepared[id(r.facts)] = r

        def forget() -> None:
            for r in ready:
                if self._prepared.get(id(r.facts)) is r:
                    del self._prepared[id(r.facts)]

        return forget

    def plugin_calls(self, facts: Mapping[str, Any], decision: Decision) -> list[tuple[str, str, dict[str, Any]]]:
        """The event backend's alerts ``decision`` was made with, for the log: its
        ``churn_alerts`` as the backend returned them (epoch seconds), when it was asked."""
        if self.matcher is None or not facts.get("events"):
            return []
        alerts = [
            {"at": int(a["at"].timestamp()), "pattern": a["pattern"], "events": list(a["events"])}
            for a in decision.outputs.get("churn_alerts") or ()
        ]
        return [("event_backend", self.model.backend, {"events": alerts})]


def _alerts_json(alerts: Sequence[Alert]) -> list[dict[str, Any]]:
    return [{"at": a.at, "pattern": a.pattern, "events": list(a.events)} for a in alerts]


def _cap(alerts: Sequence[Alert]) -> Sequence[Alert]:
    """The first ``MAX_ALERTS`` alerts of each pattern, in the backend's order."""
    if len(alerts) <= MAX_ALERTS:
        return alerts
    seen: dict[str, int] = {}
    kept = []
    for a in alerts:
        n = seen.get(a.pattern, 0)
        if n < MAX_ALERTS:
            kept.append(a)
            seen[a.pattern] = n + 1
    return kept


def _plain_event(e: Mapping[str, Any]) -> bool:
    """An event's optional fields as its shape accepts them: text ids and refs, a number score."""
    return (
        isinstance(e.get("id", ""), str)
        and isinstance(e.get("ref", ""), str)
        and type(e.get("score", 0)) in (int, float)
    )


def _in_time_order(event: Mapping[str, Any]) -> tuple[int, str]:
    return event["ts"], event["eid"]


def _ts(value: Any) -> datetime | None:
    return parse_timestamp(value) if value is not None else None


def _nothing() -> None:
    return None


# a ticket's timestamps: opened, cancelled, the pauses and each clock's stop (by field name)
_Times = tuple[datetime, datetime | None, list[tuple[datetime, datetime | None]], dict[str, datetime | None]]


@dataclass(slots=True, eq=False)
class _Prepared:
    """One request of an ``evaluate_batch`` chunk, read ahead (``_Compiled.prepare_batch``)."""

    facts: Any
    now: datetime
    times: _Times
    events: list[dict[str, Any]]  # empty when there are none or no pattern to match them
    runner: _Compiled
    answer: list[Alert] | Exception | None = None  # the backend's, when asked for the whole chunk

    def churn(self) -> list[dict[str, Any]]:
        if not self.events:
            return []
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.runner._alerts(self.events, self.now, self.answer)


def _fact_error(field: str, message: str) -> FactErrors:
    return FactErrors([FactError(f"`{field}`: {message}", field=field, rule="range", code="F211")])


def rules(policy: Policy) -> list[RuleInfo]:
    """Each clock, ladder step (``ladder-<level>``), churn pattern and tier priority
    (``priority-<tier>``), as decisions name them."""
    model = policy.extra
    out = [RuleInfo(c.location.file, c.location.line, c.id, "clock") for c in model.clocks]
    out += [RuleInfo(s.location.file, s.location.line, f"ladder-{s.level}", "ladder step") for s in model.ladder]
    out += [RuleInfo(w.file, w.line, pid, "churn pattern") for pid, w in model.pattern_locations.items()]
    out += [
        RuleInfo(w.file, w.line, f"priority-{tier}", "priority for tier") for tier, (_, _, w) in model.priority.items()
    ]
    if model.closing is not None:
        out.append(RuleInfo(model.closing.location.file, model.closing.location.line, "closing", "closing actions"))
    return out


def build(policy: Policy, registry: Registry) -> Runner:
    return _Compiled(policy, registry)


def customer_requests(customer: Mapping[str, Any], body: Mapping[str, Any], earlier: Mapping[str, Any]) -> Any:
    """``POST /v1/customer``: one decision per ticket of the body's ``tickets``, each with the
    body's ``events``."""
    tickets = body.get("tickets", [])
    events = body.get("events", [])
    if not isinstance(tickets, list) or not isinstance(events, list):
        raise ValueError("`tickets` and `events` must be JSON arrays")
    return [{"ticket": t, "customer": dict(customer), "events": events} for t in tickets]


def customer_of(request: Mapping[str, Any]) -> Any:
    """The customer who raised the ticket: the request's ``customer.id``."""
    customer = request.get("customer")
    return customer.get("id") if isinstance(customer, Mapping) else None


ESCALATION = Domain(
    kpis=(
        Kpi("sla", "SLA states by category", "state", by="ticket.category", rate="breached"),
        Kpi("sla-time", "SLA states", "state", rate="breached"),
        Kpi("levels", "Escalations by level", "level"),
    ),
    outcome="state",
    kind="escalation",
    description="service-level clocks, escalation ladder and churn early warning",
    schema_extra=SCHEMA,
    shared=False,
    required=("categories", "severities", "clocks", "ladder"),
    uses=("tiering",),
    check=check,
    build=build,
    cross_check=cross_check,
    lint=lint,
    rules=rules,
    sections=(
        "categories",
        "severities",
        "impacts",
        "warning_at",
        "calendars",
        "clocks",
        "priority",
        "ladder",
        "closing",
        "event_backend",
        "churn_patterns",
    ),
    key_order={
        "calendars.*": "description utc_offset days from to holidays workdays",
        "clocks[]": "id stops within categories severities complexity impacts calendar message title description owner"
        " clause",
        "priority[]": "tier factor message title description owner clause",
        "ladder[]": "level owner at after actions message title description clause",
        "closing": "actions message title description owner clause",
        "churn_patterns[]": "id first then absent within unless score_at_most actions"
        " message title description owner clause",
    },
    period_words={"m": "minute"},
    customer_requests=customer_requests,
    customer_of=customer_of,
)
