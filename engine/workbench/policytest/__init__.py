"""``charter test``: policy tests written in YAML by compliance officers, and rule coverage.

A test file (``policies/tests/*.yaml``; the format is documented in docs/testing.md) holds
cases. A *decision case* gives a domain and its facts (inline, or an example customer by id
with some fields overridden) and what the decision must show: outputs (a mapping checks
only the keys it names), rules that must or must not fire, notes, or the bad fact it must
be refused for. A *distribution case* evaluates a whole population and pins the share of
each value of an output (``high: 0.20``), which is how percentile figures are tested.

Stages, each feeding the next, each in its own module:

1. ``format.load_suite``: read every test file (safe YAML, node locations kept), check it
   against ``SCHEMA`` and the rules a schema cannot say; every mistake is located
   ``file:line:col`` like a policy error, and nothing runs until every file is right (exit 2);
2. ``workspace.Workspace``: one engine per policy directory, example records and population
   snapshots read once and cached (``reference_errors`` checks what needs them);
3. ``run.run_case``: decide, compare, and keep the fired rules (coverage) and, for a failure,
   the rules and trace steps that decided the outputs that did not match;
4. reports: text (one block per failure, a summary), ``--junit``, ``--json`` (``report``),
   coverage (``coverage``).

``command`` registers ``charter test`` and wires the stages; ``values`` writes values back
as the officer reads them.
"""

from __future__ import annotations

from engine.workbench.policytest.command import add_command, measure_coverage
from engine.workbench.policytest.format import SCHEMA, Case, SuiteFile, load_suite
from engine.workbench.policytest.report import json_report, junit
from engine.workbench.policytest.run import Problem, Result, run_case
from engine.workbench.policytest.workspace import Workspace, reference_errors

__all__ = [
    "SCHEMA",
    "Case",
    "Problem",
    "Result",
    "SuiteFile",
    "Workspace",
    "add_command",
    "json_report",
    "junit",
    "load_suite",
    "measure_coverage",
    "reference_errors",
    "run_case",
]
