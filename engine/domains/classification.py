"""Data classification (domain.md §2): a class for every field of a customer record.

Classes are policy data, listed least to most restrictive; each carries its handling
requirements (encryption at rest, masking style, export, purposes). Rules assign a class
by field name or pattern (``fields:``, glob patterns over dotted paths such as
``address.*`` or ``contacts[].phone``), by a content detector plugin (``detector:``), or
both (a field of that name whose content the detector recognises).

Semantics (documented in docs/domains.md):

* when several rules classify a field, the **most restrictive class wins**; between rules
  of the same class, the first in the file; the decision names the rule that decided;
* a field no rule classifies is listed under ``unclassified`` — a finding, never a
  silent default;
* nested objects are classified leaf by leaf (``address.city``); the items of a list of
  objects share a path (``contacts[].phone``) and the most restrictive item decides;
  detectors read text and whole numbers, every item of a list of them;
* a ``null`` value is classified by its name only, so a host can ask about a field
  without sending its content;
* the order of a record's keys never changes a decision: fields are decided in sorted
  path order and the fired rules listed in file order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from engine.core import globs
from engine.core.decision import Decision, FiredRule, TraceStep
from engine.core.domain import CheckContext, Domain, DomainResult, RuleInfo, Runner
from engine.domains.classification_fast import MAX_SHAPES, Shape, first_hit, joined_screen, make_shape
from engine.domains.classification_fast import texts_of as _texts
from engine.errors import FactError, FactErrors, Location, did_you_mean

if TYPE_CHECKING:
    from engine.core.model import Policy
    from engine.hookspecs import Registry

MASKS = ("none", "full", "last4", "hash", "null", "year")
MAX_DEPTH = 32

_text = {"type": "string", "minLength": 1}
_meta = {"title": _text, "description": _text, "owner": _text, "clause": _text, "message": _text}
_id = {"type": "string", "pattern": "^[a-z][a-z0-9_-]*$"}

SCHEMA: dict[str, Any] = {
    "classes": {
        "type": "array",
        "minItems": 1,
        "description": "data classes, least restrictive first",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["id", "handling"],
            "properties": {
                "id": _id,
                "label": _text,
                **_meta,
                "handling": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["encrypt_at_rest", "mask", "export"],
                    "properties": {
                        "encrypt_at_rest": {"type": "boolean"},
                        "cipher": _text,
                        "mask": {"enum": list(MASKS), "description": "how values show in displays and logs"},
                        "export": {"type": "boolean"},
                        "purposes": {"type": "array", "items": _text, "uniqueItems": True},
                        "graded_permissions": {"type": "boolean"},
                    },
                },
            },
        },
    },
    "rules": {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["id", "class"],
            "anyOf": [{"required": ["fields"]}, {"required": ["detector"]}],
            "properties": {
                "id": _id,
                "class": _id,
                "fields": {"type": "array", "items": _text, "minItems": 1},
                "detector": {"type": "string", "pattern": "^[a-z_][a-z0-9_]*$"},
                **_meta,
            },
        },
    },
}


@dataclass(frozen=True)
class DataClass:
    id: str
    rank: int
    handling: dict[str, Any]
    location: Location
    label: str = ""
    clause: str = ""
    purpose_locations: tuple[Location, ...] = field(default=(), compare=False)  # of ``handling.purposes``


@dataclass(frozen=True)
class ClassRule:
    id: str
    cls: str
    location: Location
    fields: tuple[str, ...] = ()
    detector: str | None = None
    message: str = ""
    clause: str = ""


@dataclass(frozen=True)
class Classification:
    classes: tuple[DataClass, ...]
    rules: tuple[ClassRule, ...]
    by_id: dict[str, DataClass] = field(default_factory=dict)


# the ciphers a class's `encrypt_at_rest` may name (what a key-management system offers; GB/T 32907 SM4 too)
CIPHERS = ("AES-256-GCM", "AES-128-GCM", "AES-256-CBC", "AES-256-XTS", "ChaCha20-Poly1305", "SM4-GCM", "SM4-CBC")


def _cipher_meant(written: str) -> str | None:
    """`AES256` is `AES-256-GCM` (the first cipher it begins), else the closest name."""
    bare = "".join(ch for ch in written.upper() if ch.isalnum())
    begun = next((c for c in CIPHERS if "".join(ch for ch in c.upper() if ch.isalnum()).startswith(bare)), None)
    return f"did you mean `{begun}`?" if bare and begun else did_you_mean(written, CIPHERS)


def check(ctx: CheckContext) -> Classification:
    """Validate ``classes`` and ``rules``: unique ids, known classes and detectors."""
    classes: dict[str, DataClass] = {}
    for i, spec in enumerate(ctx.data["classes"]):
        path = ("classes", i)
        first = classes.get(spec["id"])
        if first is not None:
            ctx.error(
                f"class `{spec['id']}` is listed twice",
                (*path, "id"),
                "P174",
                "list each class once, least restrictive first",
                related=first.location,
            )
            continue
        cipher = spec["handling"].get("cipher")
        if cipher is not None and str(cipher) not in CIPHERS:
            ctx.error(
                f"`{cipher}` is not a cipher Charter knows for encryption at rest",
                (*path, "handling", "cipher"),
                "P177",
                _cipher_meant(str(cipher)) or "write one of " + ", ".join(f"`{c}`" for c in CIPHERS),
            )
        purposes = spec["handling"].get("purposes", ())
        classes[spec["id"]] = DataClass(
            spec["id"],
            len(classes),
            dict(spec["handling"]),
            ctx.doc.location(path),
            str(spec.get("label", "")),
            str(spec.get("clause", "")),
            tuple(ctx.doc.location((*path, "handling", "purposes", j)) for j in range(len(purposes))),
        )
    rules = []
    for i, spec in enumerate(ctx.data["rules"]):
        path = ("rules", i)
        ctx.claim_id(spec["id"], path)
        if spec["class"] not in classes:
            ctx.error(
                f"unknown class `{spec['class']}`",
                (*path, "class"),
                "P175",
                did_you_mean(spec["class"], classes) or "classes: " + ", ".join(f"`{c}`" for c in classes),
            )
        for j, pattern in enumerate(spec.get("fields", ())):
            wrong = globs.impossible(str(pattern))
            if wrong is not None:
                message = f"field pattern `{pattern}` {wrong[0]}: it can never match"
                ctx.error(message, (*path, "fields", j), "P146", wrong[1])
        detector = spec.get("detector")
        if detector is not None and detector not in ctx.registry.detectors:
            ctx.error(
                f"no plugin provides the detector `{detector}`",
                (*path, "detector"),
                "P176",
                did_you_mean(detector, ctx.registry.detectors)
                or "install the plugin that provides it, or see `charter plugins`",
            )
        rules.append(
            ClassRule(
                spec["id"],
                spec["class"],
                ctx.doc.location(path),
                tuple(spec.get("fields", ())),
                detector,
                str(spec.get("message", "")),
                str(spec.get("clause", "")),
            )
        )
    return Classification(tuple(classes.values()), tuple(rules), classes)


# --------------------------------------------------------------------------------------------
# compile and run
# --------------------------------------------------------------------------------------------


def flatten(record: Mapping[str, Any], prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    """Every leaf of a record as (dotted path, value); list items of objects share ``path[]``."""
    out: list[tuple[str, Any]] = []
    _flatten(record, prefix, depth, out)
    return out


def _flatten(record: Mapping[str, Any], prefix: str, depth: int, out: list[tuple[str, Any]]) -> None:
    if depth > MAX_DEPTH:
        raise FactErrors(
            [
                FactError(
                    f"`{prefix}` is nested more than {MAX_DEPTH} levels deep",
                    field=prefix,
                    rule="depth",
                    code="F210",
                    hint="flatten the record",
                )
            ]
        )
    for key, value in record.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        kind = type(value)
        if kind is str or kind is int or kind is float or kind is bool or value is None:
            out.append((path, value))
        elif isinstance(value, dict) and value:
            _flatten(value, path, depth + 1, out)
        elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
            for item in value:
                if isinstance(item, dict):
                    _flatten(item, path + "[]", depth + 1, out)
                else:
                    out.append((path + "[]", item))
        else:
            out.append((path, value))


def _screen(pattern: str) -> Callable[[str], Any] | None:
    """A detector's screen, compiled; none when it declares none or one ``re`` cannot read
    (the detector is then asked of every text: a plugin's mistake costs speed, not hits)."""
    try:
        return re.compile(pattern).search if pattern else None
    except (re.error, TypeError):
        return None


def _first(leaf: tuple[str, Any]) -> str:
    return leaf[0]


def _ask(detect: Callable[[str], bool], screen: Callable[[str], Any] | None, texts: list[str]) -> bool | dict[str, str]:
    """What a detector rule answers of a field's texts, as the log records it: whether the
    detector accepts one of them, or ``{"raised": exception type}`` when it fails."""
    for text in texts:
        if screen is not None and screen(text) is None:
            continue
        try:
            if detect(text):
                return True
        except Exception as exc:  # a detector plugin's bug
            return {"raised": type(exc).__name__}
    return False


class _Compiled:
    # replay only (``engine.audit.replay.Playback``): detectors' answers come from the record
    playback: Any = None

    def __init__(self, policy: Policy, registry: Registry) -> None:
        model: Classification = policy.extra
        self.model = model
        self.step = policy.id
        self.rank = {c.id: c.rank for c in model.classes}
        self.handling = {c.id: c.handling for c in model.classes}
        self.classes_of = {r.id: r.cls for r in model.rules}
        self.order = {r.id: i for i, r in enumerate(model.rules)}
        self.fired = {
            r.id: FiredRule(r.id, "classification", (), r.message, r.location.file, r.location.line, r.clause)
            for r in model.rules
        }
        # (order, rule, compiled field patterns or None, detector function or None)
        self.rules: list[tuple[int, ClassRule, re.Pattern[str] | None, Any]] = []
        for i, rule in enumerate(model.rules):
            pattern = re.compile("|".join(f"(?:{globs.translate(p)})" for p in rule.fields)) if rule.fields else None
            detect = registry.detectors[rule.detector].func if rule.detector else None
            self.rules.append((i, rule, pattern, detect))
        self.name_rules = [r for r in self.rules if r[3] is None]
        self.content_rules = [r for r in self.rules if r[3] is not None]
        self._by_name: dict[str, tuple[int, int] | None] = {}
        self._plans: dict[str, _Plan] = {}
        # each detector's screen (hookspecs.DetectorSpec): a text it does not find, the
        # detector is not asked (when no trace is kept: a trace shows every detector's answer)
        self.screens = {
            name: re.compile(spec.screen).search for name, spec in registry.detectors.items() if spec.screen
        }
        self._outcomes: dict[tuple[tuple[str, tuple[int, int] | None], ...], _Outcome] = {}
        # the fast path (engine.domains.classification_fast): a plan per shape of flat record,
        # None for a shape the reference path decides; each detector asked once of a record
        self._shapes: dict[tuple[tuple[Any, ...], tuple[type, ...]], Shape | None] = {}
        self._detectors = {name: spec.func for name, spec in registry.detectors.items()}
        self._joined = {name: joined_screen(spec.screen) for name, spec in registry.detectors.items()}
        # for the log (``plugin_calls``): the detectors' answers per shape of record and outcome
        self._logged: dict[tuple[tuple[str, str | None], ...], list[tuple[str, str, dict[str, Any]]]] = {}

    def by_name(self, path: str) -> tuple[int, int] | None:
        """(rank, rule order) of the best name-only rule for ``path``; cached per path."""
        hit = self._by_name.get(path, False)
        if hit is not False:
            return hit  # type: ignore[return-value]
        best = None
        for i, rule, pattern, _ in self.name_rules:
            if pattern is not None and pattern.match(path):
                key = (self.rank[rule.cls], -i)
                if best is None or key > best:
                    best = key
        if len(self._by_name) < 65536:
            self._by_name[path] = best
        return best

    def plan(self, path: str) -> _Plan:
        """For ``path``: the best name rule, and the detector rules that could beat it, best
        first, each with its detector and that detector's screen (``DetectorSpec.screen``)."""
        hit = self._plans.get(path)
        if hit is None:
            found = self.by_name(path)
            candidates = tuple(
                sorted(
                    (
                        ((self.rank[rule.cls], -i), rule, detect, self.screens.get(rule.detector or ""))
                        for i, rule, pattern, detect in self.content_rules
                        if (pattern is None or pattern.match(path))
                        and (found is None or (self.rank[rule.cls], -i) > found)
                    ),
                    key=lambda c: c[0],
                    reverse=True,
                )
            )
            hit = (found, candidates)
            if len(self._plans) < 65536:
                self._plans[path] = hit
        return hit

    def classify(self, path: str, value: Any) -> str | None:
        """The class of one field (by its name and content), or None when no rule classifies it."""
        found, candidates = self.plan(path)
        texts = _texts(value) if candidates else []
        for key, _rule, detect, _ in candidates:
            try:
                if any(detect(t) for t in texts):
                    found = key
                    break
            except Exception:  # a detector's bug: this rule does not classify the value
                continue
        return self.rules[-found[1]][1].cls if found is not None else None

    def __call__(
        self, facts: Mapping[str, Any], now: datetime, upstream: Mapping[str, Decision], explain: bool
    ) -> DomainResult:
        if not explain and self.playback is None and type(facts) is dict:
            values = tuple(facts.values())
            key = (tuple(facts), tuple(map(type, values)))
            shape = self._shapes.get(key, _UNSEEN)
            if shape is _UNSEEN:
                shape = self._shape(key)
            if isinstance(shape, Shape):
                decided = shape.decide(values)
                if decided is not None:
                    return self._result(decided[0], decided[1], None)
        return self._reference(facts, explain)

    def _shape(self, key: tuple[tuple[Any, ...], tuple[type, ...]]) -> Shape | None:
        """The plan for records of this shape (keys in order, value types), kept (bounded)."""
        made = make_shape(*key, self.plan, self._detectors, self._joined, self._decided)
        if len(self._shapes) >= MAX_SHAPES:
            self._shapes.clear()
        self._shapes[key] = made
        return made

    def _decided(self, chosen: list[tuple[str, tuple[int, int] | None]]) -> _Outcome:
        outcome = self._outcomes.get(tuple(chosen))
        return outcome if outcome is not None else self._outcome(chosen)

    def _reference(self, facts: Mapping[str, Any], explain: bool) -> DomainResult:
        """The reference path: every record, and the only one that keeps a trace (each
        detector asked of each text, screens unused) or replays the logged answers."""
        leaves = flatten(facts)
        leaves.sort(key=_first)  # the record's key order never changes a decision
        notes: list[str] = []
        trace: list[TraceStep] | None = [] if explain else None
        chosen: list[tuple[str, tuple[int, int] | None]] = []
        plan = self.plan
        playback = self.playback
        n = len(leaves)
        i = 0
        while i < n:
            path, value = leaves[i]
            j = i + 1
            while j < n and leaves[j][0] == path:  # the items of a list of objects share a path
                j += 1
            found, candidates = plan(path)
            if candidates:
                if j == i + 1 and type(value) is str:
                    texts: list[str] = [value]
                else:
                    texts = [t for _, v in leaves[i:j] for t in _texts(v)]
                if playback is not None:  # replay: the answers the logged decision had
                    if texts or trace is not None:
                        found = self._played(playback, path, texts, candidates, found, trace, notes)
                elif texts or trace is not None:
                    hit = first_hit(path, texts, candidates, notes, trace=trace)
                    if hit is not None:
                        found = hit
            chosen.append((path, found))
            i = j
        return self._result(self._decided(chosen), notes, trace)

    @staticmethod
    def _result(outcome: _Outcome, notes: list[str], trace: list[TraceStep] | None) -> DomainResult:
        """The decision of a record with this outcome: outputs in new containers (the
        handling requirements are the policy's own, shared as before)."""
        if outcome.note:
            notes.append(outcome.note)
        if trace is not None:
            for path, (cls, rid) in outcome.pairs:
                trace.append(TraceStep(path, rid, True, ((f"class `{cls}`", (), True),)))
        outputs = {
            "fields": {path: {"class": cls, "rule": rid} for path, (cls, rid) in outcome.pairs},
            "unclassified": list(outcome.unclassified),
            "classes": list(outcome.present),
            "highest": outcome.highest,
            "handling": dict(outcome.handling),
        }
        return DomainResult(outputs, list(outcome.fired), notes, trace)

    @staticmethod
    def _played(
        playback: Any,
        path: str,
        texts: list[str],
        candidates: tuple[tuple[tuple[int, int], ClassRule, Any, Any], ...],
        found: tuple[int, int] | None,
        trace: list[TraceStep] | None,
        notes: list[str],
    ) -> tuple[int, int] | None:
        """At replay, the detector rules of one field as ``__call__`` runs them, each
        detector's answer as the record holds it (the live one when it holds none), a recorded
        failure noted as it was; the field's best rule key."""
        for key, rule, detect, screen in candidates:
            live = partial(_ask, detect, screen if trace is None else None, texts)
            got = playback.call("detector", rule.detector, path, live) if texts else False
            hit = got is True
            if isinstance(got, dict):
                notes.append(f"detector `{rule.detector}` failed on `{path}`: {got.get('raised')}")
            if trace is not None:
                trace.append(TraceStep(path, rule.id, hit, ((f"detector `{rule.detector}`", (), hit),)))
            if hit:
                return key
        return found

    def plugin_calls(self, facts: Mapping[str, Any], decision: Decision) -> list[tuple[str, str, dict[str, Any]]]:
        """The detectors' answers ``decision`` was made with, for the log: (``"detector"``,
        name, {field path: answer}) — for each detector rule a field with text was asked of,
        best first, no until the rule that classified the field (yes), and ``{"raised":
        type}`` where the detector failed (the decision's note says so). The decision holds
        them all: which rule classified each field, and the notes."""
        if not self.content_rules:
            return []
        fields = decision.outputs.get("fields") or {}
        failed = [n for n in decision.notes if n.startswith("detector `")]
        leaves = flatten(facts)
        leaves.sort(key=_first)
        asked: list[tuple[str, str | None]] = []  # (path, the rule that classified it) of each field with text
        plan = self.plan
        n = len(leaves)
        i = 0
        while i < n:
            path, value = leaves[i]
            j = i + 1
            while j < n and leaves[j][0] == path:
                j += 1
            if j == i + 1:  # one value (``_texts``, inline): text, a whole number, a list holding them
                kind = type(value)
                text = kind is str or kind is int or (kind is list and bool(_texts(value)))
            else:
                text = any(_texts(v) for _, v in leaves[i:j])
            if text and plan(path)[1]:
                decided = fields.get(path)
                asked.append((path, decided.get("rule") if decided else None))
            i = j
        signature = tuple(asked)
        hit = self._logged.get(signature) if not failed else None  # records of one shape share it
        if hit is not None:
            return hit
        out: dict[str, dict[str, Any]] = {}
        for path, rid in asked:
            for name, answer in self._asked(path, rid, plan(path)[1]):
                calls = out.setdefault(name, {})
                if path not in calls:
                    calls[path] = answer
                if failed:
                    prefix = f"detector `{name}` failed on `{path}`: "
                    raised = next((f[len(prefix) :] for f in failed if f.startswith(prefix)), None)
                    if raised is not None:
                        calls[path] = {"raised": raised}
        made = [("detector", name, calls) for name, calls in out.items()]
        if not failed:
            if len(self._logged) >= 4096:
                self._logged.clear()
            self._logged[signature] = made  # shared by the records of this shape: never changed
        return made

    @staticmethod
    def _asked(
        path: str, decided: str | None, candidates: tuple[tuple[tuple[int, int], ClassRule, Any, Any], ...]
    ) -> tuple[tuple[str, bool], ...]:
        """The detectors a field is asked, best first, with their answers when ``decided``
        (a rule id, or None) classified it."""
        asked: dict[str, bool] = {}
        for _, rule, _, _ in candidates:
            name = str(rule.detector)
            if rule.id == decided:
                asked.setdefault(name, True)
                break
            asked.setdefault(name, False)
        return tuple(asked.items())

    def _outcome(self, chosen: list[tuple[str, tuple[int, int] | None]]) -> _Outcome:
        """What a record whose sorted fields got these (rank, rule order) keys decides — its
        fields' classes and rules, the classes present, the fired rules, the note; the same for
        every record with these fields and keys, so kept (bounded) and shared (all immutable)."""
        pairs: list[tuple[str, tuple[str, str]]] = []
        decided: dict[str, list[str]] = {}
        unclassified: list[str] = []
        for path, key in chosen:
            if key is None:
                unclassified.append(path)
                continue
            rule = self.rules[-key[1]][1]
            pairs.append((path, (rule.cls, rule.id)))
            decided.setdefault(rule.id, []).append(path)
        note = "unclassified field(s): " + ", ".join(f"`{p}`" for p in unclassified) if unclassified else ""
        present = tuple(sorted({cls for _, (cls, _) in pairs}, key=self.rank.__getitem__))
        fired = []
        for rid, paths in sorted(decided.items(), key=lambda item: self.order[item[0]]):
            base = self.fired[rid]
            out = (("class", self.classes_of[rid]), ("fields", tuple(paths)))
            fired.append(FiredRule(rid, base.step, out, base.message, base.file, base.line, base.clause))
        outcome = _Outcome(tuple(pairs), tuple(unclassified), present, tuple(fired), note, self.handling)
        if len(self._outcomes) >= 16384:
            self._outcomes.clear()
        self._outcomes[tuple(chosen)] = outcome
        return outcome


# a path's best name rule (rank, -order), and the detector rules that could beat it (each
# with its key, rule, detector and the detector's screen's search, or None)
_Plan = tuple[tuple[int, int] | None, tuple[tuple[tuple[int, int], ClassRule, Any, Any], ...]]


_UNSEEN: Any = object()  # a shape not planned yet (None: planned, and the reference path decides)


class _Outcome:
    """A record's fields with their (class, rule), its unclassified fields, the classes present
    (least restrictive first), the fired rules and the note on unclassified fields; with the
    most restrictive class present and the classes' handling. Shared, never changed."""

    __slots__ = ("fired", "handling", "highest", "note", "pairs", "present", "unclassified")

    def __init__(
        self,
        pairs: tuple[tuple[str, tuple[str, str]], ...],
        unclassified: tuple[str, ...],
        present: tuple[str, ...],
        fired: tuple[FiredRule, ...],
        note: str,
        handling: Mapping[str, dict[str, Any]],
    ) -> None:
        self.pairs = pairs
        self.unclassified = unclassified
        self.present = present
        self.fired = fired
        self.note = note
        self.highest = present[-1] if present else None
        self.handling = {c: handling[c] for c in present}


# class ids that are not about a person (domain.md §2's "public" level): the only classes
# whose values the decision log keeps in clear
NON_PERSONAL = frozenset({"public"})
# the words of a free text, for a detector without a ``contains`` form: the runs of letters,
# digits and address characters (punctuation of any script ends one), and of ASCII ones only
_WORDS = re.compile(r"[\w@.%+-]+")
_ASCII_WORDS = re.compile(r"[A-Za-z0-9@._%+-]+")


def _finder(detect: Callable[[str], bool]) -> Callable[[str], bool]:
    """Whether a text holds, anywhere in it, a value ``detect`` accepts: the detector's own
    ``contains`` form (``charter_plugins.detectors``), or ``detect`` asked of the whole text
    and of each of its words."""
    contains = getattr(detect, "contains", None)
    if callable(contains):
        return contains  # type: ignore[no-any-return]

    def found(text: str) -> bool:
        if detect(text):
            return True
        return any(detect(w) for w in {*_WORDS.findall(text), *_ASCII_WORDS.findall(text)} if w != text)

    return found


def field_classifier(runner: Any) -> Callable[[str, Any], bool]:
    """Whether a value of a field must be sealed in the decision log: it is personal data.

    A field is personal when a name rule gives its path a class other than a non-personal
    one (``NON_PERSONAL``: ``public``) — every class of the shipped policy, ``basic``
    included — or a class that is to be encrypted at rest; then every value of it is sealed.
    Otherwise a value is personal when a detector of a rule giving such a class finds what it
    recognises anywhere in the value's text (``contains``: a national ID inside a free-text
    note), or when the detector fails on it (a plugin's bug seals, it never leaks). Decided
    once per field path by name, once per value otherwise (detectors are pure). This only
    says what the log seals: the domain's decisions are unchanged."""
    model: Classification = runner.model
    personal = {c.id for c in model.classes if c.id not in NON_PERSONAL or c.handling.get("encrypt_at_rest")}
    finders: dict[Any, Callable[[str], bool]] = {}
    by_name: dict[str, tuple[Callable[[str], bool], ...] | None] = {}  # None: personal by name
    by_value: dict[tuple[tuple[Callable[[str], bool], ...], type, Any], bool] = {}

    def plan(name: str) -> tuple[Callable[[str], bool], ...] | None:
        hit = by_name.get(name, False)
        if hit is not False:
            return hit  # type: ignore[return-value]
        found = runner.by_name(name)
        made: tuple[Callable[[str], bool], ...] | None
        if found is not None and runner.rules[-found[1]][1].cls in personal:
            made = None
        else:
            made = tuple(
                dict.fromkeys(
                    finders.setdefault(detect, _finder(detect))
                    for _, rule, pattern, detect in runner.content_rules
                    if rule.cls in personal and (pattern is None or pattern.match(name))
                )
            )
        if len(by_name) < 65536:
            by_name[name] = made
        return made

    def protected(name: str, value: Any) -> bool:
        finds = plan(name)
        if finds is None:
            return True
        if not finds:
            return False
        kind = type(value)
        key = (finds, kind, value) if kind is str or kind is int else None
        if key is not None:
            hit = by_value.get(key)
            if hit is not None:
                return hit
        hit = False
        for text in _texts(value):
            try:
                hit = any(find(text) for find in finds)
            except Exception:  # a detector's bug: sealed, to be safe
                hit = True
            if hit:
                break
        if key is not None:
            if len(by_value) >= 16384:
                by_value.clear()
            by_value[key] = hit
        return hit

    return protected


def rules(policy: Policy) -> list[RuleInfo]:
    """Each rule, as decisions name it."""
    return [RuleInfo(r.location.file, r.location.line, r.id, "rule") for r in policy.extra.rules]


def classes(policy: Policy) -> tuple[str, ...]:
    """The data classes this policy gives fields, least restrictive first."""
    return tuple(c.id for c in policy.extra.classes)


def build(policy: Policy, registry: Registry) -> Runner:
    return _Compiled(policy, registry)


def customer_requests(customer: Mapping[str, Any], body: Mapping[str, Any], earlier: Mapping[str, Any]) -> Any:
    """``POST /v1/customer``: the customer's facts, classified as one record."""
    return customer


CLASSIFICATION = Domain(
    outcome="highest",
    kind="classification",
    description="a data class for every field of a customer record, with its handling requirements",
    schema_extra=SCHEMA,
    shared=False,
    required=("classes", "rules"),
    check=check,
    build=build,
    rules=rules,
    sections=("classes", "rules"),
    key_order={
        "classes[]": "id label title clause description owner message handling",
        "classes[].handling": "encrypt_at_rest cipher mask export graded_permissions purposes",
        "rules[]": "id class fields detector message title description owner clause",
    },
    ordered={
        "classes": "the later class is the more restrictive",
        "rules": "between rules of one class, the first decides",
    },
    ordered_within={"rules": "class"},
    field_classifier=field_classifier,
    classes=classes,
    customer_requests=customer_requests,
)
