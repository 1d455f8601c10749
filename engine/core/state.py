"""A loaded policy set, ready to decide: the bound programs of every period of a ``Bundle``.

``Loaded.build(bundle, snapshot)`` binds each period's compiled policies to programs (in
dependency order, sharing the programs periods have in common); ``decide`` chooses the
period in force at ``now``, runs the domain's program and, when audit mode can change that
outcome, its audit-mode program beside it. The engine's API (``engine.api.Engine``) holds one
``Loaded`` and swaps it whole on reload; replay (``engine.audit.replay``) builds one from
the policy files a log stored, in memory.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import orjson

from engine.core.decision import Decision
from engine.core.evaluate import Program
from engine.core.expr import cost
from engine.errors import EvaluationError, FactError, FactErrors, did_you_mean

if TYPE_CHECKING:
    from engine.core.bundle import Bundle, PolicySet
    from engine.core.compile import CompiledPolicy
    from engine.population import Snapshot


def aware(now: datetime) -> datetime:
    """``now`` for choosing a period; a naive ``now`` is refused by the evaluation itself."""
    return now if isinstance(now, datetime) and now.tzinfo is not None else datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Period:
    """The programs of one period of the bundle (``PolicySet``), and of its audit mode."""

    set: PolicySet
    programs: dict[str, Program]
    audit: dict[str, Program] | None = None  # only when some rule in force then is in audit mode

    @cached_property
    def classifier(self) -> Program | None:
        """The program whose domain classifies data (``Domain.field_classifier``): the log asks
        it which logged values to seal."""
        return next(
            (p for p in self.programs.values() if p.compiled.domain and p.compiled.domain.field_classifier), None
        )

    def shadow(self, domain: str) -> Program | None:
        """The audit-mode program of ``domain`` when audit mode can change its outcome then."""
        if self.audit is None or domain not in self.set.audited:
            return None
        return self.audit.get(domain)


@dataclass(frozen=True)
class Loaded:
    """A bundle with its programs bound, for every period. Immutable: swapped whole."""

    bundle: Bundle
    snapshot: Snapshot | None
    programs: dict[str, Program]  # the latest period's
    periods: tuple[Period, ...]

    @classmethod
    def build(cls, bundle: Bundle, snapshot: Snapshot | None) -> Loaded:
        made: dict[tuple[int, ...], Program] = {}  # periods share the programs they have in common

        def programs_of(policies: Mapping[str, CompiledPolicy]) -> dict[str, Program]:
            programs: dict[str, Program] = {}
            for kind, cp in policies.items():  # dependency order: upstream programs exist first
                upstream = {name: programs[name] for name in cp.policy.uses}
                key = (id(cp), *(id(p) for p in upstream.values()))
                program = made.get(key)
                if program is None:
                    program = made[key] = Program(cp, bundle.version, snapshot)
                    program.upstream = upstream
                programs[kind] = program
            return programs

        periods = tuple(
            Period(p, programs_of(p.policies), programs_of(p.audit) if p.audit is not None else None)
            for p in bundle.periods
        )
        return cls(bundle, snapshot, periods[-1].programs, periods)

    def period(self, now: datetime) -> Period:
        return self.periods[self.bundle.period_index(aware(now))]

    def program(self, period: Period, domain: str, now: datetime | None) -> Program:
        """``domain``'s program in ``period``; ``EvaluationError`` naming when it is in force
        if it is loaded but not then, or the loaded domains if it is not loaded at all."""
        program = period.programs.get(domain)
        if program is None:
            loaded = {k for p in self.periods for k in p.programs}
            if domain in loaded and now is not None:
                when = "; ".join(p.set.describe() for p in self.periods if domain in p.programs)
                raise EvaluationError(
                    f"no `{domain}` policy is in force at {now.isoformat().replace('+00:00', 'Z')}",
                    code="V004",
                    hint=f"by its effective dates it is in force {when}",
                )
            raise EvaluationError(
                f"no `{domain}` policy is loaded",
                code="V003",
                hint=did_you_mean(domain, loaded) or "loaded: " + ", ".join(sorted(loaded)),
            )
        return program

    def decide(
        self, domain: str, facts: Mapping[str, Any], now: datetime, *, explain: bool = False
    ) -> tuple[Decision, Period, Program, Program | None]:
        """Decide in ``domain`` at ``now``: the decision, the period, the program and the
        audit-mode program that decided (None when audit mode cannot change it)."""
        period = self.period(now)
        program = self.program(period, domain, now)
        shadow = period.shadow(domain)
        return decide(program, shadow, facts, now, explain), period, program, shadow


def decide(
    program: Program, shadow: Program | None, facts: Mapping[str, Any], now: datetime, explain: bool
) -> Decision:
    """``program``'s decision, with ``shadow``'s (audit mode) attached; an audit-mode failure
    is a note on the decision, never the decision's failure.

    The boundary where facts and requests enter the engine: every decision of
    ``Engine.evaluate`` and ``Engine.evaluate_batch`` is made here (replay, which re-decides
    what was admitted then, is not). Refused with ``FactErrors`` before anything is logged:
    facts holding a key the decision log writes itself (``RESERVED_KEYS``, at any depth: F301),
    and a decision whose subject (the customer id the log keys its records and data keys by)
    is longer than ``MAX_SUBJECT`` characters (F302) or holds a control character or a lone
    surrogate (F303); a list of more than ``MAX_ITEMS`` items (F304) and a text of more than
    ``MAX_TEXT`` characters (F307), which bound what a condition can read."""
    _admit(facts)
    decision = program.evaluate(facts, now, explain=explain)
    subject = decision.subject
    if subject is not None and (len(subject) > MAX_SUBJECT or not _plain(subject)):
        raise _bad_subject(facts, subject)
    if shadow is not None:
        try:
            decision.audit = shadow.evaluate(facts, now, explain=explain)
        except (FactErrors, EvaluationError) as exc:
            decision.notes = (*decision.notes, f"audit mode could not decide: {exc.message}")
    return decision


# -- the boundary: what the log reserves, and what a subject may be ------------------------------

# Keys the decision log writes into logged facts to mark a value it sealed (``{"$sealed": ...}``,
# ``engine.audit.protect.SEALED``) or withheld (``{"$withheld": ...}``): facts holding one would
# be taken for such a value when read back. Only these are refused: other keys starting with `$`
# (``$oid``, ``$date`` of exported documents) are ordinary keys.
_SEALED, _WITHHELD = "$sealed", "$withheld"
RESERVED_KEYS = frozenset({_SEALED, _WITHHELD})
MAX_SUBJECT = 200  # characters of a decision's subject (a customer id)
MAX_ITEMS = cost.MAX_ITEMS  # items of any list in a decision's facts
MAX_TEXT = 1_000_000  # characters of any text in a decision's facts (what a condition reads is bounded)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SCALARS = frozenset({str, int, float, bool, type(None)})


class _TooLong(Exception):
    """A list in the facts has more than ``MAX_ITEMS`` items (``_admit`` names it)."""


class _TextTooLong(Exception):
    """A text in the facts has more than ``MAX_TEXT`` characters (``_admit`` names it)."""


class _Unencodable(Exception):
    """A text in the facts holds a lone surrogate, which UTF-8 (the log, JSON) cannot hold, or
    a whole number is past 64 bits (conditions compute in 64 bits; JSON consumers hold less)."""


_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _admit(facts: Any) -> None:
    """Raise ``FactErrors`` when ``facts`` hold a reserved key at any depth (F301) or a list
    of more than ``MAX_ITEMS`` items (F304: the bound the expression cost model counts on)."""
    if not isinstance(facts, Mapping):
        return  # the policy's own check says it is not an object
    if _clean(facts):
        return
    try:
        _walk(facts)
    except _TooLong:
        raise _too_long(facts) from None
    except _TextTooLong:
        raise _text_too_long(facts) from None
    except _Unencodable:
        raise _unencodable(facts) from None


_SMALL = 2 * MAX_ITEMS  # bytes of JSON too few to hold a list of more than MAX_ITEMS items


def _clean(facts: Mapping[str, Any]) -> bool:
    """True when ``facts`` surely pass ``_walk`` (the fast test, in orjson's C): they encode
    as JSON with every whole number within 53 bits and every text valid UTF-8, no key starts
    with `$`, and the text is too short to hold a list too long. False: ``_walk`` decides."""
    try:
        out = orjson.dumps(facts, option=orjson.OPT_STRICT_INTEGER)
    except (TypeError, orjson.JSONEncodeError):  # a surrogate, a number past 53 bits, a type JSON lacks
        return False
    return b'"$' not in out and len(out) <= _SMALL


def _walk(facts: Mapping[str, Any]) -> None:
    """One pass over every object and list in ``facts`` (no recursion: any depth is safe):
    each object's reserved keys and its keys' text, each list's length, and every value —
    a text, a whole number, or an object or a list to read next."""
    objects: list[Any] = [facts]  # the objects still to read
    lists: list[Any] = []  # the lists still to read
    scalars = _SCALARS
    while objects or lists:
        if objects:
            value = objects.pop()
            if _SEALED in value or _WITHHELD in value:
                raise _reserved(facts)
            for key in value:
                if type(key) is str and not key.isascii() and not _utf8(key):
                    raise _Unencodable
            items = value.values()
        else:
            items = lists.pop()
            if len(items) > MAX_ITEMS:
                raise _TooLong
        for item in items:
            kind = type(item)
            if kind is str:
                if len(item) > MAX_TEXT:
                    raise _TextTooLong
                if not item.isascii() and not _utf8(item):
                    raise _Unencodable
            elif kind is int:
                if not _INT_MIN <= item <= _INT_MAX:
                    raise _Unencodable
            elif kind in scalars:
                continue
            elif kind is dict:
                objects.append(item)
            elif kind is list or kind is tuple or isinstance(item, list | tuple):
                lists.append(item)
            elif isinstance(item, Mapping):
                objects.append(item)


def _reserved(facts: Mapping[str, Any]) -> FactErrors:
    """The error naming the first reserved key found (the slow path: with its place)."""
    found: list[FactError] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                where = f"{path}.{key}" if path else str(key)
                if key in RESERVED_KEYS:
                    found.append(
                        FactError(
                            f"`{where}` is a key the decision log reserves",
                            field=where,
                            value=item,
                            rule="reserved",
                            code="F301",
                            hint=f"rename the key: `{key}` marks a sealed or withheld value in the log",
                        )
                    )
                else:
                    walk(item, where)
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]")

    walk(facts, "")
    return FactErrors(
        found or [FactError("the facts hold a reserved key", field="", code="F301")], subject=_shown(facts.get("id"))
    )


def _first(facts: Mapping[str, Any], found: Callable[[Any], bool]) -> tuple[str, Any] | None:
    """The path (``""``: the facts themselves) and value of the first value in ``facts``
    (objects and lists walked, any depth) for which ``found`` is true."""
    stack: list[tuple[Any, str]] = [(facts, "")]
    while stack:
        value, path = stack.pop()
        if found(value):
            return path, value
        if isinstance(value, Mapping):
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in value.items())
        elif isinstance(value, list | tuple):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(value))
    return None


def _too_long(facts: Mapping[str, Any]) -> FactErrors:
    """The error naming the first list found with more than ``MAX_ITEMS`` items."""
    hit = _first(facts, lambda v: isinstance(v, list | tuple) and len(v) > MAX_ITEMS)
    path, value = hit if hit is not None else ("", ())  # (not reached: _walk found one)
    return _named(
        facts,
        FactError(
            f"`{path}` has {len(value)} items, more than the {MAX_ITEMS} a list may have",
            field=path,
            value=f"a list of {len(value)} items",
            rule=f"maxitems: {MAX_ITEMS}",
            code="F304",
            hint=f"send at most {MAX_ITEMS} items; split the customer's history if it is longer",
        ),
    )


def _text_too_long(facts: Mapping[str, Any]) -> FactErrors:
    """F307 naming the first text found with more than ``MAX_TEXT`` characters."""
    hit = _first(facts, lambda v: isinstance(v, str) and len(v) > MAX_TEXT)
    path, value = hit if hit is not None else ("", "")  # (not reached: _walk found one)
    return _named(
        facts,
        FactError(
            f"`{path}` is a text of {len(value):,} characters, more than the {MAX_TEXT:,} a text may have",
            field=path,
            value=f"a text of {len(value):,} characters",
            rule=f"maxlength: {MAX_TEXT}",
            code="F307",
            hint=f"send at most {MAX_TEXT:,} characters: keep documents out of the facts",
        ),
    )


def _named(facts: Mapping[str, Any], error: FactError) -> FactErrors:
    """``error`` as the boundary raises it: for the customer the facts name."""
    return FactErrors([error], subject=_shown(facts.get("id")))


def _plain(text: str) -> bool:
    """No control character and no lone surrogate (which UTF-8 cannot hold)."""
    if _CONTROL.search(text):
        return False
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            return False
    return True


def _unencodable(facts: Mapping[str, Any]) -> FactErrors:
    """F305 naming the first text (or key) that holds a lone surrogate, F306 the first whole
    number past 64 bits."""

    def found(value: Any) -> bool:
        if isinstance(value, Mapping):
            return any(isinstance(k, str) and not _utf8(k) for k in value)
        if isinstance(value, str):
            return not _utf8(value)
        return type(value) is int and not _INT_MIN <= value <= _INT_MAX

    path, value = _first(facts, found) or ("", "")  # (not reached without one: _walk found it)
    if isinstance(value, Mapping):
        return _surrogate(path or "(the facts)", "a key")
    if isinstance(value, str):
        return _surrogate(path, "the text")
    return FactErrors(
        [
            FactError(
                f"`{path}` is a whole number past 64 bits (of {value.bit_length()} bits)",
                field=path,
                value=None,
                rule="range",
                code="F306",
                hint=f"whole numbers run from {_INT_MIN:,} to {_INT_MAX:,}; send a larger amount as a decimal",
            )
        ]
    )


def _surrogate(path: str, what: str) -> FactErrors:
    shown = path.encode("utf-8", "backslashreplace").decode("utf-8")
    return FactErrors(
        [
            FactError(
                f"{what} at `{shown}` holds a lone surrogate (half of a UTF-16 pair), which no log or JSON can hold",
                field=shown,
                value=None,
                rule="encoding",
                code="F305",
                hint="send the text as valid Unicode (a `\\ud83d` escape must be followed by its low half)",
            )
        ]
    )


def _bad_subject(facts: Mapping[str, Any], subject: str) -> FactErrors:
    """The error naming the field the subject came from (the first, shallowest, whose value is
    it; ``id`` for customer facts)."""
    field = _field_of(facts, subject)
    where = f"`{field}`" if field else "the subject"
    if len(subject) > MAX_SUBJECT:
        error = FactError(
            f"{where} is {len(subject)} characters long, more than the {MAX_SUBJECT} an id may have",
            field=field,
            value=subject,
            rule=f"maxlength: {MAX_SUBJECT}",
            code="F302",
            hint=f"use an id of at most {MAX_SUBJECT} characters",
        )
    else:
        error = FactError(
            f"{where} holds a control character or an invalid character: {_shown(subject)}",
            field=field,
            value=subject,
            rule="characters",
            code="F303",
            hint="use an id of printable characters",
        )
    return FactErrors([error], subject=_shown(subject))


def _field_of(facts: Mapping[str, Any], subject: str) -> str:
    level: list[tuple[str, Any]] = [("", facts)]
    while level:
        deeper: list[tuple[str, Any]] = []
        for path, value in level:
            if isinstance(value, Mapping):
                for key, item in value.items():
                    where = f"{path}.{key}" if path else str(key)
                    if isinstance(item, Mapping):
                        deeper.append((where, item))
                    elif item is not None and not isinstance(item, list | tuple) and str(item) == subject:
                        return where
        level = deeper
    return ""


def _shown(value: Any) -> str:
    """A subject as an error shows it: control characters escaped, at most 40 characters."""
    if value is None:
        return ""
    text = repr(str(value))[1:-1] if not _plain(str(value)) else str(value)
    return text if len(text) <= 40 else text[:40] + "…"
