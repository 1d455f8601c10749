"""Charter's plugin hooks (pluggy). One template per hook: what it is for, when it is called,
its parameters, what to return, what ``None`` means and whether the first result wins.

Built-in scorers are plugins too (``charter_plugins``), registered through these same hooks.
Hooks only ever grow by adding arguments: pluggy lets an implementation take fewer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from engine.plugins import DetectorSpec, EventBackendSpec, FunctionSpec, ScorerSpec
    from engine.storage import Store

PROJECT = "charter"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


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
