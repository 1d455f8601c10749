"""Marketing consent (``kind: consent``): may we contact this customer on this channel for this purpose?

A third-party Charter domain in one module, found through the ``charter`` entry-point group
(``pyproject.toml``); nothing in Charter names it. It uses only Charter's public modules:
``engine.core.domain`` (the protocol), ``engine.core.decision`` (fired rules and traces),
``engine.domains.request`` (the request shape), ``engine.analysis.findings`` (lint) and
``engine.errors``.

The policy::

    channels: [email, sms, phone, post]       # what a request's `channel` may be
    purposes: [service, marketing, research]  # what a request's `purpose` may be
    consent_valid_for: 730d                   # optional: an opt-in lapses this long after it was given
    rules:                                    # in order: the first rule that matches decides
      - id: marketing-with-consent
        channels: [email, sms]                # or ["*"]: every channel
        purposes: [marketing]                 # or ["*"]: every purpose
        effect: allow                         # allow | deny
        needs: opt_in                         # optional: opt_in | no_opt_out
        message: marketing by email or text needs the customer's opt-in
        clause: "PIPL Art. 13"

A rule matches a request when it names the request's channel and purpose and what it
``needs`` holds; when no rule matches, the built-in rule ``default-deny`` decides. A request::

    {"id": "r1", "customer": "C000001", "channel": "email", "purpose": "marketing",
     "consents": {"email:marketing": "2025-01-10T09:00:00Z"}, "opted_out_at": null}

``needs: opt_in`` holds when ``consents`` has the request's ``channel:purpose``, given at or
before ``now``, less than ``consent_valid_for`` ago, and after the customer's opt-out if there
was one (an opt-out withdraws every opt-in given before it). ``needs: no_opt_out`` holds when
the customer has not opted out at or before ``now`` (a soft opt-in). A ``consents`` key that is
not a declared ``channel:purpose`` is refused, so a misspelt key cannot silently deny.

Outputs: ``contact`` (may we), ``rule`` (the rule that decided) and ``consent_expires`` (when
the opt-in the deciding rule relied on lapses; null when it relied on none, or it never lapses).

Codes: CS101-CS105 for policy mistakes (``charter validate``), CS201-CS203 for ``charter lint``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.analysis.findings import ERROR, WARNING, Context, Related
from engine.core.decision import Decision, FiredRule, TraceStep
from engine.core.domain import CheckContext, Domain, DomainResult, RuleInfo, Runner
from engine.core.facts import parse_timestamp
from engine.core.model import Policy
from engine.domains.request import PERIOD, RequestShape, add_period
from engine.errors import FactError, FactErrors, Location, did_you_mean
from engine.hookspecs import Registry, hookimpl

KIND = "consent"
ANY = "*"
DEFAULT = "default-deny"
NEEDS = ("opt_in", "no_opt_out")
NAME = "^[a-z][a-z0-9_]*$"  # no `:`, which joins a channel and a purpose in a request's `consents`

_text = {"type": "string", "minLength": 1}
_names = {"type": "array", "items": {"type": "string", "pattern": NAME}, "minItems": 1, "uniqueItems": True}
_scope = {
    "type": "array",
    "items": {"type": "string", "pattern": r"^([a-z][a-z0-9_]*|\*)$"},
    "minItems": 1,
    "uniqueItems": True,
}

SCHEMA: dict[str, Any] = {
    "channels": {**_names, "description": "the channels a request can name, like `email`, `sms`, `phone`"},
    "purposes": {**_names, "description": "the purposes a request can name, like `service`, `marketing`"},
    "consent_valid_for": {
        "type": "string",
        "pattern": PERIOD.pattern,
        "description": "how long an opt-in lasts after it was given, like `730d`, `24m`, `2y`",
    },
    "rules": {
        "type": "array",
        "minItems": 1,
        "description": "in order: the first rule that matches a request decides; none: `default-deny`",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["id", "channels", "purposes", "effect"],
            "properties": {
                "id": {"type": "string", "pattern": "^[a-z][a-z0-9_-]*$"},
                "channels": {**_scope, "description": "the channels it applies to; `*`: every one"},
                "purposes": {**_scope, "description": "the purposes it applies to; `*`: every one"},
                "effect": {"enum": ["allow", "deny"]},
                "needs": {
                    "enum": list(NEEDS),
                    "description": "opt_in: a valid opt-in to the channel and purpose; no_opt_out: no opt-out",
                },
                "message": _text,
                "title": _text,
                "description": _text,
                "owner": _text,
                "clause": _text,
            },
        },
    },
}

# --------------------------------------------------------------------------------------------
# the checked policy
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentRule:
    id: str
    channels: tuple[str, ...]
    purposes: tuple[str, ...]
    allow: bool
    needs: str | None
    location: Location
    message: str = ""
    clause: str = ""

    def covers(self, channel: str, purpose: str) -> bool:
        """Whether it names this channel and this purpose (the rest is what it ``needs``)."""
        return (ANY in self.channels or channel in self.channels) and (ANY in self.purposes or purpose in self.purposes)


@dataclass(frozen=True)
class Consent:
    """What ``policy.extra`` holds for a consent policy."""

    channels: tuple[str, ...]
    purposes: tuple[str, ...]
    valid_for: tuple[int, str] | None
    rules: tuple[ConsentRule, ...]

    def pairs(self) -> list[tuple[str, str]]:
        """Every (channel, purpose) a request can name."""
        return [(c, p) for c in self.channels for p in self.purposes]


def check(ctx: CheckContext) -> Consent:
    """The semantic checks ``charter validate`` runs once the schema holds (CS101-CS105)."""
    data = ctx.data
    declared = {"channels": tuple(data["channels"]), "purposes": tuple(data["purposes"])}
    valid_for: tuple[int, str] | None = None
    if "consent_valid_for" in data:
        m = PERIOD.match(data["consent_valid_for"])
        assert m is not None  # the schema checked the pattern
        valid_for = (int(m.group(1)), m.group(2))
        if valid_for[0] == 0:
            ctx.error(
                "an opt-in valid for no time at all never allows a contact",
                ("consent_valid_for",),
                "CS104",
                "give how long an opt-in lasts, like `730d`, or remove `consent_valid_for` if it never lapses",
            )
    rules: list[ConsentRule] = []
    for i, spec in enumerate(data["rules"]):
        path = ("rules", i)
        if spec["id"] == DEFAULT:
            ctx.error(
                f"`{DEFAULT}` is the rule that decides when no rule matches",
                (*path, "id"),
                "CS105",
                "give the rule another id",
            )
        ctx.claim_id(spec["id"], path)
        for key, code, noun in (("channels", "CS101", "channel"), ("purposes", "CS102", "purpose")):
            for j, name in enumerate(spec[key]):
                if name != ANY and name not in declared[key]:
                    ctx.error(
                        f"unknown {noun} `{name}`",
                        (*path, key, j),
                        code,
                        did_you_mean(name, declared[key]) or f"declare it under `{key}:`",
                    )
            if ANY in spec[key] and len(spec[key]) > 1:
                ctx.error(
                    f"`*` already names every {noun}",
                    (*path, key),
                    "CS103",
                    f'write `{key}: ["*"]`, or list the {key} without `*`',
                )
        rules.append(
            ConsentRule(
                spec["id"],
                tuple(spec["channels"]),
                tuple(spec["purposes"]),
                spec["effect"] == "allow",
                spec.get("needs"),
                ctx.doc.location(path),
                str(spec.get("message", "")),
                str(spec.get("clause", "")),
            )
        )
    return Consent(declared["channels"], declared["purposes"], valid_for, tuple(rules))


# --------------------------------------------------------------------------------------------
# deciding
# --------------------------------------------------------------------------------------------


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Standing:
    """Where the customer stands on one channel and purpose at the time of decision."""

    key: str  # `channel:purpose`
    given: datetime | None  # the opt-in the request gives for it
    expires: datetime | None  # when that opt-in lapses (None: it never does, or there is none)
    opted_out: datetime | None  # the opt-out in force at the time of decision
    why_not: str  # why the opt-in does not count; "" when it does

    @property
    def opt_in(self) -> bool:
        return self.given is not None and not self.why_not

    def holds(self, need: str | None) -> bool:
        if need is None:
            return True
        return self.opt_in if need == "opt_in" else self.opted_out is None

    def test(self, need: str) -> tuple[str, tuple[Any, ...], bool]:
        """The trace's test of ``need``: its text, the values it read and its result."""
        if need == "opt_in":
            return (
                f"opt_in `{self.key}` (given, expires, opted out)",
                (self.given, self.expires, self.opted_out),
                self.opt_in,
            )
        return ("no_opt_out (opted out)", (self.opted_out,), self.opted_out is None)

    def note(self, need: str) -> str:
        if need == "opt_in":
            return self.why_not
        assert self.opted_out is not None
        return f"the customer opted out on {_iso(self.opted_out)}"


