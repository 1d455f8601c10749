"""Access control (domain.md §3): what each field of a customer record may show to a request.

A request names the subject (id, roles, department), the action, the purpose and the
resource (customer, record type, owner, tier, department and the record's fields). The
classification domain gives each field its class (``uses: {classification:
resource.record}``); access decides per field: ``allow``, ``mask`` (allowed, shown with
the class's masking style) or ``deny``.

Semantics (documented in docs/domains.md):

* roles inherit grants (``supervisor: {inherits: [agent]}``);
* a rule applies to a field when one of the subject's roles (or a role it inherits), the
  field's class, the action and the purpose are among the rule's (``"*"`` is any) and its
  ``when:`` condition holds; conditions read ``subject``, ``resource``, ``action``,
  ``purpose`` and ``now``;
* **deny overrides allow**; a deny rule whose condition cannot be evaluated (an absent
  attribute) applies — access fails closed; an allow rule's does not;
* among allow rules, an unmasked one beats one with ``mask: true``;
* **default deny**: a field no allow rule covers is denied, and so is an unclassified one;
* **exceptions** are named waivers with an owner and an expiry date: an unexpired waiver
  that matches allows what no rule allows, or cancels the deny rules it lists under
  ``waives:``; the decision lists each waiver it used;
* obligations (``log_access``, ``require_justification``) of the rules and waivers that
  allowed something travel with the decision, plus those marked ``always: true``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.core.decision import Decision, FiredRule, Test, TraceStep
from engine.core.domain import CheckContext, Domain, DomainResult, Kpi, RuleInfo, Runner
from engine.core.expr import (
    BOOL,
    STRING,
    TIMESTAMP,
    EvalError,
    ListType,
    Node,
    ObjectType,
    compile_expr,
    compile_traced,
)
from engine.core.expr import TraceStep as ExprStep
from engine.core.expr import values as enum_values
from engine.core.facts import parse_timestamp
from engine.domains.access_whynot import why_not
from engine.domains.request import RequestShape
from engine.errors import Location, PolicyError, calendar_hint, did_you_mean

if TYPE_CHECKING:
    from engine.core.model import Policy
    from engine.hookspecs import Registry

ANY = "*"
TIER = "resource.tier"  # the request's tier: the customer's tier as tiering decided it
TIER_OUTPUT = "value_tier"  # the output that decides it
_text = {"type": "string", "minLength": 1}
_meta = {"title": _text, "description": _text, "owner": _text, "clause": _text, "message": _text}
_id = {"type": "string", "pattern": "^[a-z][a-z0-9_-]*$"}
_names = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "uniqueItems": True}
_rule_props = {
    "id": _id,
    "roles": _names,
    "classes": _names,
    "actions": _names,
    "purposes": _names,
    "when": {"type": ["string", "boolean"]},
    "obligations": _names,
    **_meta,
}

SCHEMA: dict[str, Any] = {
    "actions": {**_names, "description": "the actions a request can ask for"},
    "purposes": {**_names, "description": "the purposes a request can give"},
    "roles": {
        "type": "object",
        "minProperties": 1,
        "propertyNames": {"pattern": "^[a-z][a-z0-9_-]*$"},
        "additionalProperties": {
            "type": ["object", "null"],
            "additionalProperties": False,
            "properties": {"inherits": _names, "description": _text, "owner": _text, "clause": _text},
        },
    },
    "obligations": {
        "type": "object",
        "propertyNames": {"pattern": "^[a-z][a-z0-9_]*$"},
        "additionalProperties": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"always": {"type": "boolean"}, "description": _text, "clause": _text},
        },
    },
    "rules": {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["id", "effect", "roles", "classes", "actions", "purposes"],
            "properties": {**_rule_props, "effect": {"enum": ["allow", "deny"]}, "mask": {"type": "boolean"}},
        },
    },
    "exceptions": {
        "type": "array",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["id", "owner", "expires", "classes", "actions", "purposes"],
            "anyOf": [{"required": ["subjects"]}, {"required": ["roles"]}],
            "properties": {
                **_rule_props,
                "subjects": _names,
                "expires": {"type": "string", "description": "RFC 3339 timestamp, e.g. 2026-12-31T23:59:59Z"},
                "waives": _names,
                "mask": {"type": "boolean"},
            },
        },
    },
}

ENV = {
    "subject": ObjectType("subject", {"id": STRING, "roles": ListType(STRING), "department": STRING}),
    "resource": ObjectType(
        "resource",
        {"customer": STRING, "record_type": STRING, "owner": STRING, "tier": STRING, "department": STRING},
    ),
    "action": STRING,
    "purpose": STRING,
    "now": TIMESTAMP,
}


@dataclass(frozen=True)
class Grant:
    """An access rule, or (``waiver`` True) an exception."""

    id: str
    effect: str
    roles: tuple[str, ...]
    classes: tuple[str, ...]
    actions: tuple[str, ...]
    purposes: tuple[str, ...]
    location: Location
    when: Node | None = None
    when_text: str = ""
    mask: bool = False
    obligations: tuple[str, ...] = ()
    message: str = ""
    clause: str = ""
    waiver: bool = False
    owner: str = ""
    expires: datetime | None = None
    subjects: tuple[str, ...] = ()
    waives: tuple[str, ...] = ()
    class_locations: tuple[Location, ...] = field(default=(), compare=False)  # of each of ``classes``
    # each text ``when`` compares ``resource.tier`` with, and where: tiering's values (cross_check)
    tier_texts: tuple[tuple[str, Location], ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Access:
    actions: tuple[str, ...]
    purposes: tuple[str, ...]
    roles: dict[str, tuple[str, ...]]  # role -> itself and every role it inherits from
    role_locations: dict[str, Location]
    obligations: dict[str, bool]  # name -> always
    rules: tuple[Grant, ...]
    exceptions: tuple[Grant, ...]


# --------------------------------------------------------------------------------------------
# check
# --------------------------------------------------------------------------------------------


def check(ctx: CheckContext) -> Access:
    data = ctx.data
    actions, purposes = tuple(data["actions"]), tuple(data["purposes"])
    raw_roles: dict[str, Any] = data["roles"]
    role_locations = {r: ctx.doc.location(("roles", r), key=True) for r in raw_roles}
    parents: dict[str, tuple[str, ...]] = {}
    for role, spec in raw_roles.items():
        inherits = tuple((spec or {}).get("inherits", ()))
        for j, parent in enumerate(inherits):
            if parent not in raw_roles:
                ctx.error(
                    f"role `{role}` inherits from `{parent}`, which is not a role",
                    ("roles", role, "inherits", j),
                    "P181",
                    did_you_mean(parent, raw_roles) or "declare it under `roles:`",
                )
        parents[role] = tuple(p for p in inherits if p in raw_roles)
    closure = {role: _closure(role, parents, ctx) for role in raw_roles}
    obligations = {name: bool(spec.get("always", False)) for name, spec in data.get("obligations", {}).items()}
    lists = {"actions": actions, "purposes": purposes, "roles": tuple(raw_roles), "obligations": tuple(obligations)}
    rules = tuple(_grant(ctx, ("rules", i), spec, lists) for i, spec in enumerate(data["rules"]))
    deny_ids = {g.id for g in rules if g.effect == "deny"}
    exceptions = []
    for i, spec in enumerate(data.get("exceptions", [])):
        grant = _grant(ctx, ("exceptions", i), spec, lists, waiver=True)
        for j, rid in enumerate(grant.waives):
            if rid not in deny_ids:
                ctx.error(
                    f"waiver `{grant.id}` waives `{rid}`, which is not a deny rule",
                    ("exceptions", i, "waives", j),
                    "P186",
                    did_you_mean(rid, deny_ids) or "list the ids of deny rules",
                )
        exceptions.append(grant)
    return Access(actions, purposes, closure, role_locations, obligations, rules, tuple(exceptions))


def _closure(role: str, parents: Mapping[str, tuple[str, ...]], ctx: CheckContext) -> tuple[str, ...]:
    seen: list[str] = []
    stack = [role]
    while stack:
        r = stack.pop()
        if r in seen:
            continue
        seen.append(r)
        for p in parents.get(r, ()):
            if p == role:
                ctx.error(
                    f"role `{role}` inherits from itself through `{r}`",
                    ("roles", role),
                    "P182",
                    "remove one `inherits:` of the cycle",
                    key=True,
                )
            stack.append(p)
    return tuple(seen)


def _grant(
    ctx: CheckContext,
    path: tuple[str | int, ...],
    spec: dict[str, Any],
    lists: Mapping[str, tuple[str, ...]],
    *,
    waiver: bool = False,
) -> Grant:
    ctx.claim_id(spec["id"], path)
    for key in ("roles", "actions", "purposes", "obligations"):
        known = lists[key]
        for j, name in enumerate(spec.get(key, ())):
            if name == ANY and key != "obligations":
                continue
            if name not in known:
                ctx.error(
                    f"unknown {key[:-1]} `{name}`",
                    (*path, key, j),
                    {"roles": "P183", "actions": "P184", "purposes": "P184", "obligations": "P187"}[key],
                    did_you_mean(name, known) or f"declare it under `{key}:`" + ("" if key != "roles" else " first"),
                )
    if waiver and "owner" in spec and spec["owner"] not in lists["roles"]:
        ctx.error(
            f"unknown role `{spec['owner']}` as the waiver's owner",
            (*path, "owner"),
            "P183",
            did_you_mean(str(spec["owner"]), lists["roles"])
            or "the owner is one of the roles declared: " + ", ".join(f"`{r}`" for r in lists["roles"]),
        )
    when = spec.get("when")
    node = ctx.expression((*path, "when"), when, BOOL, env=ENV) if when is not None else None
    tier_texts = tuple(
        (str(lit.value), ctx.doc.text_location((*path, "when"), lit.start))
        for lit, _ in (enum_values.compared(node, (TIER,)) if node is not None else ())
    )
    expires = None
    if waiver:
        try:
            expires = parse_timestamp(spec["expires"])
        except ValueError:
            ctx.error(
                f"`{spec['expires']}` is not a timestamp with a time zone",
                (*path, "expires"),
                "P188",
                calendar_hint(spec["expires"]) or "write it like `2026-12-31T23:59:59Z`",
            )
    return Grant(
        id=spec["id"],
        effect=spec.get("effect", "allow"),
        roles=tuple(spec.get("roles", ())),
        classes=tuple(spec["classes"]),
        actions=tuple(spec["actions"]),
        purposes=tuple(spec["purposes"]),
        location=ctx.doc.location(path),
        when=node,
        when_text=str(when) if when is not None else "",
        mask=bool(spec.get("mask", False)),
        obligations=tuple(spec.get("obligations", ())),
        message=str(spec.get("message", "")),
        clause=str(spec.get("clause", "")),
        waiver=waiver,
        owner=str(spec.get("owner", "")) if waiver else "",
        expires=expires,
        subjects=tuple(spec.get("subjects", ())),
        waives=tuple(spec.get("waives", ())),
        class_locations=tuple(ctx.doc.location((*path, "classes", j)) for j in range(len(spec["classes"]))),
        tier_texts=tier_texts,
    )


def cross_check(policy: Policy, others: Mapping[str, Policy]) -> list[PolicyError]:
    """Every class a rule names is a class of the classification policy."""
    model: Access = policy.extra
    source = others.get("classification")
    if "classification" not in policy.uses or source is None:
        return [
            PolicyError(
                "access decides per data class and needs the classification domain",
                policy.location,
                code="P189",
                hint="add `uses: {classification: resource.record}`",
            )
        ]
    classes = {c.id: c for c in source.extra.classes}
    errors = []
    for c in classes.values():  # a purpose a class allows must be one access decides on
        for j, purpose in enumerate(c.handling.get("purposes", ())):
            if purpose not in model.purposes:
                errors.append(
                    PolicyError(
                        f"purpose `{purpose}` of class `{c.id}` is not one access declares",
                        c.purpose_locations[j] if j < len(c.purpose_locations) else c.location,
                        code="P184",
                        hint=did_you_mean(str(purpose), model.purposes)
                        or "access declares: " + ", ".join(f"`{p}`" for p in model.purposes),
                        related=policy.location,
                    )
                )
    for grant in (*model.rules, *model.exceptions):
        for j, name in enumerate(grant.classes):
            if name != ANY and name not in classes:
                errors.append(
                    PolicyError(
                        f"unknown data class `{name}` in `{grant.id}`",
                        grant.class_locations[j] if j < len(grant.class_locations) else grant.location,
                        code="P185",
                        hint=did_you_mean(name, classes) or "classes: " + ", ".join(f"`{c}`" for c in classes),
                        related=source.location,
                    )
                )
    return errors + _tier_checks(model, others)


def _tier_checks(model: Access, others: Mapping[str, Policy]) -> list[PolicyError]:
    """P145: a text a condition compares ``resource.tier`` with that is not one of the tiers
    (the values of the ``value_tier`` output a loaded policy declares)."""
    declared = next(
        (
            (p, out.values)
            for p in others.values()
            if (out := p.outputs.get(TIER_OUTPUT)) is not None and out.type == "string" and out.values
        ),
        None,
    )
    if declared is None:
        return []
    source, tiers = declared
    errors = []
    for grant in (*model.rules, *model.exceptions):
        for text, where in grant.tier_texts:
            if text not in tiers:
                message, hint = enum_values.never_message(text, TIER, tiers)
                errors.append(PolicyError(message, where, code="P145", hint=hint, related=source.location))
    return errors


# --------------------------------------------------------------------------------------------
# compile and run
# --------------------------------------------------------------------------------------------

_UNDEFINED = object()


class _Compiled:
    """Grants indexed by (role, class, action, purpose), ``"*"`` kept as its own key."""

    def __init__(self, policy: Policy) -> None:
        model: Access = policy.extra
        self.model = model
        self.roles = model.roles
        self.always = tuple(sorted(n for n, always in model.obligations.items() if always))
        self.shape = RequestShape(
            {
                "subject": {
                    "type": "dict",
                    "required": True,
                    "schema": {
                        "id": {"type": "string", "required": True},
                        "roles": {"type": "list", "required": True, "schema": {"type": "string"}},
                        "department": {"type": "string"},
                    },
                },
                "action": {"type": "string", "required": True, "allowed": list(model.actions)},
                "purpose": {"type": "string", "required": True, "allowed": list(model.purposes)},
                "resource": {
                    "type": "dict",
                    "required": True,
                    "schema": {
                        **{k: {"type": "string"} for k in ("customer", "record_type", "owner", "tier", "department")},
                        "record": {"type": "dict", "required": True},
                    },
                },
                "justification": {"type": "string"},
            },
            "access request",
        )
        self.grants = (*model.rules, *model.exceptions)
        self.conditions = [compile_expr(g.when) if g.when is not None else None for g in self.grants]
        self.traced = [compile_traced(g.when) if g.when is not None else None for g in self.grants]
        self.fired = [
            FiredRule(g.id, "access", (), g.message, g.location.file, g.location.line, g.clause) for g in self.grants
        ]
        self.default_fired = FiredRule(
            "default-deny",
            "access",
            (),
            "no rule allows it: default deny",
            policy.path,
            policy.location.line,
            policy.metadata.get("clause", ""),
        )
        self.index: dict[tuple[str, str, str, str], list[int]] = {}
        for i, g in enumerate(self.grants):
            actions = model.actions if ANY in g.actions else g.actions
            purposes = model.purposes if ANY in g.purposes else g.purposes
            for role in g.roles or (ANY,):
                for cls in g.classes:
                    for a in actions:
                        for p in purposes:
                            self.index.setdefault((role, cls, a, p), []).append(i)
        self._candidates: dict[tuple[tuple[str, ...], str, str, str], tuple[int, ...]] = {}
        self._role_sets: dict[tuple[str, ...], tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {}
        # decisions made before, by roles, action, purpose and the record's classified and
        # unclassified fields (the names), then by the answers of the conditions they asked
        self._known: dict[tuple[Any, ...], _Ask | _Template] = {}
        self._size = 0

    def candidates(self, roles: tuple[str, ...], cls: str, action: str, purpose: str) -> tuple[int, ...]:
        key = (roles, cls, action, purpose)
        hit = self._candidates.get(key)
        if hit is None:
            found: set[int] = set()
            get = self.index.get
            for role in (*roles, ANY):
                for c in (cls, ANY):
                    found.update(get((role, c, action, purpose), ()))
            hit = tuple(sorted(found))
            if len(self._candidates) < 65536:
                self._candidates[key] = hit
        return hit

    def __call__(
        self, facts: Mapping[str, Any], now: datetime, upstream: Mapping[str, Decision], explain: bool
    ) -> DomainResult:
        self.shape.check(facts)
        subject, resource = facts["subject"], facts["resource"]
        role_key, roles, role_notes = self._roles(subject["roles"])
        classification = upstream["classification"].outputs
        if explain:
            return self._decide(facts, now, classification, role_key, roles, list(role_notes), [], None)
        action, purpose = facts["action"], facts["purpose"]
        fields_in = classification["fields"]
        key = (
            role_key,
            action,
            purpose,
            tuple(fields_in),
            tuple([f["class"] for f in fields_in.values()]),
            tuple(classification["unclassified"]),
        )
        node = self._known.get(key)
        if node is not None:  # decided before: ask only the conditions that decision asked, in its order
            notes = list(role_notes)
            env: dict[str, Any] | None = None
            while isinstance(node, _Ask):
                i = node.grant
                if env is None and self.conditions[i] is not None:
                    env = {"subject": subject, "resource": resource, "action": action, "purpose": purpose, "now": now}
                node = node.next.get(self._holds(i, env, now, subject["id"], roles, notes)[1])
            if node is not None:
                return _replay(node, notes, resource, classification["handling"])
            # an answer not met before: decide in full
        asked: list[tuple[int, Any]] = []
        result = self._decide(facts, now, classification, role_key, roles, list(role_notes), None, asked)
        self._remember(key, asked, result)
        return result

    def _holds(
        self,
        i: int,
        env: Mapping[str, Any] | None,
        now: datetime,
        subject: str,
        roles: tuple[str, ...],
        notes: list[str],
        steps: list[ExprStep] | None = None,
    ) -> tuple[Any, Any]:
        """(its condition, whether it applies) of grant ``i``: True, False or _UNDEFINED (a
        condition that cannot be evaluated, noted); a waiver applies only while unexpired and
        when it names the subject or one of its roles. ``steps`` records the comparisons."""
        g = self.grants[i]
        cond = self.conditions[i]
        condition: Any = True
        if cond is not None:
            assert env is not None
            try:
                condition = (cond(env) if steps is None else self.traced[i](env, steps)) is True  # type: ignore[misc]
            except (EvalError, KeyError, TypeError) as exc:
                condition = _UNDEFINED
                notes.append(f"condition of `{g.id}` is undefined: {exc}")
        if condition is True and g.waiver:
            assert g.expires is not None
            return condition, now < g.expires and (subject in g.subjects or any(r in roles for r in g.roles))
        return condition, condition

    def _remember(self, key: tuple[Any, ...], asked: list[tuple[int, Any]], result: DomainResult) -> None:
        """Keep a decision for ``key`` under the answers of the conditions it asked, in order:
        the same names and the same answers decide the same (``__call__`` replays it)."""
        if self._size >= 16384:
            self._known.clear()
            self._size = 0
        leaf = _template(result.outputs, result.fired)
        if not asked:
            self._known[key] = leaf
            self._size += 1
            return
        node = self._known.get(key)
        if node is None or type(node) is not _Ask:
            node = self._known[key] = _Ask(asked[0][0])
        for n, (i, answer) in enumerate(asked):
            assert node.grant == i  # the same answers so far ask the same next condition
            if n + 1 == len(asked):
                node.next[answer] = leaf
            else:
                child = node.next.get(answer)
                if type(child) is not _Ask:
                    child = node.next[answer] = _Ask(asked[n + 1][0])
                node = child
        self._size += 1

    def _decide(
        self,
        facts: Mapping[str, Any],
        now: datetime,
        classification: Mapping[str, Any],
        role_key: tuple[str, ...],
        roles: tuple[str, ...],
        notes: list[str],
        trace: list[TraceStep] | None,
        asked: list[tuple[int, Any]] | None,
    ) -> DomainResult:
        """Every field decided in full (``trace`` records how); ``asked`` gets the grants whose
        condition, expiry or subjects were read, with their answers, in the order read."""
        subject, resource = facts["subject"], facts["resource"]
        action, purpose = facts["action"], facts["purpose"]
        env = {"subject": subject, "resource": resource, "action": action, "purpose": purpose, "now": now}
        memo: dict[int, Any] = {}

        def holds(i: int) -> Any:
            """The grant's condition: True, False or _UNDEFINED; once per request."""
            hit = memo.get(i)
            if hit is None:
                steps: list[ExprStep] | None = [] if trace is not None else None
                condition, hit = self._holds(i, env, now, subject["id"], roles, notes, steps)
                memo[i] = hit
                g = self.grants[i]
                if asked is not None and (g.when is not None or g.waiver):
                    asked.append((i, hit))
                if trace is not None:
                    assert steps is not None
                    trace.append(self._condition_step(g, steps, condition, hit, now, subject["id"], roles))
            return hit

        handling = classification["handling"]
        out_fields: dict[str, dict[str, Any]] = {}
        decided: dict[int, list[str]] = {}
        default: list[str] = []
        used: set[int] = set()
        obligations: set[str] = set(self.always)
        for path, info in classification["fields"].items():
            cls = info["class"]
            cands = self.candidates(role_key, cls, action, purpose)
            effect, rule = self._field(cands, holds, used)
            if trace is not None:
                trace.append(self._field_step(path, cls, role_key, action, purpose, cands, effect, rule, memo))
            entry: dict[str, Any] = {
                "effect": effect,
                "class": cls,
                "rule": self.grants[rule].id if rule >= 0 else None,
            }
            if effect == "mask":
                entry["mask"] = handling[cls].get("mask", "full")
            out_fields[path] = entry
            if rule >= 0:
                decided.setdefault(rule, []).append(path)
                if effect != "deny":
                    obligations.update(self.grants[rule].obligations)
            else:
                default.append(path)
        for path in classification["unclassified"]:
            out_fields[path] = {"effect": "deny", "class": None, "rule": None}
            default.append(path)
            if trace is not None:
                trace.append(TraceStep(f"field {path}", "default-deny", True, (("classified", (), False),)))
        result = self._result(out_fields, decided, default, used, obligations, notes, trace)
        result.subject = resource.get("customer")
        return result

    def _roles(self, named: list[str]) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """The subject's roles with every role they inherit (sorted, and in order), and the
        notes on unknown roles; kept per list of named roles."""
        key = tuple(named)
        hit = self._role_sets.get(key)
        if hit is None:
            notes: list[str] = []
            roles: list[str] = []
            for r in named:
                inherited = self.roles.get(r)
                if inherited is None:
                    notes.append(f"unknown role `{r}` ignored")
                    continue
                roles.extend(x for x in inherited if x not in roles)
            hit = (tuple(sorted(roles)), tuple(roles), tuple(notes))
            if len(self._role_sets) >= 4096:
                self._role_sets.clear()
            self._role_sets[key] = hit
        return hit

    @staticmethod
    def _condition_step(
        g: Grant, steps: list[ExprStep], condition: Any, hit: Any, now: datetime, subject: str, roles: tuple[str, ...]
    ) -> TraceStep:
        """A grant's condition as evaluated, with the values compared; for a waiver, its expiry
        and whether it names the subject or one of its roles (built only for ``--explain``)."""
        tests: list[Test] = [(s.text, tuple(s.operands), s.result) for s in steps]
        if not tests:
            tests.append((g.when_text or "no condition", (), None if condition is _UNDEFINED else condition))
        if condition is True and g.waiver:
            assert g.expires is not None
            named = subject in g.subjects or any(r in roles for r in g.roles)
            tests += [
                (f"now < expires ({g.expires.isoformat().replace('+00:00', 'Z')})", (now,), now < g.expires),
                ("the subject or one of its roles is named", (subject, tuple(roles)), named),
            ]
        return TraceStep("condition", g.id, None if hit is _UNDEFINED else bool(hit), tuple(tests))

    def _field_step(
        self,
        path: str,
        cls: str,
        roles: tuple[str, ...],
        action: str,
        purpose: str,
        cands: tuple[int, ...],
        effect: str,
        rule: int,
        memo: Mapping[int, Any],
    ) -> TraceStep:
        """How one field was decided: the grants that name its role, class, action and purpose,
        each with its condition's result (deny wins over allow; a waiver lifts the denies it
        names), and the effect."""
        tests: list[Test] = [
            ("grants naming the role, class, action and purpose", (roles, cls, action, purpose),
             [self.grants[i].id for i in cands]),
        ]  # fmt: skip
        for i in cands:
            g = self.grants[i]
            hit = memo.get(i)
            kind = "waiver" if g.waiver else f"{g.effect}{' (mask)' if g.mask else ''}"
            tests.append((f"`{g.id}` {kind}: condition holds", (), None if hit is _UNDEFINED or hit is None else hit))
        tests.append(("effect", (), effect))
        return TraceStep(f"field {path}", self.grants[rule].id if rule >= 0 else "default-deny", True, tuple(tests))

    def _field(self, cands: tuple[int, ...], holds: Any, used: set[int]) -> tuple[str, int]:
        """(effect, deciding grant index or -1) for one field's candidate grants."""
        grants = self.grants
        denies = [i for i in cands if grants[i].effect == "deny" and not grants[i].waiver and holds(i) is not False]
        if denies:
            waived = {
                rid
                for i in cands
                if grants[i].waiver and grants[i].waives and holds(i) is True
                for rid in grants[i].waives
            }
            left = [i for i in denies if grants[i].id not in waived]
            if left:
                return "deny", left[0]
            waiver = next(i for i in cands if grants[i].waiver and holds(i) is True and grants[i].waives)
            used.add(waiver)
            return ("mask" if grants[waiver].mask else "allow"), waiver
        best = -1
        for i in cands:
            g = grants[i]
            if g.effect == "allow" and not g.waiver and holds(i) is True:
                if not g.mask:
                    return "allow", i
                if best < 0:
                    best = i
        if best >= 0:
            return "mask", best
        for i in cands:
            if grants[i].waiver and holds(i) is True:
                used.add(i)
                return ("mask" if grants[i].mask else "allow"), i
        return "deny", -1

    def _result(
        self,
        fields: dict[str, dict[str, Any]],
        decided: dict[int, list[str]],
        default: list[str],
        used: set[int],
        obligations: set[str],
        notes: list[str],
        trace: list[TraceStep] | None,
    ) -> DomainResult:
        effects = [f["effect"] for f in fields.values()]
        if effects and all(e == "allow" for e in effects):
            effect = "allow"
        elif any(e != "deny" for e in effects):
            effect = "partial"
        else:
            effect = "deny"
        fired = []
        for i, paths in sorted(decided.items()):
            base = self.fired[i]
            outcome = fields[paths[0]]["effect"]
            fired.append(
                FiredRule(
                    base.id,
                    base.step,
                    (("effect", outcome), ("fields", tuple(paths))),
                    base.message,
                    base.file,
                    base.line,
                    base.clause,
                )
            )
        if default:
            d = self.default_fired
            fired.append(
                FiredRule(
                    d.id, d.step, (("effect", "deny"), ("fields", tuple(default))), d.message, d.file, d.line, d.clause
                )
            )
        waivers = [
            {
                "id": g.id,
                "owner": g.owner,
                "expires": g.expires.isoformat().replace("+00:00", "Z") if g.expires else None,
            }
            for g in (self.grants[i] for i in sorted(used))
        ]
        outputs = {
            "effect": effect,
            "fields": fields,
            "denied": [p for p, f in fields.items() if f["effect"] == "deny"],
            "obligations": sorted(obligations) if effect != "deny" else sorted(set(self.always)),
            "waivers": waivers,
        }
        return DomainResult(outputs, fired, notes, trace)


