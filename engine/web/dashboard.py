"""``/ui/dashboard``: supervision figures from the decision log, as SVG bars and tables.

Nothing here knows a domain: for each domain in the log it counts the outcome of each
decision (``engine.audit.query.outcome_of``: the tier, the access effect, the retention
action, the escalation state ...), the values of each output that is a word, a yes/no or a
list of words, and the outcome by each request field that is written in clear and takes
few values (the role and purpose of an access request, a record type, a category ...).
Sealed values are never read. The records are those the filters keep (``domain``,
``since``, ``until``), read with the hash chain checked, as the log search reads them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from engine.audit.chain import ChainBroken
from engine.audit.protect import SEALED
from engine.audit.query import outcome_of
from engine.audit.replay import records
from engine.serve import auditlog
from engine.serve.service import Service
from engine.web.charts import Series, bar_chart

MAX_VALUES = 12  # a field or output with more distinct values than this is not charted
MAX_DEPTH = 3


@dataclass
class DomainFigures:
    domain: str
    count: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    outputs: dict[str, Counter[str]] = field(default_factory=dict)
    by_field: dict[str, dict[str, Counter[str]]] = field(default_factory=dict)  # field -> value -> outcomes
    by_day: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, body: Mapping[str, Any]) -> None:
        self.count += 1
        outputs = body.get("outputs", {})
        outcome = outcome_of(outputs, body.get("domain"))
        self.outcomes[outcome] += 1
        for name, values in _words(outputs):
            counter = self.outputs.setdefault(name, Counter())
            counter.update(values)
        for name, values in _clear_fields(body.get("facts", {}), "", 0):
            by_value = self.by_field.setdefault(name, {})
            for v in values:
                by_value.setdefault(v, Counter())[outcome] += 1
        day = str(body.get("time", ""))[:10]
        self.by_day.setdefault(day, Counter())[outcome] += 1


def _words(outputs: Mapping[str, Any]) -> Iterator[tuple[str, list[str]]]:
    """Outputs that are words, yes/no, or lists of words: (name, the values to count)."""
    for name, value in outputs.items():
        if isinstance(value, bool):
            yield name, [str(value).lower()]
        elif isinstance(value, str):
            yield name, [value]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            yield name, list(value) if value else ["(none)"]


def _clear_fields(facts: Any, path: str, depth: int) -> Iterator[tuple[str, list[str]]]:
    """Request fields written in clear: words, yes/no and lists of words, nested ones by path."""
    if not isinstance(facts, dict) or SEALED in facts or depth > MAX_DEPTH:
        return
    for key, value in facts.items():
        name = f"{path}.{key}" if path else str(key)
        if isinstance(value, dict):
            yield from _clear_fields(value, name, depth + 1)
        elif isinstance(value, bool):
            yield name, [str(value).lower()]
        elif isinstance(value, str):
            yield name, [value]
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            yield name, list(value)


def figures(service: Service, params: Mapping[str, str]) -> tuple[dict[str, DomainFigures], dict[str, Any] | None]:
    store = auditlog.store_of(service)
    filters = auditlog.filters_from({k: v for k, v in params.items() if k in ("domain", "since", "until") and v})
    out: dict[str, DomainFigures] = {}
    broken = None
    try:
        for _, _, body in records(store, filters):
            domain = str(body.get("domain"))
            out.setdefault(domain, DomainFigures(domain)).add(body)
    except ChainBroken as exc:
        broken = {"seq": exc.result.bad_seq, "reason": exc.result.reason}
    return dict(sorted(out.items())), broken


def dashboard_page(service: Service, params: Mapping[str, str]) -> dict[str, Any]:
    found, broken = figures(service, params)
    domains = []
    for name, f in found.items():
        outputs = [
            {"name": out, "chart": _chart(f"{name}: {out}", counts)}
            for out, counts in f.outputs.items()
            if 1 < len(counts) <= MAX_VALUES or (len(counts) == 1 and out == next(iter(f.outputs)))
        ]
        fields = [
            {"name": fname, "outcomes": sorted({o for c in values.values() for o in c}), "rows": sorted(values.items())}
            for fname, values in sorted(f.by_field.items())
            if 1 < len(values) <= MAX_VALUES
        ]
        domains.append(
            {
                "name": name,
                "count": f.count,
                "outcomes": _chart(f"{name}: outcomes", f.outcomes),
                "outcome_counts": f.outcomes.most_common(),
                "outputs": outputs,
                "fields": fields,
                "days": sorted(f.by_day.items()),
                "day_outcomes": sorted({o for c in f.by_day.values() for o in c}),
            }
        )
    form = {k: params.get(k, "") for k in ("domain", "since", "until")}
    return {"domains": domains, "broken": broken, "form": form, "all_domains": sorted(service.engine.domains)}


def _chart(title: str, counts: Counter[str]) -> Markup:
    return bar_chart(title, [Series("decisions", dict(counts.most_common()))])
