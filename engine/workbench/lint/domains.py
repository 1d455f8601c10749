"""Domain checks of ``charter lint``: declarations, retention and access.

* declarations (``L030``–``L032``): facts nothing reads, outputs and output values no rule sets;
* retention (``L010``–``L015``): legal-hold fields that cannot hold, clocks keyed on a hold,
  disposals a keep rule always postpones, disposal at creation, record types no rule covers;
* access (``L020``–``L022``): grants a deny always overrides, roles granted nothing, expired
  waivers (only with an explicit ``now``: lint never reads the clock); access conditions get
  the table checks' ``L003``–``L005``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from typing import Any

from engine.core.expr import Node, references
from engine.core.model import BandsDecl, Policy, RuleDecl, TableDecl
from engine.errors import Location
from engine.workbench.lint import conditions as cond
from engine.workbench.lint.conditions import Atom, Space, Var
from engine.workbench.lint.findings import ERROR, WARNING, Context, Related
from engine.workbench.lint.tables import Row, check_row
from engine.workbench.lint.values import Values

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
            _hold_classified(ctx, name, where)
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


def _hold_classified(ctx: Context, name: str, where: Location) -> None:
    source = ctx.policies.get("classification")
    if source is None:
        return
    for rule in source.extra.rules:
        if rule.detector is None and any(fnmatch.fnmatchcase(name, p) for p in rule.fields):
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


# --------------------------------------------------------------------------------------------
# access: L020-L022 (and conditions: L003-L005)
# --------------------------------------------------------------------------------------------


def _access_space(ctx: Context, policy: Policy, grant: Any) -> Space:
    model = policy.extra
    text = Values(co=True)
    space = Space()
    for name, absent in (("subject.id", False), ("subject.department", True)):
        space.add(Var(name, text, absent))
    for key in ("customer", "record_type", "owner", "tier", "department"):
        space.add(Var(f"resource.{key}", text, True))
    for key, declared in (("action", model.actions), ("purpose", model.purposes)):
        listed = getattr(grant, f"{key}s")
        values = declared if "*" in listed else listed
        universe = Values.of(values) or Values(co=True)
        where = ctx.at(grant.location, (*grant.location.path, f"{key}s"))
        space.add(Var(key, universe, False, where, f"{key}s: " + ", ".join(values)))
    return space


def check_access(ctx: Context, policy: Policy) -> None:
    model = policy.extra
    for grant in (*model.rules, *model.exceptions):
        if grant.when is not None:
            space = _access_space(ctx, policy, grant)
            atoms: list[Atom] = []
            cases = cond.analyse(grant.when, space, atoms)
            rule = RuleDecl(grant.id, grant.location, {}, grant.when, grant.when_text)
            row = Row(rule, cases, atoms, {})
            check_row(ctx, space, row, {}, "apply")
        _overridden(ctx, policy, grant)
    _ungranted_roles(ctx, policy)
    if ctx.now is not None:
        for i, waiver in enumerate(model.exceptions):
            if waiver.expires is not None and waiver.expires <= ctx.now:
                ctx.add(
                    "L022",
                    WARNING,
                    f"waiver `{waiver.id}` expired on {waiver.expires.isoformat().replace('+00:00', 'Z')}",
                    ctx.at(waiver.location, ("exceptions", i, "expires")),
                    f"renew it with its owner (`{waiver.owner}`) or remove it",
                )


def _covers(deny: Any, roles: Mapping[str, tuple[str, ...]], role: str, cls: str, action: str, purpose: str) -> bool:
    return (
        ("*" in deny.roles or bool(set(roles.get(role, (role,))) & set(deny.roles)))
        and ("*" in deny.classes or cls in deny.classes)
        and ("*" in deny.actions or action in deny.actions)
        and ("*" in deny.purposes or purpose in deny.purposes)
    )


def _overridden(ctx: Context, policy: Policy, grant: Any) -> None:
    """L020: an allow rule or waiver every case of which an unconditional deny rule covers."""
    model = policy.extra
    if grant.effect != "allow":
        return
    denies = [d for d in model.rules if d.effect == "deny" and d.when is None and d.id not in grant.waives]
    if not denies:
        return
    source = ctx.policies.get("classification")
    all_classes = tuple(c.id for c in source.extra.classes) if source is not None else ("*",)
    classes = all_classes if "*" in grant.classes else grant.classes
    actions = model.actions if "*" in grant.actions else grant.actions
    purposes = model.purposes if "*" in grant.purposes else grant.purposes
    # a grant for anyone, or for named subjects, applies whatever roles they hold: only a deny
    # for every role (`"*"`) covers it
    roles = ("*",) if "*" in grant.roles or grant.subjects else grant.roles
    used: list[Any] = []
    for role in roles:
        for c in classes:
            for a in actions:
                for p in purposes:
                    deny = next((d for d in denies if _covers(d, model.roles, role, c, a, p)), None)
                    if deny is None:
                        return
                    if deny not in used:
                        used.append(deny)
    names = ", ".join(f"`{d.id}`" for d in used)
    ctx.add(
        "L020",
        ERROR,
        f"{'waiver' if grant.waiver else 'rule'} `{grant.id}` can never allow anything: deny "
        f"{'rules' if len(used) > 1 else 'rule'} {names} always {'apply' if len(used) > 1 else 'applies'} "
        "too, and deny wins",
        grant.location,
        "narrow the deny rule, or list it under a waiver's `waives:` if the exception is intended",
        [Related(d.location, f"deny rule `{d.id}`") for d in used],
    )


def _ungranted_roles(ctx: Context, policy: Policy) -> None:
    model = policy.extra
    granted = {r for g in (*model.rules, *model.exceptions) if g.effect == "allow" for r in g.roles}
    if "*" in granted:
        return
    for role, closure in model.roles.items():
        if not granted.intersection(closure):
            ctx.add(
                "L021",
                WARNING,
                f"role `{role}` is granted nothing: no allow rule or waiver names it or a role it inherits",
                model.role_locations.get(role, policy.location),
                "grant it what its duties need, or remove it",
            )
