"""The plugin manager: built-in plugins, then third-party ones from the ``charter`` entry-point
group, then any the host application registers in code.

A third-party package that fails to load (its module does not import, raises while it is
imported, or its hooks do not fit) is skipped: the failure is a ``PluginError`` (X007) in
``Registry.problems``, logged once as a warning on the ``charter.plugins`` logger (printed on
stderr when nothing configures logging), and every other plugin keeps working. In strict mode
(``build_registry(strict=True)``, or the environment variable ``CHARTER_STRICT_PLUGINS=1``)
any plugin problem refuses to start instead (X008).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata
import logging
import os
import re
import traceback
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


STRICT_ENV = "CHARTER_STRICT_PLUGINS"  # set to 1: a plugin that fails to load refuses to start
_LOG = logging.getLogger("charter.plugins")
_warned: set[str] = set()  # each load failure is logged once per process, however often it recurs


def plugin_manager(
    extra: Sequence[object] = (),
    *,
    builtins: Sequence[str] = BUILTIN_PLUGINS,
    entry_points: bool = True,
    problems: list[PluginError] | None = None,
) -> pluggy.PluginManager:
    """A plugin manager with the built-in plugins, then the ``charter`` entry points, then ``extra``.

    An entry point that fails to load is skipped and reported in ``problems`` (X007); it never
    stops the others. The built-ins and ``extra`` are Charter's and the host's own code: their
    failures raise."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in builtins:
        pm.register(importlib.import_module(name), name=name)
    if entry_points:
        failures = load_entry_points(pm)
        if problems is not None:
            problems.extend(failures)
        else:  # nobody collects them: said here
            for failure in failures:
                _warn(failure)
    for plugin in extra:
        pm.register(plugin)
    pm.check_pending()
    return pm


def load_entry_points(pm: pluggy.PluginManager, group: str = hookspecs.PROJECT) -> list[PluginError]:
    """Register each entry point of ``group`` in turn; one that does not import, raises while it
    is imported or registered, or implements a hook Charter does not have, is left out and
    returned as a ``PluginError`` (X007) naming its distribution and entry point. So is a
    distribution whose ``entry_points.txt`` cannot be read."""
    failures: list[PluginError] = []
    for dist in _distributions():
        try:
            eps = [ep for ep in dist.entry_points if ep.group == group]
        except Exception as exc:  # a malformed entry_points.txt: importlib.metadata.entry_points() would raise for all
            label = _label(dist)
            failures.append(
                PluginError(
                    f"the entry points of `{label}` cannot be read: {exc or 'an error with no message'}",
                    plugin=label,
                    code="X007",
                    hint=f"reinstall or uninstall `{label.split(' ')[0]}`; the other plugins keep working",
                )
            )
            continue
        for ep in eps:
            if pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
                continue
            step = "import"
            try:
                plugin = ep.load()
                step = "register"
                pm.register(plugin, name=ep.name)
                pm.check_pending()  # a hook Charter does not declare: this plugin's, as the others passed
            except Exception as exc:  # any failure of third-party code: reported by name, the others keep working
                if pm.has_plugin(ep.name):
                    pm.unregister(name=ep.name)
                failures.append(_load_failure(ep, _label(dist), step, exc))  # named only when it failed: a cost
    return failures


def _distributions() -> list[importlib.metadata.Distribution]:
    """The installed distributions, each once (the first on ``sys.path``), as ``entry_points()``
    sees them. Named by their ``.dist-info`` directory where it says (as ``entry_points()`` does:
    reading every ``METADATA`` would cost startup time), else by their metadata."""
    out: list[importlib.metadata.Distribution] = []
    seen: set[str] = set()
    for dist in importlib.metadata.distributions():
        try:
            name = getattr(dist, "_normalized_name", None) or dist.metadata["Name"]
        except Exception:  # unreadable metadata: still tried, under no name
            name = None
        key = re.sub(r"[-_.]+", "_", name).lower() if isinstance(name, str) else None
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        out.append(dist)
    return out


def _label(dist: importlib.metadata.Distribution) -> str:
    """``name version`` of a distribution, as its metadata says."""
    try:
        name, version = dist.metadata["Name"], dist.version
    except Exception:  # metadata without a name or version
        name, version = None, None
    if not name:
        return "an unnamed distribution"
    return f"{name} {version}" if version else str(name)


def _load_failure(ep: importlib.metadata.EntryPoint, dist: str, step: str, exc: Exception) -> PluginError:
    where = _where(exc)
    if isinstance(exc, SyntaxError):
        what = f"its code does not compile: {exc.msg}"
    elif isinstance(exc, ImportError) and step == "import":
        what = f"it cannot be imported: {exc}"
    elif isinstance(exc, pluggy.PluginValidationError):
        what = "its hooks do not fit Charter's: " + str(exc).strip().splitlines()[-1]
    elif step == "import":
        what = f"it raised while being imported: {exc or 'an error with no message'}"
    else:
        what = f"it raised while being registered: {exc or 'an error with no message'}"
    return PluginError(
        f"plugin `{ep.name}` from `{dist}` (entry point `{ep.value}`) failed to load"
        + (f" at `{where}`" if where else "")
        + f": {what}",
        plugin=ep.name,
        code="X007",
        hint=f"fix or uninstall `{dist.split(' ')[0]}`; the other plugins keep working"
        f" (set {STRICT_ENV}=1 to refuse to start instead)",
    )


def _where(exc: BaseException) -> str:
    """``file:line`` where the failure happened in the plugin's own code, when that is known."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}" if exc.lineno else exc.filename
    machinery = (os.path.dirname(importlib.__file__), os.path.dirname(pluggy.__file__), __file__)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(("<", *machinery))]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""


def _warn(problem: PluginError) -> None:
    if problem.message not in _warned:
        _warned.add(problem.message)
        _LOG.warning(
            "warning: %s [%s]%s", problem.message, problem.code, f"\n  help: {problem.hint}" if problem.hint else ""
        )


def strict_from_env() -> bool:
    """Whether ``CHARTER_STRICT_PLUGINS`` asks for strict plugin loading (1, true, yes, on)."""
    return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def build_registry(
    extra: Sequence[object] = (),
    *,
    builtins: Sequence[str] = BUILTIN_PLUGINS,
    entry_points: bool = True,
    strict: bool | None = None,
) -> Registry:
    """Load the built-in plugins, then the ``charter`` entry points, then ``extra`` (host code).

    A plugin that fails (to load, in a hook, with a wrong result or a name taken) is left out
    and reported in ``problems``. ``strict`` (default: ``CHARTER_STRICT_PLUGINS``) raises a
    ``PluginError`` (X008) naming every problem instead."""
    problems: list[PluginError] = []
    pm = plugin_manager(extra, builtins=builtins, entry_points=entry_points, problems=problems)
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
    if problems and (strict_from_env() if strict is None else strict):
        first, rest = problems[0], problems[1:]
        raise PluginError(
            f"strict plugin loading refuses to start: {first.message} [{first.code}]"
            + (f" (and {len(rest)} more, from " + ", ".join(f"`{p.plugin}`" for p in rest) + ")" if rest else ""),
            plugin=first.plugin,
            code="X008",
            hint="fix or uninstall the plugin"
            + (f"; `charter plugins` lists every problem, with {STRICT_ENV} unset" if rest else "")
            + f"; without strict loading ({STRICT_ENV} unset) a broken plugin is skipped with a warning",
        )
    for problem in problems:
        if problem.code == "X007":  # the others show when a policy names what the plugin would provide
            _warn(problem)
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
