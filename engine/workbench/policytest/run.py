"""Stage 3: run the cases; decide, compare, and keep the fired rules (coverage) and, for a
failure, the rules and trace steps that decided the outputs that did not match.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from engine.api import Engine
from engine.core.decision import Decision, FiredRule, jsonable
from engine.errors import CharterError, FactError, FactErrors, PolicyErrors, did_you_mean
from engine.workbench.policytest import coverage as cov
from engine.workbench.policytest.format import Case, parse_when
from engine.workbench.policytest.values import MISSING, show
from engine.workbench.policytest.workspace import Workspace, _sources, qualify

DEFAULT_TOLERANCE = 0.005
MAX_TRACE_LINES = 30


@dataclass
class Problem:
    """One way a case's expectation was not met: ``what`` expected ``expected``, got ``actual``."""

    what: str
    expected: Any = MISSING
    actual: Any = MISSING
    text: str = ""
    output: str | None = None  # the output it concerns, to show the rules that set it
    rule: cov.RuleKey | None = None  # the rule it concerns (`fired`, `not_fired`), to show its trace

    def describe(self) -> str:
        if self.text:
            return f"{self.what}: {self.text}"
        return f"{self.what}: expected {show(self.expected)}, got {show(self.actual)}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"what": self.what, "message": self.describe()}
        if self.expected is not MISSING:
            out["expected"] = jsonable(self.expected)
        if self.text == "" or self.actual is not MISSING:
            out["actual"] = None if self.actual is MISSING else jsonable(self.actual)
        return out


@dataclass
class Result:
    case: Case
    status: str = "passed"  # passed, failed, or error (the case could not run)
    problems: list[Problem] = field(default_factory=list)
    fired: set[cov.RuleKey] = field(default_factory=set)
    explanation: list[str] = field(default_factory=list)  # the deciding rules and trace, for a failure
    detail: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def run_case(case: Case, ws: Workspace) -> Result:
    result = Result(case)
    start = time.perf_counter()
    engine = ws.engine(case.file.policies)
    if isinstance(engine, CharterError):
        result.status = "error"
        first = engine.errors[0] if isinstance(engine, PolicyErrors) else engine
        result.problems.append(Problem("policies", text=f"`{case.file.policies}` do not load: {first}"))
        return result
    try:
        ws.use_snapshot(engine, case)
        if "distribution" in case.spec:
            _run_distribution(case, engine, ws, result)
        else:
            _run_decision(case, engine, ws, result)
    except CharterError as exc:  # no decision could be made: a missing snapshot, a plugin's failure
        result.status = "error"
        result.problems.append(Problem("error", text=exc.describe()))
    if result.problems and result.status == "passed":
        result.status = "failed"
    result.seconds = time.perf_counter() - start
    return result


def _run_decision(case: Case, engine: Engine, ws: Workspace, result: Result) -> None:
    spec = case.spec
    facts = build_facts(case, engine, ws, result.problems)
    try:
        decision = engine.evaluate(case.domain, facts, now=case.now, explain=True)
    except FactErrors as exc:
        result.problems += check_error(spec.get("error"), exc)
        return
    result.fired = fired_keys(decision)
    if "error" in spec:
        wanted = spec["error"]["field"]
        result.problems.append(Problem("error", text=f"expected the facts to be refused for `{wanted}`; they were not"))
    else:
        result.problems += check_decision(case, decision)
    if result.problems:
        result.explanation = explain(decision, result.problems, engine)


def build_facts(case: Case, engine: Engine, ws: Workspace, problems: list[Problem]) -> dict[str, Any]:
    """The case's facts: its example customer placed where the domain reads one, ``facts`` over it."""
    spec = case.spec
    facts: dict[str, Any] = {}
    if "customer" in spec:
        record: Any = copy.deepcopy(ws.customer(case))
        uses = engine.program(case.domain).policy.uses
        for key in reversed(next(iter(uses.values())).path if uses else ()):
            record = {key: record}  # escalation reads the customer at `customer`, access at `resource.record`
        facts = record
    facts = merge(facts, copy.deepcopy(spec.get("facts", {})))
    for dotted in spec.get("without", ()):
        *parents, last = dotted.split(".")
        node: Any = facts
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and last in node:
            del node[last]
        else:
            problems.append(Problem("without", text=f"there is no fact `{dotted}` to leave out"))
    return facts


def merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on ``base``: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def check_error(expected: Mapping[str, Any] | None, exc: FactErrors) -> list[Problem]:
    if expected is None:
        return [Problem("facts", text=f"refused: {e.message} [{e.code}]") for e in exc.errors]
    if any(_error_matches(expected, e) for e in exc.errors):
        return []
    wanted = f"`{expected['field']}`" + (f" [{expected['code']}]" if "code" in expected else "")
    got = "; ".join(f"`{e.field}`: {e.message} [{e.code}]" for e in exc.errors)
    return [Problem("error", text=f"expected an error naming {wanted}, got: {got}")]


