"""Built-in event-pattern backends for churn early warning (escalation domain).

``durable_rules`` (the default) compiles each pattern into a durable-rules rule set and
asserts a customer's events as facts, in time order, each with its own timestamp; an
absence pattern is judged by one last ``clock`` fact at the caller's ``now``. No
durable-rules timer is used, so the same history always yields the same alerts.
durable-rules lives only in this module (and is imported only when a policy uses it), so it
can be replaced by another backend plugin without touching the engine.

``python`` is a plain reference implementation of the same semantics; the test suite
checks that the two agree on random histories.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from engine.hookspecs import hookimpl
from engine.plugins import Alert, EventBackendSpec, EventMatcher, EventPattern

CLOCK = "__clock__"


# --------------------------------------------------------------------------------------------
# durable-rules
# --------------------------------------------------------------------------------------------

_lock = threading.Lock()  # durable-rules keeps one global host
_compiled: dict[str, list[str]] = {}  # key -> rule set names, so a policy version compiles once
_sinks: dict[str, list[Alert]] = {}  # session id -> alerts collected by the consequences


def _quiet_host() -> None:
    """Install a durable-rules host without its background dispatch threads.

    ``durable.engine.Host`` starts two timer threads that keep dispatching every rule set,
    concurrently with the ``assert_fact`` calls made here under ``_lock``: a data race inside
    its C engine that crashed the process at random (SIGSEGV in ``assert_fact``, more often
    the longer a run took). Charter feeds event timestamps and uses no durable-rules timer,
    and consequences run inside ``assert_fact``, so the host runs without those threads.
    Call under ``_lock``.
    """
    from durable import engine, lang

    if lang._main_host is None:

        class QuietHost(engine.Host):  # type: ignore[misc]  # durable-rules ships no type hints
            def _run(self) -> None:  # no background dispatch: nothing runs outside our lock
                return

        lang._main_host = QuietHost()


def _durable_compile(patterns: Sequence[EventPattern], key: str) -> EventMatcher:
    from durable.engine import MessageNotHandledException
    from durable.lang import assert_fact, retract_fact

    with _lock:
        _quiet_host()
        names = _compiled.get(key)
        if names is None:
            names = [_ruleset(f"charter_{key}_{i}", p) for i, p in enumerate(patterns)]
            _compiled[key] = names

    def match(events: Sequence[Mapping[str, Any]], now: int) -> list[Alert]:
        alerts: list[Alert] = []
        with _lock:
            # one session, emptied after each history: durable-rules cannot free a session's
            # state safely (see below), and a new session per history would fill its tables
            sid = "charter"
            _sinks[sid] = alerts
            try:
                facts = [
                    {**{k: v for k, v in fact.items() if v is not None}, "sid": sid}
                    for fact in [*events, {"kind": CLOCK, "ts": now, "eid": "now"}]
                ]
                for name in names:
                    _sinks[sid] = alerts
                    asserted = []
                    for fact in facts:
                        # a kind of event no rule of this set looks at is refused: nothing to do
                        with contextlib.suppress(MessageNotHandledException):
                            assert_fact(name, fact)
                            asserted.append(fact)
                    # durable-rules' own `delete_state` can crash after a `none` condition was
                    # retracted; retracting the facts, newest first, empties the session safely.
                    # Matches a retraction makes are not part of the history: they go nowhere.
                    _sinks[sid] = []
                    for fact in reversed(asserted):
                        with contextlib.suppress(MessageNotHandledException):
                            retract_fact(name, fact)
            finally:
                del _sinks[sid]
        return sorted(set(alerts))

    return match


def _ruleset(name: str, p: EventPattern) -> str:
    from durable.lang import c, m, none, ruleset, when_all

    def sink(pattern: str, at: Callable[[Any], int], ids: Callable[[Any], tuple[str, ...]]) -> Callable[[Any], None]:
        def consequence(ctx: Any) -> None:
            _sinks[ctx.first.sid].append(Alert(int(at(ctx)), pattern, ids(ctx)))

        return consequence

    with ruleset(name):
        first = m.kind == p.first
        if p.score_at_most is not None:
            first = first & (m.score <= p.score_at_most)
        if p.then is not None:
            assert p.within is not None
            conditions: list[Any] = [
                c.first << first,
                c.second << ((m.kind == p.then) & (m.ts > c.first.ts) & (m.ts <= c.first.ts + p.within)),
            ]
            if p.unless is not None:
                conditions.append(none((m.kind == p.unless) & (m.ref == c.first.eid)))
            when_all(*conditions)(sink(p.id, lambda x: x.second.ts, lambda x: (x.first.eid, x.second.eid)))
        elif p.absent is not None:
            assert p.within is not None
            when_all(
                c.first << first,
                c.clock << ((m.kind == CLOCK) & (m.ts >= c.first.ts + p.within)),
                none((m.kind == p.absent) & (m.ts > c.first.ts) & (m.ts <= c.first.ts + p.within)),
            )(sink(p.id, lambda x: x.first.ts + p.within, lambda x: (x.first.eid,)))
        else:
            when_all(c.first << first)(sink(p.id, lambda x: x.first.ts, lambda x: (x.first.eid,)))
    return name


# --------------------------------------------------------------------------------------------
# the plain reference
# --------------------------------------------------------------------------------------------


def _python_compile(patterns: Sequence[EventPattern], key: str) -> EventMatcher:
    def match(events: Sequence[Mapping[str, Any]], now: int) -> list[Alert]:
        out: set[Alert] = set()
        for p in patterns:
            for i, a in enumerate(events):
                if a["kind"] != p.first:
                    continue
                if p.score_at_most is not None and not (a.get("score") is not None and a["score"] <= p.score_at_most):
                    continue
                if p.then is not None:
                    assert p.within is not None
                    for j, b in enumerate(events):
                        if j == i or b["kind"] != p.then or not a["ts"] < b["ts"] <= a["ts"] + p.within:
                            continue
                        answered = p.unless is not None and any(
                            e["kind"] == p.unless and e.get("ref") == a["eid"] for e in events[:j]
                        )
                        if not answered:
                            out.add(Alert(b["ts"], p.id, (a["eid"], b["eid"])))
                elif p.absent is not None:
                    assert p.within is not None
                    end = a["ts"] + p.within
                    if now >= end and not any(e["kind"] == p.absent and a["ts"] < e["ts"] <= end for e in events):
                        out.add(Alert(end, p.id, (a["eid"],)))
                else:
                    out.add(Alert(a["ts"], p.id, (a["eid"],)))
        return sorted(out)

    return match


@hookimpl
def charter_event_backends() -> list[EventBackendSpec]:
    return [
        EventBackendSpec(
            "durable_rules", _durable_compile, "durable-rules 2.0, fed the events in time order", "2.0.28"
        ),
        EventBackendSpec("python", _python_compile, "plain Python reference of the same semantics"),
    ]
