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
            line = f"({cls}): denied by `{rule}`, and a deny wins over every allow"
            deny = next((g for g in model.rules if g.id == rule), None)
            options = [
                (_needs(g, held, who, cls, action, purpose, decision), g) for g in model.exceptions if rule in g.waives
            ]
            if deny is not None:  # or a request outside the deny's scope that an allow rule grants
                options += [
                    (needs, g)
                    for g in model.rules
                    if g.effect == "allow"
                    and (needs := _escape(g, deny, model, held, who, cls, action, purpose, decision)) is not None
                ]
            near = sorted((o for o in options if o[0]), key=lambda o: len(o[0]))[:CLOSEST]
            if not near:
                answer = f"{line}: only a waiver listing `{rule}` under `waives:` would allow it"
                out.setdefault(answer, []).append(path)
                continue
            said = "; ".join(f"`{g.id}` ({_kind(g)}) would allow it with " + ", ".join(needs) for needs, g in near)
            out.setdefault(f"{line}: {said}", []).append(path)
            continue
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


def _escape(
    g: Any, deny: Any, model: Any, held: set[str], who: str, cls: Any, action: Any, purpose: Any, decision: Decision
) -> list[str] | None:
    """What the request needs for allow rule ``g`` to grant the field with ``deny`` no longer
    applying: an action or a purpose ``g`` grants and ``deny`` does not name (the field's class
    is not the request's to change); None when no such request exists."""
    if ANY not in g.classes and cls not in g.classes:
        return None
    needs: list[str] = []
    escaped = False
    for dim, now, granted, denied, every in (
        ("action", action, g.actions, deny.actions, model.actions),
        ("purpose", purpose, g.purposes, deny.purposes, model.purposes),
    ):
        allowed = list(every) if ANY in granted else list(granted)
        outside = [v for v in allowed if ANY not in denied and v not in denied]
        if outside and now not in outside:
            needs.append(f"{dim} " + " or ".join(f"`{v}`" for v in outside))
            escaped = True
        elif now not in allowed:
            return None
    if not escaped:
        return None
    if ANY not in g.roles and not (held & set(g.roles)) and who not in g.subjects:
        needs.append("role " + " or ".join(f"`{r}`" for r in g.roles))
    if g.when is not None:
        needs.append(f"its condition `{g.when_text}` holding")
    return needs


def _kind(g: Any) -> str:
    return "waiver" if g.waiver else "rule"