def _error_matches(expected: Mapping[str, Any], error: FactError) -> bool:
    return (
        error.field == expected["field"]
        and expected.get("code", error.code) == error.code
        and expected.get("message", "") in error.message
    )


def check_decision(case: Case, decision: Decision) -> list[Problem]:
    spec, out = case.spec, list[Problem]()
    outputs = decision.outputs
    for name, want in spec.get("expect", {}).items():
        if name in outputs:
            compare(want, outputs[name], name, out, name)
        else:
            hint = did_you_mean(name, outputs) or "outputs: " + ", ".join(f"`{o}`" for o in outputs)
            out.append(Problem(name, text=f"the decision has no such output ({hint})", output=name))
    fired = fired_keys(decision)
    for text in spec.get("fired", ()):
        key = qualify(text, case.domain)
        if key not in fired:
            out.append(Problem("fired", text=f"rule `{text}` did not fire", rule=key))
    for text in spec.get("not_fired", ()):
        key = qualify(text, case.domain)
        if key in fired:
            r = next(r for d in _decisions(decision) for r in d.fired if (d.domain, r.id) == key)
            out.append(Problem("not_fired", text=f"rule `{text}` fired ({r.file}:{r.line})", rule=key))
    notes = [n for d in _decisions(decision) for n in d.notes]
    for text in spec.get("notes_contain", ()):
        if not any(text in n for n in notes):
            seen = "; ".join(f"`{n}`" for n in notes) or "there are none"
            out.append(Problem("notes", text=f"no note contains `{text}` (notes: {seen})"))
    return out


def compare(expected: Any, actual: Any, path: str, out: list[Problem], output: str) -> None:
    """A mapping checks only the keys it names (`null` also matches a missing key); a list
    checks the same number of items, item by item; anything else must be equal."""
    if isinstance(expected, dict):
        if not isinstance(actual, Mapping):
            out.append(Problem(path, expected, actual, output=output))
            return
        keyed = {str(k): v for k, v in actual.items()}
        for key, want in expected.items():
            if key in keyed:
                compare(want, keyed[key], f"{path}.{key}", out, output)
            elif want is not None:
                out.append(Problem(f"{path}.{key}", want, MISSING, output=output))
        return
    if isinstance(expected, list):
        if not isinstance(actual, (list, tuple)) or len(actual) != len(expected):
            out.append(Problem(path, expected, actual, output=output))
            return
        for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
            compare(want, got, f"{path}[{i}]", out, output)
        return
    if not same(expected, actual):
        out.append(Problem(path, expected, actual, output=output))


