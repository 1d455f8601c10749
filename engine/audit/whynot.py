"""What would have changed a decision: the counterfactual beside ``explain``'s "why".

For a policy of tables and bands (tiering, and any domain built on the shared model):

* each band output names the score that would move the customer one band up and one band
  down, against the cut points of the population snapshot the decision was ranked against
  (``value_tier would be `high` with a `value` score of at least 82,907.34: it is 52,587.77,
  30,319.57 short``);
* each first-hit table names the rules before the one that fired that did not hold, with the
  tests that failed and the values they compared, fewest failed tests first (the smallest
  change of facts that lets an earlier rule decide); a table where no rule fired names the
  closest rules the same way.

A domain with a model of its own says it through ``Domain.why_not`` (access: the grant that
would allow what was denied, and what it would need). Everything is read from the decision
made with ``explain`` (its trace holds every test with its values) and from the policy: nothing
is evaluated again here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.audit.present import show_value
from engine.core.decision import Decision, TraceStep
from engine.core.domain import Domain
from engine.core.evaluate import Program
from engine.core.model import BandsDecl, TableDecl

CLOSEST = 2  # rules named per table


def why_not(program: Program, decision: Decision, facts: Mapping[str, Any], domain: Domain | None) -> list[str]:
    """The counterfactual lines for ``decision`` (made by ``program`` with ``explain=True``)."""
    if domain is not None and domain.why_not is not None:
        return list(domain.why_not(program.policy, facts, decision))
    lines: list[str] = []
    for step in program.policy.steps:
        if isinstance(step, BandsDecl):
            lines += _bands(program, decision, step)
        elif isinstance(step, TableDecl):
            lines += _table(decision, step)
    return lines


def _bands(program: Program, decision: Decision, step: BandsDecl) -> list[str]:
    score = decision.scores.get(step.score)
    snapshot = program.snapshot
    chosen = decision.outputs.get(step.output)
    order = sorted(step.bands, key=lambda b: b.low)
    at = next((i for i, b in enumerate(order) if b.value == chosen), None)
    if score is None or snapshot is None or at is None:
        return []
    digest = program.compiled.score_digests[step.score]

    def cut(percentile: float) -> float:
        return snapshot.cut(step.score, percentile, digest)

    out = []
    if at + 1 < len(order):
        up = order[at + 1]
        need = cut(up.low)
        out.append(
            f"`{step.output}` would be `{up.value}` (band `{up.id}`) with a `{step.score}` score of at least "
            f"{need:,.2f}: it is {score:,.2f}, {need - score:,.2f} short"
        )
    if at > 0:
        down = order[at - 1]
        below = cut(order[at].low) if order[at].low > 0 else None
        if below is not None:
            out.append(
                f"`{step.output}` would be `{down.value}` (band `{down.id}`) with a `{step.score}` score below "
                f"{below:,.2f}: it is {score:,.2f}, {score - below:,.2f} above"
            )
    return out


def _table(decision: Decision, step: TableDecl) -> list[str]:
    steps = [t for t in decision.trace or () if t.step == step.id]
    fired = set(decision.fired_ids)
    rules = {r.id: r for r in step.rules}
    winner = next((i for i, t in enumerate(steps) if t.rule in fired), None)
    if step.hit == "first" and winner is not None:
        candidates = steps[:winner]  # an earlier rule that held would have decided instead
        lead = "first"
    elif winner is None:
        candidates = steps
        lead = ""
    else:  # collect: it would add its outputs; unique or priority: it would decide instead
        candidates = [t for t in steps if t.rule not in fired]
        lead = "also" if step.hit == "collect" else "instead"
    near = sorted((t for t in candidates if t.matched is not True), key=lambda t: len(_failed(t)))[:CLOSEST]
    out = []
    for t in near:
        rule = rules.get(t.rule)
        sets = ", ".join(f"`{k}` = {show_value(v)}" for k, v in rule.then.items()) if rule is not None else ""
        where = f" (setting {sets})" if sets else ""
        failed = "; ".join(_test(test) for test in _failed(t)) or (t.error or "its condition could not be decided")
        verb = {"first": "apply first", "also": "also apply", "instead": "apply instead"}.get(lead, "apply")
        out.append(f"table `{step.id}`: rule `{t.rule}` would {verb}{where} if {failed}")
    return out


def _failed(t: TraceStep) -> Sequence[tuple[str, tuple[Any, ...], Any]]:
    return [test for test in t.tests if test[2] is not True]


def _test(test: tuple[str, tuple[Any, ...], Any]) -> str:
    text, values, _ = test
    read = ", ".join(show_value(v) for v in values)
    return f"`{text}` held (it compared {read})" if read else f"`{text}` held"
