"""Charter's plugin hooks (pluggy), and the types plugins declare their extensions with.

One template per hook: what it is for, when it is called, its parameters, what to return,
what ``None`` means and whether the first result wins. Built-in scorers, detectors, event
backends, stores and the five policy domains are plugins too (``charter_plugins``,
``engine.domains``), registered through these same hooks. Hooks only ever grow by adding
arguments: pluggy lets an implementation take fewer.

The declarations (``ScorerSpec``, ``DetectorSpec``, ``FunctionSpec``, ``EventBackendSpec``,
``engine.core.domain.Domain``) state names and types apart from the implementation, so a
policy's references are checked at load, before anything runs. ``Registry`` is what the
loaded plugins provide, by name (built by ``engine.plugins.build_registry``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pluggy

from engine.errors import PluginError

if TYPE_CHECKING:
    from engine.core.domain import Domain
    from engine.storage import Store

PROJECT = "charter"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --------------------------------------------------------------------------------------------
# Declarations: what a plugin's hooks return
# --------------------------------------------------------------------------------------------

ScorerFunc = Callable[..., float]  # func(facts, args, now) or, ranking scorers, func(facts, args, now, stats)


@dataclass(frozen=True)
class ScorerSpec:
    """A scorer's declaration, apart from its implementation.

    ``reads`` maps each fact the scorer reads to its type (``number``, ``integer``,
    ``string``, ``boolean``, ``timestamp``); ``args`` maps each argument a policy may pass
    to its default. ``func(facts, args, now)`` must be pure: no clock (``now`` is the
    caller's time of decision), no randomness, no I/O.
    """

    name: str
    func: ScorerFunc
    reads: Mapping[str, str]
    args: Mapping[str, float] = field(default_factory=dict)
    version: str = "1"
    description: str = ""
    plugin: str = ""
    # A scorer that ranks customers against the population declares the per-customer
    # metrics it ranks (``metrics(facts, now) -> {name: number}``) and the percentiles it
    # needs; population snapshots store those cut points, and ``func`` then receives them
    # as a fourth argument: ``func(facts, args, now, {metric: {percentile: cut}})``.
    metrics: Callable[[Mapping[str, Any], datetime], Mapping[str, float]] | None = None
    percentiles: tuple[float, ...] = ()


@dataclass(frozen=True)
class DetectorSpec:
    """A content detector: ``func(text) -> bool``, pure (no clock, no I/O).

    ``screen``, optional, is a regular expression (Python ``re``, searched) that every text the
    detector accepts contains: a text it does not find is not given to ``func``. It is a
    necessary condition only, for speed; it never decides on its own (a screen that misses a
    text ``func`` accepts would lose that hit: the plugin's tests must prove it cannot).
    """

    name: str
    func: Callable[[str], bool]
    description: str = ""
    version: str = "1"
    plugin: str = ""
    screen: str = ""


@dataclass(frozen=True)
class EventPattern:
    """A churn early-warning pattern over a customer's events (escalation ``churn_patterns:``).

    Three forms: ``first`` alone (optionally ``score_at_most``); ``first`` then ``then``
    within ``within`` seconds, unless an ``unless`` event referring to the first (its
    ``ref`` is the first's id) arrived before the second; ``first`` with no ``absent`` event
    within ``within`` seconds after it, judged at the caller's ``now``.
    """

    id: str
    first: str
    then: str | None = None
    absent: str | None = None
    unless: str | None = None
    within: int | None = None
    score_at_most: float | None = None


@dataclass(frozen=True, order=True)
class Alert:
    """A pattern that matched: when (epoch seconds) and the ids of the events that made it."""

    at: int
    pattern: str
    events: tuple[str, ...]


# events in time order: {"kind", "ts" (epoch seconds), "eid", "ref", "score"}; ``now`` in epoch seconds
EventMatcher = Callable[[Sequence[Mapping[str, Any]], int], list[Alert]]


@dataclass(frozen=True)
class EventBackendSpec:
    """An event-pattern backend: ``prepare(patterns, key) -> match(events, now) -> alerts``.

    ``key`` is unique to the policy version, for backends that keep named rule sets.
    """

    name: str
    prepare: Callable[[Sequence[EventPattern], str], EventMatcher]
    description: str = ""
    version: str = "1"
    plugin: str = ""


@dataclass(frozen=True)
class FunctionSpec:
    """An extra function for the condition language, declared with its types.

    ``params`` and ``result`` are type names: ``int``, ``double``, ``string``, ``bool``,
    ``timestamp``, ``duration``. ``method=True`` makes the first parameter the receiver
    (``customer.name.initials()``). ``func`` must be pure; an exception it raises makes the
    condition undefined.
    """

    name: str
    func: Callable[..., Any]
    params: tuple[str, ...]
    result: str
    method: bool = False
    description: str = ""
    version: str = "1"
    plugin: str = ""


@dataclass(frozen=True)
class Registry:
    """What the loaded plugins provide, by name, and what went wrong with the others.

    A plugin whose hook raises, returns the wrong type or reuses a name is reported in
    ``problems`` by plugin name and skipped; the others keep working.
    """

    scorers: Mapping[str, ScorerSpec]
    detectors: Mapping[str, DetectorSpec]
    plugins: Sequence[str]
    problems: Sequence[PluginError] = ()
    functions: Mapping[str, FunctionSpec] = field(default_factory=dict)
    event_backends: Mapping[str, EventBackendSpec] = field(default_factory=dict)
    domains: Mapping[str, Domain] = field(default_factory=dict)

    def describe(self) -> list[dict[str, Any]]:
        """Every plugin and what it provides (for ``charter plugins``)."""
        out = []
        for name in self.plugins:
            out.append(
                {
                    "plugin": name,
                    "scorers": sorted(s.name for s in self.scorers.values() if s.plugin == name),
                    "detectors": sorted(d.name for d in self.detectors.values() if d.plugin == name),
                    "functions": sorted(f.name for f in self.functions.values() if f.plugin == name),
                    "event_backends": sorted(b.name for b in self.event_backends.values() if b.plugin == name),
                    "domains": sorted(d.kind for d in self.domains.values() if d.plugin == name),
                }
            )
        return out


# --------------------------------------------------------------------------------------------
# Registration: called once, when a plugin manager is built, before any policy is loaded
# --------------------------------------------------------------------------------------------


@hookspec
def charter_scorers() -> list[ScorerSpec] | None:
    """Declare the scorers this plugin provides.

    For: named functions from a customer's facts to a number, used by policies as
    ``scores: {value: {scorer: NAME}}``.
    When: once per plugin manager, when it is built.
    Parameters: none.
    Return: a list of ``ScorerSpec``; each states its name, the facts it reads with their
    types (checked against the policy's fact declarations at load time) and the function.
    ``None`` means this plugin provides no scorers. Every plugin's results are used; a name
    given by two plugins is an error naming both.
    """


@hookspec
def charter_detectors() -> list[DetectorSpec] | None:
    """Declare the content detectors this plugin provides.

    For: recognising a kind of data by content (a national ID number, a bank card), used by
    the classification domain as ``detect: NAME``.
    When: once per plugin manager, when it is built.
    Parameters: none.
    Return: a list of ``DetectorSpec``; each names the detector and gives a pure function
    from a field's text to ``True`` when the text is that kind of data. ``None`` means this
    plugin provides no detectors. Every plugin's results are used; a name given by two
    plugins is an error naming both.
    """


@hookspec
def charter_functions() -> list[FunctionSpec] | None:
    """Declare extra functions for the condition language.

    For: calls in policy expressions beyond the built-in CEL functions, such as
    ``customer.name.initials()``.
    When: once per plugin manager, when it is built.
    Parameters: none.
    Return: a list of ``FunctionSpec``; each declares its parameter and result types, so a
    policy that calls it wrongly fails validation at its line. ``None`` means none. A name
    given by two plugins, or by a plugin and the language itself, is an error naming them.
    """


@hookspec
def charter_event_backends() -> list[EventBackendSpec] | None:
    """Declare the event-pattern backends this plugin provides.

    For: evaluating churn early-warning patterns over a customer's event history
    (escalation domain, ``churn_patterns:``); ``durable_rules`` is the built-in default.
    When: once per plugin manager, when it is built.
    Parameters: none.
    Return: a list of ``EventBackendSpec``; each names a backend and gives
    ``prepare(patterns, key)`` returning ``match(events, now) -> alerts``. Events arrive in
    time order with their own timestamps; a backend must use those and never a clock, so
    the same history always gives the same alerts. ``None`` means none. A name given by two
    plugins is an error naming both.
    """


@hookspec
def charter_domains() -> list[Domain] | None:
    """Declare the policy domains this plugin provides.

    For: a ``kind:`` of policy file with its own sections and semantics (tiering, access,
    ... are built in; a third-party package may add, say, marketing consent). The engine
    knows a domain only through ``engine.core.domain.Domain``: its schema, check, build,
    the rules it has, and what the workbench and the log ask of it.
    When: once per plugin manager, when it is built, before any policy is loaded.
    Parameters: none.
    Return: a list of ``Domain``. ``None`` means this plugin provides no domains. Every
    plugin's results are used; a kind given by two plugins is an error naming both (the
    first one is used).
    """


# --------------------------------------------------------------------------------------------
# Storage: called whenever a store is opened by URL
# --------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def charter_storage(url: str) -> Store | None:
    """Open the store a URL names, if this plugin handles its scheme.

    For: where decision records and content-addressed snapshots live.
    When: each time the engine or the CLI opens a store (``open_store(url)``).
    Parameters: ``url``, e.g. ``sqlite:///charter.db``, ``postgresql://host/db``, ``jsonl:///dir``.
    Return: an object with the ``engine.storage.Store`` methods. ``None`` means "not my
    scheme"; the first plugin that returns a store wins.
    """