def same(expected: Any, actual: Any) -> bool:
    """Equal as an officer means it: `7` is `7.0`, `true` is not `1`, times compare as instants."""
    if expected is None or actual is None:
        return expected is actual
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return math.isclose(expected, actual, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(expected, str) and isinstance(actual, (str, datetime)):
        if expected == actual:
            return True
        want = parse_when(expected) if expected[:4].isdigit() else None
        got = actual if isinstance(actual, datetime) else parse_when(actual) if actual[:4].isdigit() else None
        return want is not None and got is not None and want == got
    return bool(expected == actual)


def _decisions(decision: Decision) -> Iterable[Decision]:
    """The decision and, depth first, every decision it used."""
    yield decision
    for up in decision.upstream:
        yield from _decisions(up)


def fired_keys(decision: Decision) -> set[cov.RuleKey]:
    return {(d.domain, r.id) for d in _decisions(decision) for r in d.fired}


def _run_distribution(case: Case, engine: Engine, ws: Workspace, result: Result) -> None:
    spec = case.spec["distribution"]
    output, weight = spec["output"], spec.get("share_of")
    records = ws.read(_sources(case)[0], engine)
    if isinstance(records, CharterError):
        raise records
    shares: dict[str, float] = {}
    counts: Counter[str] = Counter()
    refused = unweighted = 0
    deciders: dict[cov.RuleKey, FiredRule] = {}
    for record, made in zip(records, engine.evaluate_batch(case.domain, records, now=case.now), strict=True):
        if isinstance(made, FactErrors):
            refused += 1
            continue
        w = 1.0 if weight is None else record.get(weight)
        if isinstance(w, bool) or not isinstance(w, (int, float)):
            unweighted += 1
            continue
        value = value_key(made.outputs.get(output))
        shares[value] = shares.get(value, 0.0) + w
        counts[value] += 1
        for r in made.fired:
            if any(name == output for name, _ in r.outputs):
                deciders.setdefault((made.domain, r.id), r)
    total = sum(shares.values())
    result.fired = set(deciders)
    result.detail = {
        "decided": sum(counts.values()),
        "refused": refused,
        "counts": dict(counts),
        "shares": {k: round(v / total, 6) for k, v in shares.items()} if total else {},
    }
    if unweighted:
        result.detail["without_" + str(weight)] = unweighted
    result.problems += check_shares(spec, shares, counts, total)
    if result.problems:
        found = ", ".join(f"{k} = {v:.4f}" for k, v in sorted(result.detail["shares"].items()))
        result.explanation = [f"  shares found: {found or 'none'}", "  rules that set it:"]
        result.explanation += [
            f"    {_fired_line(r)}" for r in sorted(deciders.values(), key=lambda r: (r.file, r.line))
        ]
        if refused:
            result.explanation.append(f"  ({refused} record(s) with bad facts were left out)")


def check_shares(
    spec: Mapping[str, Any], shares: Mapping[str, float], counts: Counter[str], total: float
) -> list[Problem]:
    output, tolerance = spec["output"], spec.get("tolerance", DEFAULT_TOLERANCE)
    of = f" of all `{spec['share_of']}`" if "share_of" in spec else ""
    if not total:
        return [Problem(output, text="no record could be decided")]
    out = []
    for value, want in spec["expect"].items():
        got = shares.get(str(value), 0.0) / total
        seen = f"got {got:.4f}{of} ({counts.get(str(value), 0)} of {sum(counts.values())})"
        what = f"{output} = {value}"
        if isinstance(want, dict):
            low, high = want.get("at_least", 0.0), want.get("at_most", 1.0)
            if got < low - 1e-12 or got > high + 1e-12:
                bound = " and ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in want.items())
                out.append(Problem(what, want, got, text=f"expected {bound}{of}, {seen}", output=output))
        elif abs(got - want) > tolerance + 1e-12:
            out.append(Problem(what, want, got, text=f"expected {want:g} ± {tolerance:g}{of}, {seen}", output=output))
    return out


def value_key(value: Any) -> str:
    """An output value as a distribution's `expect:` names it: `high`, `true`, `7`."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(jsonable(value), ensure_ascii=False, default=str)


# --------------------------------------------------------------------------------------------
# why a case failed: the rules that decided and their trace
# --------------------------------------------------------------------------------------------


def explain(decision: Decision, problems: Sequence[Problem], engine: Engine) -> list[str]:
    """The rules that set the outputs that did not match, their trace, and the decisions used."""
    outs = {p.output for p in problems if p.output}
    named = {p.rule[1] for p in problems if p.rule and p.rule[0] == decision.domain}
    own = [r for r in decision.fired if outs & {name for name, _ in r.outputs}] or list(decision.fired)
    lines = ["  rules that decided:"] + [f"    {_fired_line(r)}" for r in own]
    if not own:
        lines.append("    (no rule fired)")
    for up in list(_decisions(decision))[1:]:
        lines += [f"    {_fired_line(r)}  [{up.domain}]" for r in up.fired[:10]]
    steps = {s.id for s in engine.program(decision.domain).policy.steps if outs & set(s.outputs)}
    wanted = {r.id for r in own} | named
    trace = [t for t in decision.trace or () if t.rule in wanted or t.step in steps]
    if trace:
        fired = set(decision.fired_ids)
        lines.append("  trace (* fired; yes/no: whether the rule's condition held; n/a: undefined):")
        for t in trace[:MAX_TRACE_LINES]:
            mark = ("*" if t.rule in fired else " ") + {True: "yes", False: "no ", None: "n/a"}[t.matched]
            tests = "; ".join(f"{text} [{', '.join(map(_show, vals))}] -> {_show(res)}" for text, vals, res in t.tests)
            lines.append(f"    {mark} {t.step}/{t.rule}: {tests or 'always'}{'  (' + t.error + ')' if t.error else ''}")
        if len(trace) > MAX_TRACE_LINES:
            lines.append(f"    ... {len(trace) - MAX_TRACE_LINES} more step(s): `charter explain` shows them all")
    return lines


def _fired_line(r: FiredRule) -> str:
    return f"[{r.id}] {r.message or '(no message)'}  ({r.file}:{r.line}{'; ' + r.clause if r.clause else ''})"


def _show(value: Any) -> str:
    """A traced value as an officer would write it: durations in days and hours."""
    if isinstance(value, timedelta):
        days, rest = divmod(int(value.total_seconds()), 86400)
        return f"{days}d{rest // 3600}h" if days else f"{rest // 3600}h{rest % 3600 // 60}m"
    if isinstance(value, BaseException):
        return f"undefined: {value}"
    if isinstance(value, (str, bool, datetime)) or value is None:
        return show(value)
    return str(value)