class ConsentRunner:
    """A consent policy, ready to decide requests (``Domain.build``)."""

    def __init__(self, policy: Policy) -> None:
        model: Consent = policy.extra
        self.model = model
        self.keys = frozenset(f"{c}:{p}" for c, p in model.pairs())
        timestamp = {"check_with": "timestamp"}
        # the facts a decision reads: checked before it runs, and what the decision log keeps
        self.shape = RequestShape(
            {
                "id": {"type": "string"},
                "customer": {"type": "string"},
                "channel": {"type": "string", "required": True, "allowed": list(model.channels)},
                "purpose": {"type": "string", "required": True, "allowed": list(model.purposes)},
                "consents": {"type": "dict", "valuesrules": timestamp},
                "opted_out_at": {**timestamp, "nullable": True},
            },
            "consent request",
        )
        self.fired = {
            r.id: FiredRule(r.id, KIND, (("contact", r.allow),), r.message, r.location.file, r.location.line, r.clause)
            for r in model.rules
        }
        self.default = FiredRule(
            DEFAULT,
            KIND,
            (("contact", False),),
            "no rule allows it: default deny",
            policy.path,
            policy.location.line,
            policy.metadata.get("clause", ""),
        )
        self.candidates = {pair: tuple(r for r in model.rules if r.covers(*pair)) for pair in model.pairs()}

    def __call__(
        self, facts: Mapping[str, Any], now: datetime, upstream: Mapping[str, Decision], explain: bool
    ) -> DomainResult:
        self.shape.check(facts)
        self._check_keys(facts)
        channel, purpose = str(facts["channel"]), str(facts["purpose"])
        standing = self.standing(facts, channel, purpose, now)
        decided: ConsentRule | None = None
        notes: list[str] = []
        for rule in self.candidates[(channel, purpose)]:
            if standing.holds(rule.needs):
                decided = rule
                break
            assert rule.needs is not None  # a rule that needs nothing always holds
            notes.append(f"`{rule.id}` does not apply: {standing.note(rule.needs)}")
        if decided is None:
            outputs: dict[str, Any] = {"contact": False, "rule": DEFAULT, "consent_expires": None}
            fired = self.default
        else:
            expires = standing.expires if decided.needs == "opt_in" else None
            outputs = {"contact": decided.allow, "rule": decided.id, "consent_expires": expires}
            fired = self.fired[decided.id]
        trace = self._trace(channel, purpose, standing, decided) if explain else None
        customer = facts.get("customer")
        return DomainResult(outputs, [fired], notes, trace, subject=str(customer) if customer is not None else None)

    def standing(self, facts: Mapping[str, Any], channel: str, purpose: str, now: datetime) -> Standing:
        key = f"{channel}:{purpose}"
        raw = (facts.get("consents") or {}).get(key)
        given = parse_timestamp(raw) if raw is not None else None
        out_raw = facts.get("opted_out_at")
        opted_out = parse_timestamp(out_raw) if out_raw is not None else None
        if opted_out is not None and opted_out > now:
            opted_out = None  # not yet: the time of decision is the caller's, never the clock's
        valid_for = self.model.valid_for
        expires = add_period(given, valid_for) if given is not None and valid_for is not None else None
        why = ""
        if given is None:
            why = f"no opt-in to `{key}`"
        elif given > now:
            why = f"the opt-in to `{key}` is dated {_iso(given)}, after the time of decision"
        elif expires is not None and now >= expires:
            assert valid_for is not None
            why = (
                f"the opt-in to `{key}` of {_iso(given)} lapsed on {_iso(expires)} (valid {valid_for[0]}{valid_for[1]})"
            )
        elif opted_out is not None and given <= opted_out:
            why = f"the customer opted out on {_iso(opted_out)}, after opting in to `{key}` on {_iso(given)}"
        return Standing(key, given, expires, opted_out, why)

    def _check_keys(self, facts: Mapping[str, Any]) -> None:
        consents = facts.get("consents") or {}
        bad = [k for k in consents if k not in self.keys]
        if bad:
            subject = facts.get("id")
            raise FactErrors(
                [
                    FactError(
                        f"`consents.{k}` is not a declared channel and purpose",
                        field=f"consents.{k}",
                        value=consents[k],
                        rule="allowed",
                        hint=did_you_mean(k, self.keys) or "write `channel:purpose`, like `email:marketing`",
                        code="F205",
                    )
                    for k in bad
                ],
                subject=str(subject) if subject is not None else "",
            )

    def _trace(self, channel: str, purpose: str, standing: Standing, decided: ConsentRule | None) -> list[TraceStep]:
        """Every rule's tests, in order, each as far as it was evaluated (the tests short-circuit)."""
        steps: list[TraceStep] = []
        for rule in self.model.rules:
            tests: list[tuple[str, tuple[Any, ...], Any]] = []
            ok = ANY in rule.channels or channel in rule.channels
            tests.append((_scope_text("channel", rule.channels), (channel,), ok))
            if ok:
                ok = ANY in rule.purposes or purpose in rule.purposes
                tests.append((_scope_text("purpose", rule.purposes), (purpose,), ok))
            if ok and rule.needs is not None:
                test = standing.test(rule.needs)
                ok = test[2]
                tests.append(test)
            steps.append(TraceStep(KIND, rule.id, ok, tuple(tests)))
        if decided is None:
            steps.append(TraceStep(KIND, DEFAULT, True, ()))
        return steps