class _Ask:
    """A decision known by names, not yet by conditions: ask grant ``grant`` whether it
    applies (True, False or _UNDEFINED) and go on to ``next[answer]``."""

    __slots__ = ("grant", "next")

    def __init__(self, grant: int) -> None:
        self.grant = grant
        self.next: dict[Any, _Ask | _Template] = {}


# effect, fields (path and entry), the masked fields (path and class), denied, obligations,
# waivers and fired rules of a decision, to replay with fresh containers
_Template = tuple[
    str,
    tuple[tuple[str, dict[str, Any]], ...],
    tuple[tuple[str, str], ...],
    tuple[str, ...],
    tuple[str, ...],
    tuple[dict[str, Any], ...],
    tuple[FiredRule, ...],
]


def _template(outputs: Mapping[str, Any], fired: list[FiredRule]) -> _Template:
    fields = tuple((path, {k: v for k, v in entry.items() if k != "mask"}) for path, entry in outputs["fields"].items())
    masked = tuple((path, entry["class"]) for path, entry in outputs["fields"].items() if entry["effect"] == "mask")
    return (
        outputs["effect"],
        fields,
        masked,
        tuple(outputs["denied"]),
        tuple(outputs["obligations"]),
        tuple(dict(w) for w in outputs["waivers"]),
        tuple(fired),
    )


