"""Stage 3, compile: a checked ``Policy`` into Python closures, once, at load time.

Compilation is a named, ordered list of passes (``PASSES``); each pass adds to a
``CompiledPolicy`` and can be timed or stopped after (``compile_policy(..., stop_after=)``):

1. ``facts``   — the fact checker (``engine.core.facts``);
2. ``scores``  — score functions: plugin scorers bound to their arguments, or expressions;
3. ``steps``   — one program per band set or decision table, specialised by hit policy,
   with ``unique`` tables on text values turned into a dictionary lookup;
4. ``digest``  — the digest of every score definition, which snapshots are checked against;
5. ``domain``  — a domain with its own semantics compiles its sections (``engine.domains``).

Nothing here is evaluated per decision: ``engine.core.evaluate`` runs the result.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.core import cells
from engine.core.decision import FiredRule, TraceStep
from engine.core.domain import Domain, Runner
from engine.core.expr import EvalError, compile_expr, compile_traced, source
from engine.core.expr import TraceStep as ExprStep
from engine.core.facts import FactChecker
from engine.core.model import BandsDecl, Policy, RuleDecl, Step, TableDecl
from engine.errors import EvaluationError
from engine.hookspecs import Registry, ScorerSpec

Env = dict[str, Any]
Condition = Callable[[Env], Any]
# run(env, outputs, fired, notes, trace): sets outputs, appends fired rules and notes
StepRun = Callable[[Env, dict[str, Any], list[FiredRule], list[str], list[TraceStep] | None], None]
ScoreFn = Callable[[Env], float]


@dataclass
class CompiledPolicy:
    policy: Policy
    checker: FactChecker | None = None
    scores: list[tuple[str, ScoreFn]] = field(default_factory=list)
    steps: list[StepProgram] = field(default_factory=list)
    score_digests: dict[str, str] = field(default_factory=dict)
    tables: dict[str, TableParts] = field(default_factory=dict)
    ranking: dict[str, ScorerSpec] = field(default_factory=dict)  # scores that need population statistics
    runner: Runner | None = None  # a domain with its own semantics (``engine.domains``)
    domain: Domain | None = None  # what the policy's kind is (``engine.core.domain``), set by the domain pass


@dataclass(frozen=True)
class TableParts:
    """What the generated code of ``codegen`` calls back into for one table."""

    rows: list[tuple[Any, FiredRule, tuple[tuple[str, Any], ...], Callable[[Env, list[str]], bool]]]
    apply: Callable[[list[int], dict[str, Any], list[FiredRule], list[str]], None]
    ranks: list[int]  # each row's priority (lower wins) under `hit: priority`


class StepProgram:
    """A compiled band set or table. ``bind(snapshot_cuts)`` gives the runnable step."""

    def __init__(self, decl: Step, run: StepRun | None = None) -> None:
        self.decl = decl
        self._run = run

    @property
    def needs_snapshot(self) -> bool:
        return isinstance(self.decl, BandsDecl)

    def bind(self, cut: Callable[[str, float], float] | None) -> StepRun:
        if self._run is not None:
            return self._run
        assert isinstance(self.decl, BandsDecl)
        if cut is None:
            raise EvaluationError(
                f"`{self.decl.id}` ranks customers and needs a population snapshot",
                code="V001",
                hint="build one with `charter snapshot` or pass `snapshot=` to the engine",
            )
        return _bands_run(self.decl, cut)


# --------------------------------------------------------------------------------------------
# passes
# --------------------------------------------------------------------------------------------


def _pass_facts(cp: CompiledPolicy, registry: Registry) -> None:
    cp.checker = FactChecker(cp.policy.facts, cp.policy.id)


def _pass_scores(cp: CompiledPolicy, registry: Registry) -> None:
    for name, decl in cp.policy.scores.items():
        if decl.expr is not None:
            cp.scores.append((name, compile_expr(decl.expr, cp.policy.env)))
        else:
            assert decl.scorer is not None
            spec = registry.scorers[decl.scorer]
            func, args = spec.func, dict(decl.args)
            if spec.metrics is not None:  # ranks against the population: bound to a snapshot later
                cp.ranking[name] = spec
                cp.scores.append((name, _needs_snapshot(name)))
            else:
                cp.scores.append((name, _bind_scorer(func, args)))


def _needs_snapshot(name: str) -> ScoreFn:
    def unbound(env: Env) -> float:
        raise EvaluationError(f"score `{name}` ranks customers and needs a population snapshot", code="V001")

    return unbound


def bind_ranking_scorer(spec: ScorerSpec, args: dict[str, Any], stats: Mapping[str, Any]) -> ScoreFn:
    """A ranking scorer bound to the population cut points of a snapshot."""
    func = spec.func

    def score(env: Env) -> float:
        return func(env["customer"], args, env["now"], stats)

    return score


def _bind_scorer(func: Callable[[Mapping[str, Any], Mapping[str, Any], Any], float], args: dict[str, Any]) -> ScoreFn:
    def score(env: Env) -> float:
        return func(env["customer"], args, env["now"])

    return score


def _pass_steps(cp: CompiledPolicy, registry: Registry) -> None:
    for step in cp.policy.steps:
        if isinstance(step, BandsDecl):
            cp.steps.append(StepProgram(step))
        else:
            run, parts = _table_run(step, cp.policy)
            cp.steps.append(StepProgram(step, run))
            cp.tables[step.id] = parts


def _pass_digest(cp: CompiledPolicy, registry: Registry) -> None:
    for name, decl in cp.policy.scores.items():
        if decl.expr is not None:
            definition: dict[str, Any] = {"expr": source(decl.expr)}
        else:
            assert decl.scorer is not None
            definition = {"scorer": decl.scorer, "version": registry.scorers[decl.scorer].version, "args": decl.args}
        text = json.dumps(definition, sort_keys=True)
        cp.score_digests[name] = hashlib.sha256(text.encode()).hexdigest()[:16]


def _pass_domain(cp: CompiledPolicy, registry: Registry) -> None:
    cp.domain = registry.domains[cp.policy.kind]
    build = cp.domain.build
    if build is not None:
        cp.runner = build(cp.policy, registry)


PASSES: list[tuple[str, Callable[[CompiledPolicy, Registry], None]]] = [
    ("facts", _pass_facts),
    ("scores", _pass_scores),
    ("steps", _pass_steps),
    ("digest", _pass_digest),
    ("domain", _pass_domain),
]


def compile_policy(policy: Policy, registry: Registry, *, stop_after: str | None = None) -> CompiledPolicy:
    """Run the compile passes in order, optionally stopping after the one named."""
    cp = CompiledPolicy(policy)
    for name, run in PASSES:
        run(cp, registry)
        if name == stop_after:
            break
    return cp


# --------------------------------------------------------------------------------------------
# bands
# --------------------------------------------------------------------------------------------


def band_cuts(decl: BandsDecl, cut: Callable[[str, float], float]) -> list[tuple[float, Any, float, FiredRule]]:
    """(threshold, value, percentile, rule) from the top band down; the bottom band's threshold is -inf."""
    ordered = sorted(decl.bands, key=lambda b: b.low, reverse=True)
    return [
        (
            -math.inf if b.low <= 0 else cut(decl.score, b.low),
            b.value,
            b.low,
            FiredRule(
                b.id,
                decl.id,
                ((decl.output, b.value),),
                b.message,
                b.location.file,
                b.location.line,
                b.clause or decl.clause,
            ),
        )
        for b in ordered
    ]


