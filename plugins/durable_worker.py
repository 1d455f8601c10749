"""The durable-rules worker: runs the event-pattern rule sets in a process of its own.

durable-rules' C engine (2.0.28, unmaintained) reads and writes out of bounds in places
(valgrind shows it; ``plugins/events.py`` lists them), so it never runs inside the host's
process: a fault here ends this worker, not the application. ``plugins/events.py`` starts
this script with the interpreter it runs on and talks to it over stdin/stdout, one request
per line of JSON, one answer per line:

- ``{"op": "compile", "key": K, "patterns": [...]}`` -> ``{"ok": true}``
- ``{"op": "match", "key": K, "events": [...], "now": N}`` -> ``{"alerts": [[at, id, [eids]]]}``
- ``{"op": "match_many", "key": K, "histories": [{"events": [...], "now": N}, ...]}`` -> one
  answer line per history, in order, each written as soon as it is matched (so the host
  knows which history a crash or a hang happened on)
- any failure -> ``{"error": "..."}``

It imports nothing from Charter, so it starts in a few tens of milliseconds.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CLOCK = "clock"  # the kind of the last fact, at `now`; event kinds become k0, k1, ...
SID = "charter"

_sink: list[tuple[int, str, tuple[int, ...]]] = []  # alerts of the history being matched


def _quiet_host() -> None:
    """Install a durable-rules host without its two background dispatch threads.

    They dispatch every rule set concurrently with the calls made here (a data race inside
    the C engine); Charter feeds event timestamps, uses no durable-rules timer, and its
    consequences run inside ``assert_fact``, so nothing needs them.
    """
    from durable import engine, lang

    if lang._main_host is None:

        class QuietHost(engine.Host):  # type: ignore[misc]  # durable-rules ships no type hints
            def _run(self) -> None:
                return

        lang._main_host = QuietHost()


def _ruleset(name: str, p: dict[str, Any], token: dict[str, str]) -> str:
    from durable.lang import c, m, none, ruleset, when_all

    def sink(pattern: str, at: Callable[[Any], int], ids: Callable[[Any], tuple[int, ...]]) -> Callable[[Any], None]:
        def consequence(ctx: Any) -> None:
            _sink.append((int(at(ctx)), pattern, ids(ctx)))

        return consequence

    # Every conjunction that compares with an earlier fact ends with a comparison that is
    # always true (every fact has `one: 1`): durable-rules' C engine, when the *last*
    # comparison of such a conjunction is false, looks for the conjunction's end past the
    # end of its expression array (events.c, reduceExpressionSequence) and crashed.
    same = m.one == c.first.one
    within = p.get("within")
    with ruleset(name):
        first = m.kind == token[p["first"]]
        if p.get("score_at_most") is not None:
            first = first & (m.low == 1)
        if p.get("then") is not None:
            conditions: list[Any] = [
                c.first << first,
                c.second << ((m.kind == token[p["then"]]) & (m.ts > c.first.ts) & (m.ts <= c.first.ts + within) & same),
            ]
            if p.get("unless") is not None:
                conditions.append(none((m.kind == token[p["unless"]]) & (m.ref == c.first.eid) & same))
            when_all(*conditions)(sink(p["id"], lambda x: x.second.ts, lambda x: (x.first.eid, x.second.eid)))
        elif p.get("absent") is not None:
            when_all(
                c.first << first,
                c.clock << ((m.kind == CLOCK) & (m.ts >= c.first.ts + within) & same),
                none((m.kind == token[p["absent"]]) & (m.ts > c.first.ts) & (m.ts <= c.first.ts + within) & same),
            )(sink(p["id"], lambda x: x.first.ts + within, lambda x: (x.first.eid,)))
        else:
            when_all(c.first << first)(sink(p["id"], lambda x: x.first.ts, lambda x: (x.first.eid,)))
    return name


@dataclass
class Plan:
    """One pattern's rule set: the tokens of the kinds it looks at, and what its first event is."""

    name: str
    first: str  # the token of the first event's kind
    kinds: frozenset[str]  # every kind its rules compare with (a fact of another kind is never asserted)
    at_most: float | None  # `score_at_most`: a first event must be `low`
    clock: bool  # an absence pattern: judged by the clock fact at `now`
    rules: Any = None  # durable-rules' ruleset object, once registered


class Compiled:
    """The rule sets of one policy version and the tokens that stand for its event kinds."""

    def __init__(self, key: str, patterns: list[dict[str, Any]]) -> None:
        from durable.lang import get_host

        kinds = sorted({p[f] for p in patterns for f in ("first", "then", "unless", "absent") if p.get(f) is not None})
        self.token = {kind: f"k{i}" for i, kind in enumerate(kinds)}  # the clock's is CLOCK
        self.plans = []
        for i, p in enumerate(patterns):
            name = _ruleset(f"charter_{key}_{i}", p, self.token)
            named = frozenset(self.token[p[f]] for f in ("first", "then", "unless", "absent") if p.get(f) is not None)
            clock = p.get("absent") is not None
            self.plans.append(Plan(name, self.token[p["first"]], named, p.get("score_at_most"), clock))
        host = get_host()  # registers the rule sets just defined
        for plan in self.plans:
            plan.rules = host.get_ruleset(plan.name)


_compiled: dict[str, Compiled] = {}


def compile_patterns(key: str, patterns: list[dict[str, Any]]) -> None:
    if key not in _compiled:
        _quiet_host()
        _compiled[key] = Compiled(key, patterns)