def _replay(
    template: _Template, notes: list[str], resource: Mapping[str, Any], handling: Mapping[str, Any]
) -> DomainResult:
    """A decision made before, rebuilt from its template: fresh containers, and the masking
    style of each masked field as the classification decided now gives it."""
    effect, fields, masked, denied, obligations, waivers, fired = template
    out = {path: entry.copy() for path, entry in fields}
    for path, cls in masked:
        out[path]["mask"] = handling[cls].get("mask", "full")
    outputs = {
        "effect": effect,
        "fields": out,
        "denied": list(denied),
        "obligations": list(obligations),
        "waivers": [w.copy() for w in waivers],
    }
    return DomainResult(outputs, list(fired), notes, None, subject=resource.get("customer"))


def rules(policy: Policy) -> list[RuleInfo]:
    """Each rule and waiver, and the built-in default deny (cited at the policy's own location)."""
    model = policy.extra
    out = [RuleInfo(g.location.file, g.location.line, g.id, f"{g.effect} rule") for g in model.rules]
    out += [RuleInfo(g.location.file, g.location.line, g.id, "waiver") for g in model.exceptions]
    out.append(RuleInfo(policy.path, policy.location.line, "default-deny", "built-in"))
    return out


def lint(ctx: Any, policy: Policy) -> None:
    """``charter lint``'s access checks (L020-L022, and L003-L005 on conditions)."""
    from engine.domains.access_lint import check_access

    check_access(ctx, policy)