def _bands_run(decl: BandsDecl, cut: Callable[[str, float], float]) -> StepRun:
    table = band_cuts(decl, cut)
    score, output, step_id = decl.score, decl.output, decl.id

    def run(
        env: Env, outputs: dict[str, Any], fired: list[FiredRule], notes: list[str], trace: list[TraceStep] | None
    ) -> None:
        value = env["scores"].get(score)
        if value is None:
            outputs[output] = None
            notes.append(f"`{step_id}`: score `{score}` could not be computed")
            return
        for threshold, band_value, low, rule in table:
            if value >= threshold:
                outputs[output] = band_value
                fired.append(rule)
                if trace is not None:
                    trace.append(
                        TraceStep(
                            step_id,
                            rule.id,
                            True,
                            ((f"scores.{score} >= cut point at percentile {low:g}", (value, threshold), True),),
                        )
                    )
                return

    return run


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------

_UNDEF = object()


@dataclass(frozen=True)
class _Row:
    rule: RuleDecl
    fired: FiredRule
    when: Condition | None
    when_traced: Callable[[Env, list[ExprStep]], Any] | None
    tests: tuple[tuple[str, Callable[[Any], bool], str], ...]  # input name, test, cell text


def _row(table: TableDecl, rule: RuleDecl, env: Mapping[str, Any]) -> _Row:
    fired = FiredRule(
        rule.id,
        table.id,
        tuple(rule.then.items()),
        rule.message,
        rule.location.file,
        rule.location.line,
        rule.clause or table.clause,
    )
    when = compile_expr(rule.when, env) if rule.when is not None else None
    traced = compile_traced(rule.when, env) if rule.when is not None else None
    tests = tuple((name, cells.test(cell), cell.text) for name, cell in rule.match.items())
    return _Row(rule, fired, when, traced, tests)


