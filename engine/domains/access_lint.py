"""``charter lint``'s access checks (L020-L022): grants a deny always overrides, roles granted
nothing, expired waivers (only with an explicit ``now``: lint never reads the clock); access
conditions get the table checks' L003-L005. Loaded by ``engine.domains.access.lint`` only
when lint runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.analysis import conditions as cond
from engine.analysis.conditions import Atom, Space, Var
from engine.analysis.figures import check_message, condition_figures
from engine.analysis.findings import ERROR, WARNING, Context, Related
from engine.analysis.tables import Row, check_row
from engine.analysis.values import Values
from engine.core.model import Policy, RuleDecl

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
    unconditional = [d for d in model.rules if d.effect == "deny" and d.when is None]  # once: O(rules)
    for grant in (*model.rules, *model.exceptions):
        if grant.when is not None:
            space = _access_space(ctx, policy, grant)
            atoms: list[Atom] = []
            cases = cond.analyse(grant.when, space, atoms)
            rule = RuleDecl(grant.id, grant.location, {}, grant.when, grant.when_text)
            row = Row(rule, cases, atoms, {})
            check_row(ctx, space, row, {}, "apply")
            path = grant.location.path
            figures = condition_figures(grant.when, grant.location, (*path, "when"))
            check_message(ctx, grant.id, grant.message, grant.location, (*path, "message"), figures)  # L040
        _overridden(ctx, policy, grant, unconditional)
    _ungranted_roles(ctx, policy)
    _handling_agrees(ctx, policy)
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


def _overridden(ctx: Context, policy: Policy, grant: Any, unconditional: list[Any]) -> None:
    """L020: an allow rule or waiver every case of which one of the ``unconditional`` deny
    rules (the policy's, found once) covers."""
    model = policy.extra
    if grant.effect != "allow" or not unconditional:
        return
    denies = [d for d in unconditional if d.id not in grant.waives]
    if not denies:
        return
    all_classes = ctx.data_classes(policy) or ("*",)
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


def _handling_agrees(ctx: Context, policy: Policy) -> None:
    """L023/L024: an allow rule or waiver that grants a class what its handling (in the
    classification policy) rules out — a purpose not among the class's `purposes`, or export
    of a class with `export: false`. The classification policy describes; access decides:
    this is where the two are shown to agree."""
    source = ctx.classes_source(policy)
    if source is None:
        return
    model = policy.extra
    handling = {c.id: c.handling for c in source.extra.classes}
    for grant in (*model.rules, *model.exceptions):
        if grant.effect != "allow":
            continue
        purposes = model.purposes if "*" in grant.purposes else grant.purposes
        exports = "*" in grant.actions or "export" in grant.actions
        what = "waiver" if grant.waiver else "rule"
        for cls in handling if "*" in grant.classes else grant.classes:
            h = handling.get(cls, {})
            allowed = h.get("purposes")
            outside = [p for p in purposes if allowed is not None and p not in allowed]
            if outside:
                ctx.add(
                    "L023",
                    WARNING,
                    f"{what} `{grant.id}` allows class `{cls}` for {', '.join(f'`{p}`' for p in outside)}, "
                    f"which the class's handling does not allow (purposes: {', '.join(allowed)})",
                    grant.location,
                    f"drop the purpose from `{grant.id}`, or add it to the class's `purposes` in the classification"
                    " policy if it is allowed",
                )
            if exports and h.get("export") is False:
                ctx.add(
                    "L024",
                    WARNING,
                    f"{what} `{grant.id}` allows exporting class `{cls}`, whose handling says `export: false`",
                    grant.location,
                    "drop `export` from its actions (or the class), or set `export: true` on the class if export is"
                    " allowed",
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
