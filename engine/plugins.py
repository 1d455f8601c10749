"""The plugin manager: built-in plugins, then third-party ones from the ``charter`` entry-point
group, then any the host application registers in code.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Sequence
from typing import Any

import pluggy

from engine import hookspecs
from engine.core.domain import Domain
from engine.core.expr.functions import BUILTIN_NAMES as BUILTIN_FUNCTIONS
from engine.errors import PluginError, did_you_mean
from engine.hookspecs import (
    Alert,
    DetectorSpec,
    EventBackendSpec,
    EventMatcher,
    EventPattern,
    FunctionSpec,
    Registry,
    ScorerFunc,
    ScorerSpec,
)
from engine.storage import StorageError, Store

__all__ = [  # the declarations live with the hook specs; importable from here as before
    "Alert",
    "DetectorSpec",
    "Domain",
    "EventBackendSpec",
    "EventMatcher",
    "EventPattern",
    "FunctionSpec",
    "Registry",
    "ScorerFunc",
    "ScorerSpec",
    "build_registry",
    "installed",
    "open_store",
    "plugin_manager",
]

BUILTIN_PLUGINS = (
    "engine.domains",
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
    ("charter_domains", Domain),
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
        found["charter_domains"],
    )


@functools.cache
def installed() -> Registry:
    """The installed plugins (built-ins and entry points), loaded once: what the workbench asks
    of a domain (its key order, the lists whose order decides) when no engine is at hand."""
    return build_registry()


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


def open_store(url: str, plugins: Sequence[object] = ()) -> Store:
    """The store for ``url`` from the first plugin whose ``charter_storage`` handles its scheme."""
    store: Store | None = plugin_manager(plugins).hook.charter_storage(url=url)
    if store is None:
        scheme = url.split(":", 1)[0]
        known = ["sqlite", "postgresql", "jsonl"]
        raise StorageError(
            f"no storage backend for `{scheme}:` URLs",
            code="D002",
            hint=did_you_mean(scheme, known) or "use sqlite:///file.db, postgresql://... or jsonl:///dir",
        )
    return store
