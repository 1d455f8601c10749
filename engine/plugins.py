"""The plugin manager: built-in plugins, then third-party ones from the ``charter`` entry-point
group, then any the host application registers in code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from engine import hookspecs
from engine.errors import PluginError

ScorerFunc = Callable[[Mapping[str, Any], Mapping[str, Any]], float]


@dataclass(frozen=True)
class ScorerSpec:
    """A scorer's declaration, apart from its implementation.

    ``reads`` maps each fact the scorer reads to its type (``number``, ``integer``,
    ``string``, ``boolean``, ``timestamp``); ``args`` maps each argument a policy may pass
    to its default. ``func(facts, args)`` must be pure: no clock, no randomness, no I/O.
    """

    name: str
    func: ScorerFunc
    reads: Mapping[str, str]
    args: Mapping[str, float] = field(default_factory=dict)
    version: str = "1"
    description: str = ""
    plugin: str = ""


@dataclass(frozen=True)
class Registry:
    """What the loaded plugins provide, by name."""

    scorers: Mapping[str, ScorerSpec]
    plugins: Sequence[str]


BUILTIN_PLUGINS = ("charter_plugins.scorers",)


def build_registry(
    extra: Sequence[object] = (), *, builtins: Sequence[str] = BUILTIN_PLUGINS, entry_points: bool = True
) -> Registry:
    """Load plugins and collect what they provide. Duplicate names raise ``PluginError``."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in builtins:
        module = __import__(name, fromlist=["_"])
        pm.register(module, name=name)
    if entry_points:
        pm.load_setuptools_entrypoints(hookspecs.PROJECT)
    for plugin in extra:
        pm.register(plugin)
    pm.check_pending()
    scorers: dict[str, ScorerSpec] = {}
    for impl in pm.hook.charter_scorers.get_hookimpls():
        plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
        try:
            specs: Any = impl.function()
        except Exception as exc:  # a plugin's own failure is reported by plugin name
            raise PluginError(f"plugin `{plugin_name}` failed in `charter_scorers`: {exc}", plugin=plugin_name) from exc
        for spec in specs or ():
            if not isinstance(spec, ScorerSpec):
                raise PluginError(f"plugin `{plugin_name}` returned something that is not a scorer", plugin=plugin_name)
            if spec.name in scorers:
                other = scorers[spec.name].plugin
                raise PluginError(
                    f"scorer `{spec.name}` is provided by both `{other}` and `{plugin_name}`",
                    plugin=plugin_name,
                    hint="uninstall or rename one of them",
                )
            scorers[spec.name] = ScorerSpec(
                spec.name, spec.func, spec.reads, spec.args, spec.version, spec.description, plugin_name
            )
    names = [pm.get_name(p) or repr(p) for p in pm.get_plugins()]
    return Registry(scorers=scorers, plugins=sorted(names))


def module_plugin(module: ModuleType) -> ModuleType:
    """Identity helper so host code reads ``build_registry([module_plugin(my_module)])``."""
    return module
