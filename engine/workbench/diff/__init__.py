"""``charter diff OLD_DIR NEW_DIR``: what an edit to the policies changes, in plain words.

Not a text diff. Both directories are loaded and validated (a broken one gives its located
policy errors), their files paired by ``kind``, and each pair compared as data:

* policy-level keys (title, owner, clause, effective_from, mode, ``uses``, ...);
* declarations kept by name in a mapping (facts, scores, outputs, roles, calendars, ...);
* rules: every mapping with an ``id`` in a list anywhere in the document (table rows,
  bands, classes, access rules and waivers, clocks, patterns), or, in a list without ids,
  a unique ``level``/``tier`` (ladder steps, priorities). Rules match by id wherever they
  sit, so a rule that moved to another table is reported as moved, not removed and added;
  where order decides (``hit: first`` tables, classification classes, ...) a new order is
  reported too.

Conditions and table cells are compared by meaning (``customer.x>3`` is ``customer.x > 3``),
so comment, quoting and layout edits give "no semantic change". With ``--facts`` both
policy sets decide for every customer or request and the changed decisions are counted.

The package, by stage: ``structure`` takes a document apart and compares values by meaning,
``words`` says values and changes in words, ``changes`` pairs the files and lists the
changes, ``impact`` counts the decisions they change (``--facts``), ``command`` renders the
report and registers the command.
"""

from __future__ import annotations

from engine.workbench.diff.changes import Change, Report, diff_directories
from engine.workbench.diff.command import add_command
from engine.workbench.diff.impact import Impact, measure_impact, measure_impacts

__all__ = ["Change", "Impact", "Report", "add_command", "diff_directories", "measure_impact", "measure_impacts"]