def _scope_text(noun: str, names: Sequence[str]) -> str:
    return f"any {noun}" if ANY in names else f"{noun} in [{', '.join(names)}]"


def build(policy: Policy, registry: Registry) -> Runner:
    return ConsentRunner(policy)


def rules(policy: Policy) -> list[RuleInfo]:
    """Each rule, and the built-in default deny (cited at the policy's own location)."""
    model: Consent = policy.extra
    out = [
        RuleInfo(r.location.file, r.location.line, r.id, f"{'allow' if r.allow else 'deny'} rule") for r in model.rules
    ]
    out.append(RuleInfo(policy.path, policy.location.line, DEFAULT, "built-in"))
    return out


# --------------------------------------------------------------------------------------------
# charter lint: CS201-CS203
# --------------------------------------------------------------------------------------------


def lint(ctx: Context, policy: Policy) -> None:
    model: Consent = policy.extra
    for j, rule in enumerate(model.rules):
        _unreachable(ctx, model, j, rule)
        if not rule.allow and rule.needs == "opt_in":
            ctx.add(
                "CS202",
                WARNING,
                f"rule `{rule.id}` denies exactly the customers who opted in",
                ctx.at(rule.location, (*rule.location.path, "needs")),
                "did you mean `effect: allow`? A deny rule needs no opt-in",
            )
    for key, noun in (("channels", "channel"), ("purposes", "purpose")):
        named = {n for r in model.rules for n in getattr(r, key)}
        if ANY in named:
            continue
        for j, name in enumerate(getattr(model, key)):
            if name not in named:
                ctx.add(
                    "CS203",
                    WARNING,
                    f"no rule names {noun} `{name}`: every request for it is denied by `{DEFAULT}`",
                    ctx.at(policy.location, (key, j)),
                    f"add a rule for `{name}`, or remove it from `{key}:`",
                )