def build(policy: Policy, registry: Registry) -> Runner:
    return _Compiled(policy)


def customer_requests(customer: Mapping[str, Any], body: Mapping[str, Any], earlier: Mapping[str, Any]) -> Any:
    """``POST /v1/customer``: with the body's ``access`` (subject, action, purpose, optional
    justification, record_type, owner, department, tier and ``fields``), the subject's request
    for the customer's record (only ``fields`` of it when given); its ``tier`` the customer's
    ``value_tier`` as decided before unless given. Nothing without ``access``."""
    access = body.get("access")
    if access is None:
        return None
    if not isinstance(access, Mapping):
        raise ValueError("`access` must be a JSON object: subject, action, purpose, ...")
    fields = access.get("fields")
    record = {k: customer[k] for k in fields if k in customer} if isinstance(fields, list) else dict(customer)
    resource: dict[str, Any] = {
        "customer": customer.get("id"),
        "record_type": access.get("record_type", "customer_profile"),
    }
    for key in ("owner", "department"):
        if key in access:
            resource[key] = access[key]
    tier = access.get("tier", earlier.get(TIER_OUTPUT))
    if tier is not None:
        resource["tier"] = tier
    resource["record"] = record
    request = {k: access[k] for k in ("subject", "action", "purpose", "justification") if k in access}
    return {**request, "resource": resource}


