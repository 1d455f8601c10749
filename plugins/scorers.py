"""Built-in scorers.

``clv``: customer lifetime value, the textbook discounted-margin formula
(domain.md §1, "a CLV/value scorecard: sales, profit contribution, relationship length,
loyalty")::

    retention = clamp(base_retention + loyalty_weight * loyalty_score
                      + tenure_weight * min(relationship_years, 10) / 10, 0, max_retention)
    clv = margin * sum(retention ** (t - 1) / (1 + discount_rate) ** t for t in 1..horizon_years)

where ``margin`` is the yearly profit contribution (never below 0). Every weight is an
argument a policy may override under ``args:``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.hookspecs import hookimpl
from engine.plugins import ScorerSpec

CLV_ARGS = {
    "base_retention": 0.5,
    "loyalty_weight": 0.3,
    "tenure_weight": 0.1,
    "max_retention": 0.95,
    "discount_rate": 0.08,
    "horizon_years": 10.0,
}


def clv(facts: Mapping[str, Any], args: Mapping[str, Any]) -> float:
    """Discounted lifetime margin; see the module docstring. Written for speed: it runs per decision."""
    margin = facts["profit_contribution"]
    if margin < 0.0:
        margin = 0.0
    years = facts["relationship_years"]
    tenure = 1.0 if years >= 10.0 else years / 10.0
    retention = (
        args["base_retention"] + args["loyalty_weight"] * facts["loyalty_score"] + args["tenure_weight"] * tenure
    )
    cap = args["max_retention"]
    retention = cap if retention > cap else 0.0 if retention < 0.0 else retention
    growth = 1.0 + args["discount_rate"]
    ratio = retention / growth
    horizon = int(args["horizon_years"])
    # geometric series: sum_{t=1..H} r^(t-1) / (1+d)^t = (1 - ratio^H) / ((1+d) * (1 - ratio))
    factor = horizon / growth if ratio == 1.0 else (1.0 - ratio**horizon) / (growth * (1.0 - ratio))
    return float(margin * factor)


@hookimpl
def charter_scorers() -> list[ScorerSpec]:
    return [
        ScorerSpec(
            name="clv",
            func=clv,
            reads={"profit_contribution": "number", "relationship_years": "number", "loyalty_score": "number"},
            args=CLV_ARGS,
            version="1",
            description="customer lifetime value: discounted yearly margin under loyalty-driven retention",
        ),
    ]