def match(key: str, events: list[dict[str, Any]], now: int) -> list[tuple[int, str, tuple[str, ...]]]:
    """The alerts of one history; the session is emptied again afterwards.

    Only small integers and short tokens reach durable-rules. Its C engine keeps pointers to
    a stored fact's strings into the text it was handed, which Python frees after the call
    (valgrind: reads of freed memory), so event ids become their positions (and go back on
    the way out) and event kinds become tokens (a kind no pattern names is not asserted at
    all); the text of each fact is kept until the fact is retracted. Its JSON reader refuses
    numbers written with an exponent (Python writes 1e-05 and 1e+16 so) and overflows past
    64-bit integers, so a score reaches it as `low`: 1 when the score is at most the
    pattern's `score_at_most`, else 0. Timestamps are whole seconds within the years 1-9999.

    Each rule set is fed only the facts of the kinds its rules compare with (durable-rules
    would refuse the others: no rule looks at them), the clock fact only when it judges an
    absence, and nothing at all when no event can be its first one: no rule of it could fire.
    """
    compiled = _compiled[key]
    eids = [str(e["eid"]) for e in events]
    position: dict[str, int] = {}
    for i, eid in enumerate(eids):
        position.setdefault(eid, i)  # equal ids, equal numbers
    base: list[tuple[str, str, Any]] = []  # (kind token, the fact's JSON text less its end, score)
    for i, e in enumerate(events):
        kind = compiled.token.get(e["kind"])
        if kind is None:
            continue
        # `n`, the event's place, tells apart two events alike in all else (durable-rules refused
        # the second as a fact it already holds, and the history failed)
        text = f'{{"sid":"{SID}","one":1,"kind":"{kind}","ts":{int(e["ts"])},"eid":{position[eids[i]]},"n":{i}'
        if e.get("ref") is not None:
            text += f',"ref":{position.get(str(e["ref"]), -1)}'
        base.append((kind, text, e.get("score")))
    clock = f'{{"sid":"{SID}","one":1,"kind":"{CLOCK}","ts":{int(now)},"eid":-1}}'
    alerts: list[tuple[int, str, tuple[str, ...]]] = []
    for plan in compiled.plans:
        facts, firsts = [], 0
        for kind, text, score in base:
            if kind not in plan.kinds:
                continue
            low = None if plan.at_most is None or score is None else int(score <= plan.at_most)
            facts.append(text + "}" if low is None else f'{text},"low":{low}}}')
            firsts += kind == plan.first and (plan.at_most is None or low == 1)
        if not firsts:
            continue
        if plan.clock:
            facts.append(clock)
        alerts.extend(_run(plan.rules, facts, eids))
    return sorted(set(alerts))


def _run(rules: Any, facts: list[str], eids: list[str]) -> list[tuple[int, str, tuple[str, ...]]]:
    """Assert ``facts`` (JSON texts) in order into one rule set, collect what fired, and retract
    them again, newest first: durable-rules' ``delete_state`` frees a pointer it never
    initialised, so retracting is how the session is emptied. Matches a retraction makes go
    nowhere. As ``durable.engine.Host.assert_fact`` does it, less its per-call overheads."""
    import durable_rules_engine as dr
    from durable.engine import MessageNotHandledException

    _sink.clear()
    asserted = []
    try:
        for text in facts:
            try:
                state = rules._handle_result(dr.assert_fact(rules._handle, text), text)
            except MessageNotHandledException:  # a fact no rule of this set looks at: nothing to do
                continue
            asserted.append(text)  # retracted below even if its consequences fail
            _actions(rules, state)
        return [(at, pattern, tuple(eids[i] for i in ids)) for at, pattern, ids in _sink]
    finally:  # the session is emptied whatever happened: nothing leaks into the next history
        for text in reversed(asserted):
            with contextlib.suppress(MessageNotHandledException):
                _actions(rules, rules._handle_result(dr.retract_fact(rules._handle, text), text))
        _sink.clear()


def _actions(rules: Any, state: Any) -> None:
    """Run the consequences a fact made due (as ``durable.engine.Host._handle_function``)."""
    error: list[Any] = []
    rules.do_actions(state, lambda e, _: error.append(e) if e else None)
    if error:
        raise error[0]


def serve(stdin: Any, stdout: Any) -> None:
    for line in stdin:
        try:
            req = json.loads(line)
            if req["op"] == "match_many":  # one answer line per history, each sent when it is ready
                key = req["key"]
                for history in req["histories"]:
                    _answer(stdout, lambda h=history, k=key: _alerts(k, h["events"], h["now"]))
                continue
            if req["op"] == "compile":
                compile_patterns(req["key"], req["patterns"])
                answer: dict[str, Any] = {"ok": True}
            else:
                answer = _alerts(req["key"], req["events"], req["now"])
        except Exception as exc:  # reported to the host, which raises it as a plugin error
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        _write(stdout, answer)


def _alerts(key: str, events: list[dict[str, Any]], now: int) -> dict[str, Any]:
    return {"alerts": [[a, p, list(ids)] for a, p, ids in match(key, events, now)]}


def _answer(stdout: Any, work: Callable[[], dict[str, Any]]) -> None:
    try:
        answer = work()
    except Exception as exc:  # reported to the host, which raises it as a plugin error
        answer = {"error": f"{type(exc).__name__}: {exc}"}
    _write(stdout, answer)


def _write(stdout: Any, answer: dict[str, Any]) -> None:
    stdout.write(json.dumps(answer, separators=(",", ":")) + "\n")
    stdout.flush()


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
