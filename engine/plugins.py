"""The plugin manager: built-in plugins, then third-party ones from the ``charter`` entry-point
group, then any the host application registers in code.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pluggy

from engine import hookspecs
from engine.core.expr.functions import BUILTIN_NAMES as BUILTIN_FUNCTIONS
from engine.errors import PluginError

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
    """A content detector: ``func(text) -> bool``, pure (no clock, no I/O)."""

    name: str
    func: Callable[[str], bool]
    description: str = ""
    version: str = "1"
    plugin: str = ""


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
                }
            )
        return out


BUILTIN_PLUGINS = (
    "charter_plugins.scorers",
    "charter_plugins.detectors",
    "charter_plugins.storage",
    "charter_plugins.events",
)
_HOOKS: tuple[tuple[str, type], ...] = (
    ("charter_scorers", ScorerSpec),
    ("charter_detectors", DetectorSpec),
    ("charter_functions", FunctionSpec),
    ("charter_event_backends", EventBackendSpec),
)


def plugin_manager(
    extra: Sequence[object] = (), *, builtins: Sequence[str] = BUILTIN_PLUGINS, entry_points: bool = True
) -> pluggy.PluginManager:
    """A plugin manager with the built-in plugins, then the ``charter`` entry points, then ``extra``."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in builtins:
        pm.register(importlib.import_module(name), name=name)
    if entry_points:
        pm.load_setuptools_entrypoints(hookspecs.PROJECT)
    for plugin in extra:
        pm.register(plugin)
    pm.check_pending()
    return pm


def build_registry(
    extra: Sequence[object] = (), *, builtins: Sequence[str] = BUILTIN_PLUGINS, entry_points: bool = True
) -> Registry:
    """Load the built-in plugins, then the ``charter`` entry points, then ``extra`` (host code)."""
    pm = plugin_manager(extra, builtins=builtins, entry_points=entry_points)
    problems: list[PluginError] = []
    found: dict[str, dict[str, Any]] = {}
    for hook, kind in _HOOKS:
        found[hook] = _collect(pm, hook, kind, problems)
    names = [pm.get_name(p) or repr(p) for p in pm.get_plugins()]
    functions = found["charter_functions"]
    for name in [n for n in functions if n in BUILTIN_FUNCTIONS or not _types_known(functions[n])]:
        spec = functions.pop(name)
        problems.append(
            PluginError(
                f"function `{name}` of plugin `{spec.plugin}` "
                + ("has the name of a built-in function" if name in BUILTIN_FUNCTIONS else "declares an unknown type"),
                plugin=spec.plugin,
                code="X004",
                hint="rename it"
                if name in BUILTIN_FUNCTIONS
                else "types are int, double, string, bool, timestamp, duration",
            )
        )
    return Registry(
        found["charter_scorers"],
        found["charter_detectors"],
        sorted(names),
        problems,
        functions,
        found["charter_event_backends"],
    )


TYPE_NAMES = ("int", "double", "string", "bool", "timestamp", "duration")


def _types_known(spec: FunctionSpec) -> bool:
    return all(t in TYPE_NAMES for t in (*spec.params, spec.result))


def _collect(pm: pluggy.PluginManager, hook: str, kind: type, problems: list[PluginError]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    what = kind.__name__.replace("Spec", "").lower()
    for impl in getattr(pm.hook, hook).get_hookimpls():
        plugin = pm.get_name(impl.plugin) or repr(impl.plugin)
        try:
            specs: Any = impl.function()
        except Exception as exc:  # a plugin's own failure: reported by name, the others keep working
            problems.append(PluginError(f"plugin `{plugin}` failed in `{hook}`: {exc}", plugin=plugin, code="X001"))
            continue
        if specs is None:
            continue
        if not isinstance(specs, (list, tuple)) or not all(isinstance(s, kind) for s in specs):
            problems.append(
                PluginError(
                    f"plugin `{plugin}` returned something other than a list of {what}s from `{hook}`",
                    plugin=plugin,
                    code="X002",
                    hint=f"return a list of `{kind.__name__}`",
                )
            )
            continue
        for spec in specs:
            if spec.name in out:
                problems.append(
                    PluginError(
                        f"{what} `{spec.name}` is provided by both `{out[spec.name].plugin}` and `{plugin}`",
                        plugin=plugin,
                        code="X003",
                        hint="uninstall or rename one of them; the first one is used",
                    )
                )
                continue
            out[spec.name] = dataclasses.replace(spec, plugin=plugin)
    return out