def release(decision: Decision, request: Mapping[str, Any], hash_key: bytes | None = None) -> Any:
    """The request's record as the decision lets its requester see it (``access_release``)."""
    from engine.domains.access_release import release as released

    return released(decision, request, hash_key)


def customer_of(request: Mapping[str, Any]) -> Any:
    """The customer whose record is asked for: the request's ``resource.customer``."""
    resource = request.get("resource")
    return resource.get("customer") if isinstance(resource, Mapping) else None


ACCESS = Domain(
    kpis=(
        Kpi("denials-role", "Access denials by role", "effect", by="subject.roles", only=("deny", "partial")),
        Kpi("denials-purpose", "Access denials by purpose", "effect", by="purpose", only=("deny", "partial")),
    ),
    outcome="effect",
    kind="access",
    description="field by field: allow, mask or deny a request by role, data class, action and purpose",
    schema_extra=SCHEMA,
    shared=False,
    required=("actions", "purposes", "roles", "rules"),
    uses=("classification",),
    check=check,
    build=build,
    cross_check=cross_check,
    rules=rules,
    sections=("actions", "purposes", "roles", "obligations", "rules", "exceptions"),
    key_order={
        "roles.*": "inherits description owner clause",
        "obligations.*": "always description clause",
        "rules[]": "id effect mask roles classes actions purposes when obligations"
        " message title description owner clause",
        "exceptions[]": "id owner expires subjects roles classes actions purposes when waives mask obligations"
        " message title description clause",
    },
    lint=lint,
    customer_requests=customer_requests,
    customer_reads=(TIER_OUTPUT,),
    customer_of=customer_of,
    why_not=why_not,
    release=release,
)
