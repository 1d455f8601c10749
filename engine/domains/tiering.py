"""Customer tiering (domain.md §1): value tiers by percentile band, lifecycle, risk, treatment.

Tiering adds one section to the shared policy parts: ``bands``, which assign an output
by the customer's rank in the population on a score (``from: 80, to: 100`` is the top
20%). Ranks come from a population snapshot's cut points (``engine.population``), so a
tiering decision names the snapshot it used and can be reproduced from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.core.domain import Domain, Kpi


def customer_requests(customer: Mapping[str, Any], body: Mapping[str, Any], earlier: Mapping[str, Any]) -> Any:
    """``POST /v1/customer``: the customer's facts, as they are."""
    return customer


TIERING = Domain(
    kpis=(Kpi("tiers", "Tier distribution", "value_tier"),),
    outcome="value_tier",
    kind="tiering",
    description="customer value tier, lifecycle stage, risk level and treatment",
    schema_extra={"bands": {"type": "array", "items": {"$ref": "#/$defs/bands"}}},
    sections=("facts", "scores", "outputs", "bands", "tables"),
    key_order={
        "bands[]": "id output score title description owner clause bands",
        "bands[].bands[]": "id value from to message title description owner clause",
    },
    customer_requests=customer_requests,
)
