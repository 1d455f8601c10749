"""``charter lint``: mistakes a policy can load with, found before anything runs.

``lint_policies`` analyses one loaded policy set (the compiled policies by domain) and
returns ``Finding``s, each with a stable code (docs/lint.md lists them all), a severity,
a located one-line message, the other places involved and a hint. Policy files that do not
load are reported by ``lint_paths`` as their load errors (``P...``), with the second place
involved named where the error itself names only one.

The checks, by section:

* tables (``L001``–``L007``): inputs no row covers, rules an earlier or higher-priority rule
  always beats, conditions that are always false or true, comparisons a declaration
  decides, duplicate rules, listed values an input never takes;
* retention (``L010``–``L015``): legal-hold fields that cannot hold, clocks keyed on a hold,
  disposals a keep rule always postpones, disposal at creation, record types no rule covers;
* access (``L020``–``L022``): grants a deny always overrides, roles granted nothing, expired
  waivers (only with an explicit ``now``: lint never reads the clock);
* declarations (``L030``–``L032``): facts nothing reads, outputs and output values no rule sets;
* messages (``L040``, ``engine.analysis.figures``): a message stating another figure than its rule.

Conditions are read by ``engine.analysis.conditions``, which only claims what holds for
every customer.

The modules: ``findings`` (the ``Finding`` type, dedupe and rendering), ``values`` and
``conditions`` (the condition analyser), ``tables`` (decision-table checks), ``domains``
(retention, access and declaration checks) and ``command`` (the entry points and the
``charter lint`` command).
"""

from __future__ import annotations

from engine.analysis.findings import Finding, Related, dedupe
from engine.analysis.tables import policy_space
from engine.workbench.lint.command import add_command, lint_bundle, lint_paths, lint_policies

__all__ = ["Finding", "Related", "add_command", "dedupe", "lint_bundle", "lint_paths", "lint_policies", "policy_space"]