def _unreachable(ctx: Context, model: Consent, j: int, rule: ConsentRule) -> None:
    """CS201: every request ``rule`` could decide, an earlier rule always decides first.

    An earlier rule matches whenever ``rule`` does when it names the same channel and purpose
    and needs nothing, or needs the same as ``rule``."""
    before: dict[str, ConsentRule] = {}
    pairs = [pair for pair in model.pairs() if rule.covers(*pair)]
    for pair in pairs:
        first = next(
            (r for r in model.rules[:j] if r.covers(*pair) and (r.needs is None or r.needs == rule.needs)), None
        )
        if first is None:
            return
        before.setdefault(first.id, first)
    if not pairs:
        return
    shadows = list(before.values())
    names = ", ".join(f"`{r.id}`" for r in shadows)
    if len(shadows) > 1:
        why = f"rules {names} come first and, between them, match whenever it does"
    elif shadows[0].needs is None and ANY in shadows[0].channels and ANY in shadows[0].purposes:
        why = f"rule {names} comes first and matches every request"
    else:
        why = f"rule {names} comes first and matches whenever it does"
    ctx.add(
        "CS201",
        ERROR,
        f"rule `{rule.id}` can never fire: {why}",
        rule.location,
        f"move `{rule.id}` above {names}, or narrow {'its' if len(shadows) == 1 else 'their'} channels or purposes;"
        f" if `{rule.id}` is not needed, remove it",
        [Related(r.location, f"rule `{r.id}`") for r in shadows],
    )


# --------------------------------------------------------------------------------------------
# the domain, and the hook that hands it to Charter
# --------------------------------------------------------------------------------------------

CONSENT = Domain(
    kind=KIND,
    description="marketing consent: may we contact this customer on this channel for this purpose",
    schema_extra=SCHEMA,
    shared=False,
    required=("channels", "purposes", "rules"),
    check=check,
    build=build,
    rules=rules,
    sections=("channels", "purposes", "consent_valid_for", "rules"),
    key_order={"rules[]": "id channels purposes effect needs message title description owner clause"},
    ordered={"rules": "the first rule that matches decides"},
    lint=lint,
)


@hookimpl
def charter_domains() -> list[Domain]:
    return [CONSENT]


__all__ = ["CONSENT", "Consent", "ConsentRule", "ConsentRunner", "charter_domains"]
