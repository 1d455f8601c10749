"""The durable-rules worker: runs the event-pattern rule sets in a process of its own.

durable-rules' C engine (2.0.28, unmaintained) reads and writes out of bounds in places
(valgrind shows it; ``plugins/events.py`` lists them), so it never runs inside the host's
process: a fault here ends this worker, not the application. ``plugins/events.py`` starts
this script with the interpreter it runs on and talks to it over stdin/stdout, one request
per line of JSON, one answer per line:

- ``{"op": "compile", "key": K, "patterns": [...]}`` -> ``{"ok": true}``
- ``{"op": "match", "key": K, "events": [...], "now": N}`` -> ``{"alerts": [[at, id, [eids]]]}``
- any failure -> ``{"error": "..."}``

It imports nothing from Charter, so it starts in a few tens of milliseconds.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
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


class Compiled:
    """The rule sets of one policy version and the tokens that stand for its event kinds."""

    def __init__(self, key: str, patterns: list[dict[str, Any]]) -> None:
        kinds = sorted({p[f] for p in patterns for f in ("first", "then", "unless", "absent") if p.get(f) is not None})
        self.token = {kind: f"k{i}" for i, kind in enumerate(kinds)}  # the clock's is CLOCK
        self.rulesets = [
            (_ruleset(f"charter_{key}_{i}", p, self.token), p.get("score_at_most")) for i, p in enumerate(patterns)
        ]


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
    all). Its JSON reader refuses numbers written with an exponent (Python writes 1e-05 and
    1e+16 so) and overflows past 64-bit integers, so a score reaches it as `low`: 1 when the
    score is at most the pattern's `score_at_most`, else 0. Timestamps are whole seconds
    within the years 1-9999.
    """
    from durable.engine import MessageNotHandledException
    from durable.lang import assert_fact, retract_fact

    compiled = _compiled[key]
    eids = [str(e["eid"]) for e in events]
    position: dict[str, int] = {}
    for i, eid in enumerate(eids):
        position.setdefault(eid, i)  # equal ids, equal numbers
    base: list[tuple[dict[str, Any], Any]] = []
    for i, e in enumerate(events):
        kind = compiled.token.get(e["kind"])
        if kind is None:
            continue
        fact = {"sid": SID, "one": 1, "kind": kind, "ts": int(e["ts"]), "eid": position[eids[i]]}
        if e.get("ref") is not None:
            fact["ref"] = position.get(str(e["ref"]), -1)
        base.append((fact, e.get("score")))
    clock = {"sid": SID, "one": 1, "kind": CLOCK, "ts": int(now), "eid": -1}
    alerts: list[tuple[int, str, tuple[str, ...]]] = []
    for name, at_most in compiled.rulesets:
        facts = [
            {**fact, "low": int(score <= at_most)} if at_most is not None and score is not None else fact
            for fact, score in base
        ]
        facts.append(clock)
        _sink.clear()
        asserted = []
        for fact in facts:
            # a kind of event no rule of this set looks at is refused: nothing to do
            with contextlib.suppress(MessageNotHandledException):
                assert_fact(name, fact)
                asserted.append(fact)
        alerts.extend((at, pattern, tuple(eids[i] for i in ids)) for at, pattern, ids in _sink)
        # durable-rules' `delete_state` frees a pointer it never initialised; retracting the
        # facts, newest first, empties the session. Matches a retraction makes go nowhere.
        for fact in reversed(asserted):
            with contextlib.suppress(MessageNotHandledException):
                retract_fact(name, fact)
        _sink.clear()
    return sorted(set(alerts))


def serve(stdin: Any, stdout: Any) -> None:
    for line in stdin:
        try:
            req = json.loads(line)
            if req["op"] == "compile":
                compile_patterns(req["key"], req["patterns"])
                answer: dict[str, Any] = {"ok": True}
            else:
                answer = {"alerts": [[a, p, list(ids)] for a, p, ids in match(req["key"], req["events"], req["now"])]}
        except Exception as exc:  # reported to the host, which raises it as a plugin error
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        stdout.write(json.dumps(answer, separators=(",", ":")) + "\n")
        stdout.flush()


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
