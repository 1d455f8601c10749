"""Access's counterfactual (``Domain.why_not``): for each field denied, the grant that would
allow it and what it would take — another role, action or purpose, a field of another class,
a condition that holds, an unexpired waiver — fewest changes first; for a field an explicit
deny rule denies, that deny wins over every allow, so only a waiver that waives it would do."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.core.decision import Decision
from engine.core.model import Policy

ANY = "*"
CLOSEST = 2  # grants named per denied field
_OTHER_CLASS = "a field of class "


def why_not(policy: Policy, facts: Mapping[str, Any], decision: Decision) -> list[str]:
    model = policy.extra
    found = facts.get("subject")
    subject: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    named = [str(r) for r in subject.get("roles", ()) if isinstance(r, str)]
    held = {x for r in named for x in model.roles.get(r, ())}
    who, action, purpose = str(subject.get("id", "")), facts.get("action"), facts.get("purpose")
    out: dict[str, list[str]] = {}  # the answer -> the fields it answers for (one line for them all)
    for path, entry in decision.outputs.get("fields", {}).items():
        if entry.get("effect") != "deny":
            continue
        cls, rule = entry.get("class"), entry.get("rule")
        if rule not in (None, "default-deny"):  # an explicit deny rule (default deny: no rule)
            waivers = [g for g in model.exceptions if rule in g.waives]
            line = f"({cls}): denied by `{rule}`, and a deny wins over every allow"
            if not waivers:
                out.setdefault(line + f": only a waiver listing `{rule}` under `waives:` would allow it", []).append(
                    path
                )
                continue
            grants = waivers
        else:
            grants = [g for g in (*model.rules, *model.exceptions) if g.effect == "allow"]
            line = f"({cls}): no rule allows it"
        ranked = sorted(
            ((_needs(g, held, who, cls, action, purpose, decision), i, g) for i, g in enumerate(grants)),
            key=lambda x: (
                any(n.startswith(_OTHER_CLASS) for n in x[0]),
                len(x[0]),
                x[1],
            ),  # a field's class is not the request's to change
        )
        near = [(needs, g) for needs, _, g in ranked if needs][:CLOSEST]
        if not near:
            out.setdefault(line, []).append(path)
            continue
        said = "; ".join(
            f"`{g.id}` ({'waiver' if g.waiver else 'rule'}) would allow it with " + ", ".join(needs)
            for needs, g in near
        )
        out.setdefault(f"{line}: {said}", []).append(path)
    return [", ".join(f"`{p}`" for p in paths) + " " + answer for answer, paths in out.items()]


def _needs(g: Any, held: set[str], who: str, cls: Any, action: Any, purpose: Any, decision: Decision) -> list[str]:
    """What the request lacks for grant ``g`` to apply to a field of class ``cls``."""
    needs = []
    if ANY not in g.roles and not (held & set(g.roles)) and who not in g.subjects:
        roles = " or ".join(f"`{r}`" for r in g.roles) if g.roles else "none"
        names = " or ".join(f"`{s}`" for s in g.subjects)
        needs.append(f"role {roles}" + (f" (or subject {names})" if g.subjects else ""))
    if ANY not in g.classes and cls not in g.classes:
        needs.append(_OTHER_CLASS + " or ".join(f"`{c}`" for c in g.classes))
    if ANY not in g.actions and action not in g.actions:
        needs.append("action " + " or ".join(f"`{a}`" for a in g.actions))
    if ANY not in g.purposes and purpose not in g.purposes:
        needs.append("purpose " + " or ".join(f"`{p}`" for p in g.purposes))
    if g.waiver and g.expires is not None and decision.now >= g.expires:
        needs.append(f"a renewal (it expired {g.expires.isoformat().replace('+00:00', 'Z')})")
    if g.when is not None:  # when nothing else is missing, it is what did not hold
        needs.append(f"its condition `{g.when_text}` holding")
    return needs


def _kind(g: Any) -> str:
    return "waiver" if g.waiver else "rule"
