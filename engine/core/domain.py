"""The one unit the engine knows: a policy ``Domain``.

The core never imports a concrete domain. Domains arrive through the ``charter_domains``
hook (``engine.hookspecs``), the five built-in ones (``engine.domains``) through the same
hook as a third-party package's; the loaded ones are ``Registry.domains``, by kind. Every
part of Charter that needs to know something about a kind of policy asks its ``Domain``:

* the pipeline: its schema sections (``schema_extra``, ``shared``, ``required``), its
  semantic ``check`` (against the small ``CheckContext`` below), ``cross_check`` against
  the other loaded policies, and ``build`` into a ``Runner``;
* the workbench: the rules a decision can name as fired (``rules``: coverage, what-if),
  the canonical key order (``sections``, ``key_order``: ``charter fmt``), the lists whose
  order decides (``ordered``: ``charter diff``), its own lint checks (``lint``);
* the decision log: which fields of a record are sensitive (``field_classifier``, for the
  domain that classifies data) and what the facts it reads are (``Runner.shape``);
* the command line and the service: which customer a request is about (``customer_id``) and
  what to decide about one customer (``customer_requests``).

A ``Runner`` decides one request: ``run(facts, now, upstream, explain)`` with the decisions
of the domains it ``uses:`` already made, returning a ``DomainResult``. It raises
``FactErrors`` for a request that breaks the domain's request shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from engine.core.decision import Decision, FiredRule, TraceStep
    from engine.core.expr import Node, Type
    from engine.core.load import DocPath, Document
    from engine.core.model import Policy
    from engine.errors import Location, PolicyError
    from engine.hookspecs import Registry


@dataclass(frozen=True)
class Kpi:
    """One supervision figure a domain's decisions give: ``output`` counted per period, or by
    ``by`` (a request field's dotted path, or ``outputs.NAME``; ``month:`` before it cuts a
    timestamp to its month). ``only``: the outcomes counted (the others left out). ``rate``:
    the value whose share of each row is given, and per period too."""

    key: str
    title: str
    output: str
    by: str = ""
    only: tuple[str, ...] = ()
    rate: str = ""
    note: str = ""
    domain: str = ""  # the kind whose decisions it counts: set where the figures are gathered


@dataclass
class DomainResult:
    """What a domain's runner decided: outputs, the rules that decided, notes and trace."""

    outputs: dict[str, Any]
    fired: list[FiredRule]
    notes: list[str] = field(default_factory=list)
    trace: list[TraceStep] | None = None
    subject: str | None = None  # who the decision is about, when not the request's `id`


class Runner(Protocol):
    def __call__(
        self, facts: Mapping[str, Any], now: datetime, upstream: Mapping[str, Decision], explain: bool
    ) -> DomainResult: ...


class CheckContext(Protocol):
    """What a domain's ``check`` gets: the document, located errors and the expression checker."""

    doc: Document
    data: dict[str, Any]
    registry: Registry

    def error(
        self,
        message: str,
        path: DocPath,
        code: str,
        hint: str | None = None,
        *,
        key: bool = False,
        related: Location | None = None,
    ) -> None: ...

    def claim_id(self, rule_id: str, path: DocPath) -> None: ...

    def expression(
        self,
        path: DocPath,
        text: Any,
        want: Type | None,
        allowed_roots: Sequence[str] | None = None,
        *,
        env: Mapping[str, Type] | None = None,
    ) -> Node | None: ...


@dataclass(frozen=True, order=True)
class RuleInfo:
    """One rule of a policy that a decision can name as fired: its id, where it is written and
    what kind of rule it is, in the officer's words (``rule``, ``waiver``, ``ladder step``)."""

    file: str
    line: int
    id: str
    kind: str


CustomerRequests = Callable[[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]], Any]


