"""``/ui/dashboard/trends``: the supervision figures over time, from the decision log.

The guidelines' KPIs where the engine decides them, each a ``Kpi``: an output of one domain
counted per day or month of the decision (``body["time"]``, the time decided at), or by a
request field written in clear (a ticket's category, an access request's roles and purpose),
optionally keeping some outcomes only (denials) and giving the share of one value (the
breach rate). Which outputs and fields those are is the one place here that names what the
shipped policies declare; a KPI whose domain is not in the log is not shown, and a record
whose field is sealed or missing counts under ``(none)``. The records are read as the
dashboard reads them (``engine.web.dashboard.figures``' filters, the hash chain checked).

Each KPI is drawn as stacked bars (``charts.stacked_chart``) beside its table of counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from engine.audit.chain import ChainBroken
from engine.audit.protect import SEALED
from engine.audit.replay import records
from engine.core.domain import Kpi
from engine.serve import auditlog
from engine.serve.errors import bad_param
from engine.serve.service import Service
from engine.web.charts import stacked_chart

NONE = "(none)"
MAX_ROWS = 400  # periods or field values shown per KPI (the last ones)
AUTO_DAYS = 62  # more distinct days than this: counted per month


def kpis(service: Service) -> list[Kpi]:
    """Every loaded domain's figures, as each domain declares them (``Domain.kpis``)."""
    return [replace(k, domain=kind) for kind, d in service.engine.registry.domains.items() for k in d.kpis]


@dataclass
class Counts:
    """One KPI's counts: by row (a period or a field's value), then by the output's value."""

    kpi: Kpi
    rows: dict[str, Counter[str]] = field(default_factory=dict)
    rate_by_period: dict[str, dict[str, Counter[str]]] = field(default_factory=dict)  # row -> period -> values

    def by_month(self) -> None:
        """The counts per day merged into counts per month."""
        if not self.kpi.by:
            self.rows = _merged(self.rows)
        self.rate_by_period = {row: _merged(per) for row, per in self.rate_by_period.items()}

    def add(self, body: Mapping[str, Any], period: str) -> None:
        value = _text(body.get("outputs", {}).get(self.kpi.output))
        if self.kpi.only and value not in self.kpi.only:
            return
        for row in _rows(self.kpi.by, body) if self.kpi.by else [period]:
            self.rows.setdefault(row, Counter())[value] += 1
            if self.kpi.rate and self.kpi.by:
                self.rate_by_period.setdefault(row, {}).setdefault(period, Counter())[value] += 1


def _merged(per_day: Mapping[str, Counter[str]]) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = {}
    for day, counter in per_day.items():
        out.setdefault(day[:7], Counter()).update(counter)
    return out


def _text(value: Any) -> str:
    if value is None:
        return NONE
    return str(value).lower() if isinstance(value, bool) else str(value)


def _rows(by: str, body: Mapping[str, Any]) -> list[str]:
    """The values of ``by`` in the record: a list counts under each of its items."""
    month = by.startswith("month:")
    path = by.removeprefix("month:")
    root: Any = body.get("outputs", {}) if path.startswith("outputs.") else body.get("facts", {})
    for part in path.removeprefix("outputs.").split("."):
        root = root.get(part) if isinstance(root, dict) and SEALED not in root else None
    values = root if isinstance(root, list) else [root]
    out = [NONE if v is None or isinstance(v, dict) else _text(v) for v in values] or [NONE]
    return [v[:7] if month and v != NONE else v for v in out]


