"""``charter lint``'s retention checks (L010-L015): legal-hold fields that cannot hold, clocks
keyed on a hold, disposals a keep rule always postpones, disposal at creation, record types
no rule covers. Loaded by ``engine.domains.retention.lint`` only when lint runs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from engine.analysis.figures import Figure, check_message
from engine.analysis.findings import ERROR, WARNING, Context, Related
from engine.core import globs
from engine.core.model import Policy
from engine.errors import Location

# --------------------------------------------------------------------------------------------
# retention: L010-L015
# --------------------------------------------------------------------------------------------

_HOURS = {"h": (1, 1), "d": (24, 24), "w": (168, 168), "m": (28 * 24, 31 * 24), "y": (365 * 24, 366 * 24)}


def _period_hours(period: tuple[int, str]) -> tuple[int, int]:
    """The shortest and longest a period can last, in hours (months and years vary)."""
    n, unit = period
    lo, hi = _HOURS[unit]
    return n * lo, n * hi


def check_retention(ctx: Context, policy: Policy) -> None:
    model = policy.extra
    for rule in model.rules:  # L040: a message stating another period than the rule's
        lo, hi = _period_hours(rule.period)
        shown = f"{rule.period[0]}{rule.period[1]}"
        figure = Figure.span(lo, hi, shown, rule.location, (*rule.location.path, "period"))
        check_message(ctx, rule.id, rule.message, rule.location, (*rule.location.path, "message"), [figure])
    holds_at = ctx.at(policy.location, ("hold_fields",), key=True)
    for j, name in enumerate(model.hold_fields):
        where = ctx.at(policy.location, ("hold_fields", j))
        if re.search(r"[.\[\]*?]", name):
            ctx.add(
                "L010",
                ERROR,
                f"hold field `{name}` can never place a hold: holds are read from a record's top-level fields",
                where,
                "name a top-level field of the record, like `legal_hold`",
            )
        else:
            _hold_classified(ctx, policy, name, where)
    for rule in model.rules:
        period = f"{rule.period[0]}{rule.period[1]}"
        if rule.starts.startswith("event:") and "hold" in rule.starts:
            consequence = "kept for ever" if rule.keep else "never disposed of by it"
            ctx.add(
                "L012",
                WARNING,
                f"the clock of `{rule.id}` starts at `{rule.starts[6:]}`: a record never put on hold is {consequence}",
                ctx.at(rule.location, (*rule.location.path, "starts")),
                "start the clock at the record's own date or event; an active hold already suspends disposal",
                [Related(holds_at, "holds are declared here")] if model.hold_fields else [],
            )
        if not rule.keep and rule.period[0] == 0 and rule.starts in ("created", "last_activity"):
            ctx.add(
                "L014",
                WARNING,
                f"`{rule.id}` disposes of a record the moment its `{rule.starts}` clock starts ({period})",
                ctx.at(rule.location, (*rule.location.path, "period")),
                "give the period the record must be kept for, like `30d`",
            )
    _postponed(ctx, model)
    _uncovered_types(ctx, policy, model)


def _hold_classified(ctx: Context, policy: Policy, name: str, where: Location) -> None:
    source = ctx.classes_source(policy)
    if source is None:
        return
    for rule in source.extra.rules:
        if rule.detector is None and any(globs.matches(p, name) for p in rule.fields):
            return
    rules_at = ctx.at(source.location, ("rules",), key=True)
    ctx.add(
        "L011",
        WARNING,
        f"hold field `{name}` is not classified: every held record lists it as unclassified, and access denies it",
        where,
        f"add `{name}` to the `fields:` of a classification rule",
        [Related(rules_at, "classification rules by field name")],
    )


def _postponed(ctx: Context, model: Any) -> None:
    """L013: a dispose rule that a keep rule with the same clock always outlasts."""
    for d in model.rules:
        if d.keep:
            continue
        for k in model.rules:
            common = _common_types(d.record_types, k.record_types)
            if not k.keep or k.starts != d.starts or not common:
                continue
            if _period_hours(k.period)[0] > _period_hours(d.period)[1]:
                ctx.add(
                    "L013",
                    WARNING,
                    f"`{d.id}` ({d.period[0]}{d.period[1]} after `{d.starts}`) is always postponed by keep rule "
                    f"`{k.id}` ({k.period[0]}{k.period[1]}) for {common} records with both rules' classes",
                    d.location,
                    f"shorten `{k.id}`, lengthen `{d.id}`, or narrow their record types or classes",
                    [Related(k.location, f"keep rule `{k.id}`")],
                )
                break


def _common_types(a: Sequence[str], b: Sequence[str]) -> str:
    if "*" in a and "*" in b:
        return "all"
    if "*" in a or "*" in b:
        return ", ".join(f"`{t}`" for t in (b if "*" in a else a))
    both = [t for t in a if t in b]
    return ", ".join(f"`{t}`" for t in both)


def _uncovered_types(ctx: Context, policy: Policy, model: Any) -> None:
    """L015: a record type no rule names, and that no rule for every type and class covers."""
    named = {t for r in model.rules for t in r.record_types}
    wide = [r for r in model.rules if "*" in r.record_types]
    if any("*" in r.classes for r in wide):
        return
    for j, rtype in enumerate(model.record_types):
        if rtype in named:
            continue
        only = ", ".join(f"`{r.id}` (for {', '.join(f'`{c}`' for c in r.classes)} data)" for r in wide)
        scope = f"only {only} can apply, so its other records get" if only else "its records get"
        ctx.add(
            "L015",
            WARNING,
            f"no retention rule names record type `{rtype}`: {scope} `no_rule`",
            ctx.at(policy.location, ("record_types", j)),
            f"add a rule with `record_types: [{rtype}]`, or remove the record type",
            [Related(r.location, f"rule `{r.id}`") for r in wide],
        )
