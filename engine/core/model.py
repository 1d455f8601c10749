"""The checked policy: what ``validate`` hands to ``compile``.

Every object keeps the ``Location`` of the YAML it came from, so later stages (compile,
lint, decisions) can point back at the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.core.expr import Node, Type
from engine.errors import Location

FACT_TYPES = ("string", "integer", "number", "boolean", "timestamp", "list")


@dataclass(frozen=True)
class FactDecl:
    name: str
    type: str
    location: Location
    items: str | None = None
    required: bool = False
    nullable: bool = False
    default: Any = None
    has_default: bool = False
    min: float | None = None
    max: float | None = None
    allowed: tuple[Any, ...] | None = None
    max_length: int | None = None
    sensitive: bool = False
    description: str = ""


@dataclass(frozen=True)
class ScoreDecl:
    name: str
    location: Location
    scorer: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    expr: Node | None = None
    expr_text: str = ""
    description: str = ""


@dataclass(frozen=True)
class OutputDecl:
    name: str
    type: str
    location: Location
    values: tuple[Any, ...] | None = None
    description: str = ""


@dataclass(frozen=True)
class Cell:
    """One unary test of a decision-table row: ``op`` is any, eq, in, lt, le, gt, ge, ne or range."""

    op: str
    value: Any = None
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    low_closed: bool = True
    high_closed: bool = False
    text: str = ""


@dataclass(frozen=True)
class RuleDecl:
    id: str
    location: Location
    then: dict[str, Any]
    when: Node | None = None
    when_text: str = ""
    match: dict[str, Cell] = field(default_factory=dict)
    message: str = ""
    clause: str = ""


@dataclass(frozen=True)
class TableDecl:
    id: str
    hit: str
    outputs: tuple[str, ...]
    rules: tuple[RuleDecl, ...]
    location: Location
    inputs: dict[str, Node] = field(default_factory=dict)
    input_texts: dict[str, str] = field(default_factory=dict)
    default: dict[str, Any] | None = None
    clause: str = ""


@dataclass(frozen=True)
class BandDecl:
    id: str
    value: Any
    low: float
    high: float
    location: Location
    message: str = ""
    clause: str = ""


@dataclass(frozen=True)
class BandsDecl:
    id: str
    output: str
    score: str
    bands: tuple[BandDecl, ...]
    location: Location
    clause: str = ""

    @property
    def outputs(self) -> tuple[str, ...]:
        return (self.output,)


Step = TableDecl | BandsDecl


@dataclass(frozen=True)
class UseDecl:
    """``uses: {classification: resource.record}``: decide ``domain`` on the facts at ``path`` first."""

    domain: str
    path: tuple[str, ...]
    location: Location


@dataclass(frozen=True)
class Policy:
    """One checked policy file. ``steps`` are in evaluation (dependency) order."""

    kind: str
    id: str
    path: str
    digest: str
    location: Location
    facts: dict[str, FactDecl]
    scores: dict[str, ScoreDecl]
    outputs: dict[str, OutputDecl]
    steps: tuple[Step, ...]
    env: dict[str, Type] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    uses: dict[str, UseDecl] = field(default_factory=dict)
    extra: Any = None  # a domain's own model (``engine.domains``), when it has one

    def percentiles(self) -> dict[str, tuple[float, ...]]:
        """The cut points this policy needs from a population snapshot, by score name."""
        need: dict[str, set[float]] = {}
        for step in self.steps:
            if isinstance(step, BandsDecl):
                cuts = need.setdefault(step.score, set())
                cuts.update(b.low for b in step.bands if b.low > 0)
        return {score: tuple(sorted(cuts)) for score, cuts in need.items()}