def counts(service: Service, params: Mapping[str, str]) -> tuple[list[Counts], str, dict[str, Any] | None]:
    """Each KPI's counts over the records the filters keep; the period used; where the chain
    breaks. Counted per day as the records stream by, then merged per month when asked (or,
    not asked, when there are more than ``AUTO_DAYS`` days)."""
    by = params.get("by", "").strip()
    if by not in ("", "day", "month"):
        raise bad_param("by", by, "`day` or `month`")
    store = auditlog.store_of(service)
    filters = auditlog.filters_from({k: v for k, v in params.items() if k in ("since", "until") and v})
    found = [Counts(k) for k in kpis(service)]
    by_domain: dict[str, list[Counts]] = {}
    for c in found:
        by_domain.setdefault(c.kpi.domain, []).append(c)
    days: set[str] = set()
    broken = None
    try:
        for _, _, body in records(store, filters):
            day = str(body.get("time", ""))[:10]
            for c in by_domain.get(str(body.get("domain")), ()):
                days.add(day)
                c.add(body, day)
    except ChainBroken as exc:
        broken = {"seq": exc.result.bad_seq, "reason": exc.result.reason}
    if by == "month" or (not by and len(days) > AUTO_DAYS):
        by = "month"
        for c in found:
            c.by_month()
    return [c for c in found if c.rows], by or "day", broken


def trends_page(service: Service, params: Mapping[str, str]) -> dict[str, Any]:
    found, by, broken = counts(service, params)
    return {
        "kpis": [_laid_out(c, by, _declared(service, c.kpi)) for c in found],
        "by": by,
        "auto_days": AUTO_DAYS,
        "broken": broken,
        "form": {k: params.get(k, "") for k in ("since", "until", "by")},
    }


def _declared(service: Service, kpi: Kpi) -> list[str]:
    """The output's values in the order the served policy declares them (most severe first ...)."""
    if kpi.domain not in service.engine.domains:
        return []
    out = service.engine.program(kpi.domain).policy.outputs.get(kpi.output)
    return [str(v) for v in out.values or ()] if out is not None else []


def _laid_out(c: Counts, by: str, declared: list[str]) -> dict[str, Any]:
    kpi = c.kpi
    rows = sorted(c.rows.items())[-MAX_ROWS:]
    if kpi.by and not kpi.by.startswith("month:"):
        rows = sorted(c.rows.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:MAX_ROWS]
    seen = {v for _, counter in rows for v in counter}
    values = [v for v in declared if v in seen] + _ordered({v for v in seen if v not in declared})
    row_name = kpi.by.removeprefix("month:").rsplit(".", 1)[-1] if kpi.by else by
    title = f"{kpi.domain}: {kpi.output} " + (f"by {row_name}" if kpi.by else f"per {by}")
    table = [
        {
            "label": label,
            "counts": [(v, counter.get(v, 0)) for v in values],
            "total": sum(counter.values()),
            "rate": _rate(counter, kpi.rate),
        }
        for label, counter in rows
    ]
    periods = sorted({p for per in c.rate_by_period.values() for p in per})
    rate_table = [
        {"label": label, "rates": [_rate(c.rate_by_period[label].get(p, Counter()), kpi.rate) for p in periods]}
        for label, _ in rows
        if label in c.rate_by_period
    ]
    return {
        "key": kpi.key,
        "title": kpi.title,
        "caption": title,
        "row_name": row_name,
        "note": kpi.note,
        "columns": values,
        "rate": kpi.rate,
        "table": table,
        "chart": stacked_chart(title, [(label, counter) for label, counter in rows], values),
        "rate_periods": periods,
        "rate_table": rate_table,
    }


def _ordered(seen: set[str]) -> list[str]:
    """The values in a stable order: numbers by value, words alphabetically, ``(none)`` last."""

    def key(v: str) -> tuple[int, float, str]:
        return (2, 0.0, v) if v == NONE else (0, float(v), v) if _number(v) else (1, 0.0, v)

    return sorted(seen, key=key)


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _rate(counter: Counter[str], value: str) -> str:
    """The share of ``value`` in ``counter``, as a percentage; empty without a rate or counts."""
    total = sum(counter.values())
    if not value or not total:
        return ""
    return f"{100 * counter.get(value, 0) / total:.1f}%"