@dataclass(frozen=True, eq=False)  # one object per registered domain: compared and hashed by identity
class Domain:
    """A kind of policy file: what it may contain, how it is checked and built, and what the
    rest of Charter may ask of it. Only ``kind`` and ``description`` are required: a domain
    of the shared parts alone (facts, scores, outputs, decision tables) needs nothing else."""

    kind: str
    description: str
    schema_extra: dict[str, Any] = field(default_factory=dict)
    shared: bool = True  # whether facts/scores/outputs/tables are allowed (and `outputs` required)
    required: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()  # domains whose decisions this one reads (others are only recorded)
    check: Callable[[CheckContext], Any] | None = None
    build: Callable[[Policy, Registry], Runner] | None = None
    cross_check: Callable[[Policy, Mapping[str, Policy]], list[PolicyError]] | None = None
    # the rules of its own sections a decision can name as fired (shared steps are the core's);
    # a domain with a runner and no ``rules`` cannot be measured by coverage, and is reported so
    rules: Callable[[Policy], Sequence[RuleInfo]] | None = None
    sections: tuple[str, ...] = ()  # its top-level sections in canonical order (charter fmt)
    key_order: Mapping[str, str] = field(default_factory=dict)  # "rules[]": "id effect ..." (charter fmt)
    ordered: Mapping[str, str] = field(default_factory=dict)  # top-level list whose order decides: why
    ordered_within: Mapping[str, str] = field(default_factory=dict)  # list: the key its order is kept within
    period_words: Mapping[str, str] = field(default_factory=dict)  # a duration unit's word, when not the usual
    lint: Callable[[Any, Policy], None] | None = None  # its own ``charter lint`` checks (``engine.analysis``)
    # for the domain that classifies data: ``field_classifier(runner)(field name, value)`` is
    # true when a value of that field must be sealed in the decision log
    field_classifier: Callable[[Any], Callable[[str, Any], bool]] | None = None
    classes: Callable[[Policy], tuple[str, ...]] | None = None  # the data classes it gives fields
    # ``POST /v1/customer`` (charter serve): what it decides about one customer, from their facts,
    # the caller's body and the outputs decided so far by the domains before it (dependency
    # order): None (nothing), one request, or a list of requests (one decision each)
    customer_requests: CustomerRequests | None = None
    customer_reads: tuple[str, ...] = ()  # outputs of other domains it reads there: asked after the others
    # the customer a request is about (``charter explain --customer``), when not the request's ``id``
    customer_of: Callable[[Mapping[str, Any]], Any] | None = None
    # the output that says the decision's outcome in one word (log searches, /metrics, dashboards)
    outcome: str = ""
    # what would have changed a decision made with a trace (``charter explain``): lines in words
    # (``engine.audit.whynot``); domains of tables and bands get theirs from the shared model
    why_not: Callable[[Policy, Mapping[str, Any], Decision], Sequence[str]] | None = None
    kpis: tuple[Kpi, ...] = ()  # the supervision figures its decisions give (the workbench's trends)
    # what the requester may see of the request's data under a decision (``Engine.release``):
    # ``release(decision, request, hash_key)``, e.g. access's record with denied fields left out
    # and masked ones masked
    release: Callable[[Decision, Mapping[str, Any], bytes | None], Any] | None = None
    plugin: str = ""  # set by the plugin manager

    @property
    def name(self) -> str:
        return self.kind

    def customer_id(self, request: Mapping[str, Any]) -> str | None:
        """The id of the customer ``request`` is about, as text: ``customer_of``'s answer, or the
        request's own ``id``; None when it names none."""
        found = self.customer_of(request) if self.customer_of is not None else request.get("id")
        return None if found is None else str(found)


def providing(domains: Mapping[str, Domain], policies: Mapping[str, Any], capability: str) -> str | None:
    """The kind of a loaded policy whose domain has ``capability`` (a ``Domain`` field that is
    set, such as ``field_classifier``), or None: how a consumer finds, say, the domain that
    classifies data without naming it."""
    for kind in policies:
        domain = domains.get(kind)
        if domain is not None and getattr(domain, capability) is not None:
            return kind
    return None


def requests_about(
    customer: Mapping[str, Any], body: Mapping[str, Any], domains: Mapping[str, Domain], earlier: Mapping[str, Any]
) -> Iterator[tuple[str, Any, bool]]:
    """Everything to decide about one customer: (kind, request, one of many) for each of
    ``domains`` (in dependency order) that builds requests from a customer's facts
    (``Domain.customer_requests``), those that read other domains' outputs last. ``earlier``
    holds the outputs decided so far: the caller adds each decision's outputs before asking
    for the next. A domain's ``ValueError`` (a wrong ``body``) is raised as it is.
    ``POST /v1/customer`` decides these, and so does ``charter diff --facts`` over customers."""
    ordered = sorted(domains.items(), key=lambda item: bool(item[1].customer_reads))  # readers last, stable
    for kind, domain in ordered:
        if domain.customer_requests is None:
            continue
        made = domain.customer_requests(customer, body, earlier)
        if isinstance(made, list):
            for request in made:
                yield kind, request, True
        elif made is not None:
            yield kind, made, False
