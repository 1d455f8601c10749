"""Static analysis of checked policies: the library ``charter lint`` and the domains' own
lint checks are written with.

* ``values``: sets of values and intervals a variable can take;
* ``conditions``: a condition analysed into the cases where it holds, under declared bounds
  and absent-fact semantics (checked against the real evaluator by a property test);
* ``tables``: the decision-table checks (gaps, rules earlier rules always beat, conditions
  always true or false) and the row model domains reuse;
* ``findings``: a finding (code, severity, location, message, hint, related places) and the
  context checks add them to.

It sits above ``engine.core`` and below the domains and the workbench.
"""
