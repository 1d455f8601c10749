"""Declaration checks of ``charter lint`` (``L030``–``L032``): facts nothing reads, outputs and
output values no rule sets. A domain's own checks are its ``Domain.lint`` (retention and
access: ``engine/domains/*_lint.py``).
"""

from __future__ import annotations

from typing import Any

from engine.analysis.findings import WARNING, Context, Related
from engine.core.expr import Node, references
from engine.core.model import BandsDecl, Policy, TableDecl

# --------------------------------------------------------------------------------------------
# declarations: L030-L032
# --------------------------------------------------------------------------------------------


def check_declarations(ctx: Context, policy: Policy) -> None:
    _unread_facts(ctx, policy)
    produced: dict[str, set[Any]] = {name: set() for name in policy.outputs}
    for step in policy.steps:
        if isinstance(step, BandsDecl):
            produced.setdefault(step.output, set()).update(_hashable(b.value) for b in step.bands)
            continue
        default = step.default or {}
        for name in step.outputs:
            given = [r.then[name] for r in step.rules if name in r.then]
            if name in default:
                given.append(default[name])
            if not given:
                ctx.add(
                    "L031",
                    WARNING,
                    f"no rule of table `{step.id}` sets output `{name}`, so it is always empty",
                    step.location,
                    f"set `{name}` in the rules' `then:`, give the table a `default:`, or drop the output",
                    _declared_output(policy, name),
                )
            for value in given:
                produced.setdefault(name, set()).update(_hashable(v) for v in _flat(value))
    for name, out in policy.outputs.items():
        for k, value in enumerate(out.values or ()):
            if _hashable(value) not in produced.get(name, set()):
                ctx.add(
                    "L032",
                    WARNING,
                    f"value `{value}` of output `{name}` is never set: no rule, band or default gives it",
                    ctx.at(out.location, ("outputs", name, "values", k)),
                    "add a rule that sets it, or remove it from `values`",
                )


def _declared_output(policy: Policy, name: str) -> list[Related]:
    out = policy.outputs.get(name)
    return [Related(out.location, f"output `{name}` is declared here")] if out is not None else []


def _flat(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _hashable(value: Any) -> Any:
    return (type(value).__name__ == "bool", value) if isinstance(value, (str, int, float, bool)) else repr(value)


def _unread_facts(ctx: Context, policy: Policy) -> None:
    read: set[str] = {"id"}  # the customer's id names the subject of every decision
    nodes: list[Node] = []
    for step in policy.steps:
        if isinstance(step, TableDecl):
            nodes += list(step.inputs.values()) + [r.when for r in step.rules if r.when is not None]
    for score in policy.scores.values():
        if score.expr is not None:
            nodes.append(score.expr)
        elif ctx.registry is not None and score.scorer is not None and score.scorer in ctx.registry.scorers:
            read.update(ctx.registry.scorers[score.scorer].reads)
        else:
            return  # a scorer whose reads are unknown might read any fact
    for node in nodes:
        read.update(ref.split(".")[1] for ref in references(node) if ref.startswith("customer."))
    for name, fact in policy.facts.items():
        if name not in read:
            burden = "; it is `required`, so every record must carry it for nothing" if fact.required else ""
            ctx.add(
                "L030",
                WARNING,
                f"fact `{name}` is declared but no condition, input or score reads it{burden}",
                fact.location,
                "use it in a condition or score, or remove the declaration",
            )
