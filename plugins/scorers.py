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

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.hookspecs import ScorerSpec, hookimpl

CLV_ARGS = {
    "base_retention": 0.5,
    "loyalty_weight": 0.3,
    "tenure_weight": 0.1,
    "max_retention": 0.95,
    "discount_rate": 0.08,
    "horizon_years": 10.0,
}


def clv(facts: Mapping[str, Any], args: Mapping[str, Any], now: datetime) -> float:
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


CHURN_ARGS = {
    "intercept": -3.0,
    "per_complaint": 0.8,
    "per_csat_point_below_3": 0.9,
    "per_month_without_purchase": 0.25,
    "no_purchase_in_12_months": 1.0,
    "neutral_satisfaction": 3.0,
}


def churn_risk(facts: Mapping[str, Any], args: Mapping[str, Any], now: datetime) -> float:
    """Churn probability, a logistic score over the guideline's churn signals (domain.md §5)::

        z = intercept + per_complaint * complaints_90d
            + per_csat_point_below_3 * (3 - satisfaction)        (satisfaction absent: neutral)
            + per_month_without_purchase * months since last purchase
            + no_purchase_in_12_months * (purchases_12m == 0)
        churn_risk = 1 / (1 + e^-z)

    With the defaults a customer with no complaints, CSAT 4 and a purchase last month
    scores 0.03; two complaints, CSAT 2 and five quiet months score 0.68.
    """
    satisfaction = facts.get("satisfaction", args["neutral_satisfaction"])
    months = (now - facts["last_purchase_at"]).total_seconds() / (30.0 * 86400.0)
    z = (
        args["intercept"]
        + args["per_complaint"] * facts["complaints_90d"]
        + args["per_csat_point_below_3"] * (3.0 - satisfaction)
        + args["per_month_without_purchase"] * (months if months > 0.0 else 0.0)
        + (args["no_purchase_in_12_months"] if facts["purchases_12m"] == 0 else 0.0)
    )
    if z < -700.0:
        return 0.0
    return 1.0 / (1.0 + math.exp(-z))


QUINTILES = (20.0, 40.0, 60.0, 80.0)


def rfm_metrics(facts: Mapping[str, Any], now: datetime) -> dict[str, float]:
    """What RFM ranks: days since the last purchase, purchases in 12 months, yearly sales."""
    return {
        "recency_days": (now - facts["last_purchase_at"]).total_seconds() / 86400.0,
        "frequency": float(facts["purchases_12m"]),
        "monetary": float(facts["annual_sales"]),
    }


def _quintile(value: float, cuts: Mapping[float, float]) -> int:
    """1 to 5: one more than the number of quintile cut points at or below ``value``."""
    return 1 + sum(1 for p in QUINTILES if cuts[p] <= value)


def rfm(
    facts: Mapping[str, Any], args: Mapping[str, Any], now: datetime, stats: Mapping[str, Mapping[float, float]]
) -> float:
    """RFM cell as a number, ``100 * R + 10 * F + M`` (111 to 555), by quintiles of the population.

    R is 5 for the most recent fifth of buyers (fewest days since the last purchase) down to
    1; F and M are 5 for the fifth who buy most often and spend most. The quintile cut
    points come from the population snapshot, so the same customer can move cell when the
    population changes — and the decision names the snapshot it was ranked against.
    """
    m = rfm_metrics(facts, now)
    recency = 6 - _quintile(m["recency_days"], stats["recency_days"])
    frequency = _quintile(m["frequency"], stats["frequency"])
    monetary = _quintile(m["monetary"], stats["monetary"])
    return float(100 * recency + 10 * frequency + monetary)


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
        ScorerSpec(
            name="rfm",
            func=rfm,
            reads={"last_purchase_at": "timestamp", "purchases_12m": "integer", "annual_sales": "number"},
            version="1",
            description="recency/frequency/monetary quintile cell, 111 to 555, against the population",
            metrics=rfm_metrics,
            percentiles=QUINTILES,
        ),
        ScorerSpec(
            name="churn_risk",
            func=churn_risk,
            reads={"complaints_90d": "integer", "last_purchase_at": "timestamp", "purchases_12m": "integer"},
            args=CHURN_ARGS,
            version="1",
            description="churn probability: logistic score over complaints, satisfaction and purchase gaps",
        ),
    ]