INPUTS = "\x00inputs"  # where a table's input values sit in the activation while it runs


def _match_condition(row_tests: tuple[tuple[str, Callable[[Any], bool], str], ...]) -> Condition:
    """A row's `match:` cells as one condition over the table's input values."""

    def matches(env: Env) -> bool:
        values = env[INPUTS]
        for name, test, _ in row_tests:  # noqa: SIM110 - a loop beats all(generator) on the hot path
            if not test(values.get(name, _UNDEF)):
                return False
        return True

    return matches


def _traced(row: _Row, env: Env, trace: list[TraceStep]) -> None:
    steps: list[ExprStep] = []
    matched: bool | None
    error = ""
    if row.when_traced is not None:
        try:
            matched = row.when_traced(env, steps) is True
        except EvalError as exc:
            matched, error = None, str(exc)
        tests = tuple((s.text, tuple(s.operands), s.result) for s in steps)
    else:
        values = env[INPUTS]
        tests = tuple(
            (f"{name} {text}", (values.get(name),), test(values.get(name, _UNDEF))) for name, test, text in row.tests
        )
        matched = all(t[2] for t in tests)
    trace.append(TraceStep(row.fired.step, row.rule.id, matched, tests, error))


def _table_run(table: TableDecl, policy: Policy) -> tuple[StepRun, TableParts]:
    """The table as one closure, specialised by hit policy; rows are tried in file order."""
    rows = [_row(table, r, policy.env) for r in table.rules]
    inputs = [(name, compile_expr(node, policy.env)) for name, node in table.inputs.items()]
    default = dict(table.default) if table.default is not None else None
    outs, step_id, hit = table.outputs, table.id, table.hit
    sets = {
        id(row): tuple((n, row.rule.then.get(n, default.get(n) if default else None)) for n in outs) for row in rows
    }
    plan = [(row.when if row.when is not None else _match_condition(row.tests), row, sets[id(row)]) for row in rows]
    default_sets = tuple((n, default.get(n) if default else None) for n in outs)
    no_match = f"no rule of `{step_id}` matched"
    priority = _priority(table, policy)
    rank = [priority.get(row.rule.then.get(outs[0]), len(priority)) for row in rows]
    index = _index(rows, list(table.inputs)) if hit == "unique" else None

    def prepare(env: Env, notes: list[str], trace: list[TraceStep] | None) -> None:
        values: dict[str, Any] = {}
        for name, fn in inputs:
            try:
                values[name] = fn(env)
            except EvalError as exc:
                notes.append(f"`{step_id}` input `{name}` is undefined: {exc}")
        env[INPUTS] = values
        if trace is not None:
            for row in rows:
                _traced(row, env, trace)

    def finish(outputs: dict[str, Any], notes: list[str]) -> None:
        for name, value in default_sets:
            outputs[name] = value
        if default is None:
            notes.append(no_match)

    def run_first(
        env: Env, outputs: dict[str, Any], fired: list[FiredRule], notes: list[str], trace: list[TraceStep] | None
    ) -> None:
        if inputs or trace is not None:
            prepare(env, notes, trace)
        for when, row, values in plan:
            try:
                if when(env) is True:
                    for name, value in values:
                        outputs[name] = value
                    fired.append(row.fired)
                    return
            except EvalError as exc:
                notes.append(f"rule `{row.rule.id}` is undefined: {exc}")
        finish(outputs, notes)

    def run_all(
        env: Env, outputs: dict[str, Any], fired: list[FiredRule], notes: list[str], trace: list[TraceStep] | None
    ) -> None:
        if inputs or trace is not None:
            prepare(env, notes, trace)
        matched = []
        for i, (when, row, _) in enumerate(plan):
            try:
                if when(env) is True:
                    matched.append(i)
            except EvalError as exc:
                notes.append(f"rule `{row.rule.id}` is undefined: {exc}")
        apply(matched, outputs, fired, notes)

    def apply(matched: list[int], outputs: dict[str, Any], fired: list[FiredRule], notes: list[str]) -> None:
        """Set the outputs from the rows that matched (by index), by the table's hit policy."""
        if hit == "collect":
            for name in outs:
                collected: list[Any] = []
                for i in matched:
                    value = rows[i].rule.then.get(name)
                    for v in value if isinstance(value, list) else [value]:
                        if v is not None and v not in collected:
                            collected.append(v)
                outputs[name] = collected
            fired.extend(rows[i].fired for i in matched)
            return
        if not matched:
            finish(outputs, notes)
            return
        best = min(matched, key=rank.__getitem__)  # priority; `unique` has at most one match
        for name, value in plan[best][2]:
            outputs[name] = value
        fired.append(rows[best].fired)

    def run_index(
        env: Env, outputs: dict[str, Any], fired: list[FiredRule], notes: list[str], trace: list[TraceStep] | None
    ) -> None:
        prepare(env, notes, trace)
        values = env[INPUTS]
        key = tuple(values.get(name, _UNDEF) for name, _ in inputs)
        row = index.get(key) if index is not None and all(type(k) is str for k in key) else None
        if row is None:
            finish(outputs, notes)
            return
        for name, value in sets[id(row)]:
            outputs[name] = value
        fired.append(row.fired)

    def slow_row(row: _Row) -> Callable[[Env, list[str]], bool]:
        when = row.when

        def exact(env: Env, notes: list[str]) -> bool:
            try:
                return when is not None and when(env) is True
            except EvalError as exc:
                notes.append(f"rule `{row.rule.id}` is undefined: {exc}")
                return False

        return exact

    parts = TableParts([(row.rule.when, row.fired, sets[id(row)], slow_row(row)) for row in rows], apply, rank)
    if index is not None:
        return run_index, parts
    return (run_first if hit == "first" else run_all), parts


def _priority(table: TableDecl, policy: Policy) -> dict[Any, int]:
    values = policy.outputs[table.outputs[0]].values or ()
    return {v: i for i, v in enumerate(values)}


def _index(rows: list[_Row], inputs: list[str]) -> dict[tuple[Any, ...], _Row] | None:
    """A lookup from input values to the row, when every cell of every row is text equality."""
    index: dict[tuple[Any, ...], _Row] = {}
    for row in rows:
        cells_by_name = row.rule.match
        if set(cells_by_name) != set(inputs) or any(
            c.op != "eq" or type(c.value) is not str for c in cells_by_name.values()
        ):
            return None
        index[tuple(cells_by_name[name].value for name in inputs)] = row
    return index
