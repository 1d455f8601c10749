"""The shipped tiering policy written by hand in plain Python: the speed a policy engine is measured against.

It must agree with the engine decision for decision (the benchmark checks it on every
example customer); it reads the same snapshot cut points and the same `clv` scorer.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from charter_plugins.scorers import CLV_ARGS, clv

DAYS_180 = timedelta(hours=4320)
DAYS_90 = timedelta(hours=2160)
TREATMENT = {
    "high": ("dedicated", 7, "vip_benefits"),
    "medium": ("regular", 14, "member_points"),
    "low": ("basic", 30, "win_back"),
    "minimal": ("self_service", 90, "none"),
}


def tier(c: Mapping[str, Any], now: datetime, cuts: tuple[float, float, float]) -> dict[str, Any]:
    """Value tier, lifecycle, risk, flags, monitoring and treatment, as policies/tiering.yaml says."""
    first = datetime.fromisoformat(c["first_purchase_at"])
    last = datetime.fromisoformat(c["last_purchase_at"])
    facts = {
        "profit_contribution": float(c["profit_contribution"]),
        "relationship_years": float(c["relationship_years"]),
        "loyalty_score": float(c["loyalty_score"]),
    }
    value = clv(facts, CLV_ARGS, now)
    p10, p50, p80 = cuts
    value_tier = "high" if value >= p80 else "medium" if value >= p50 else "low" if value >= p10 else "minimal"
    complaints = c.get("complaints_90d", 0)
    satisfaction = c.get("satisfaction")
    churn = (
        (0.4 if complaints >= 2 else 0.0)
        + (0.3 if satisfaction is not None and satisfaction < 3.0 else 0.0)
        + (0.3 if now - last > DAYS_90 else 0.0)
    )
    if now - first < DAYS_180:
        stage = "new"
    elif c["purchases_12m"] == 0 or now - last > DAYS_180:
        stage = "decline"
    elif c["relationship_years"] < 3.0:
        stage = "growth"
    else:
        stage = "mature"
    fraud, default_risk = c.get("fraud_flags", 0) > 0, c.get("default_risk", 0.0)
    violations = c.get("compliance_violations", 0) > 0
    if fraud or default_risk >= 0.6 or violations:
        risk = "high"
    elif default_risk >= 0.3 or churn >= 0.6:
        risk = "medium"
    else:
        risk = "low"
    flags = [
        name
        for name, on in (
            ("fraud", fraud),
            ("default", default_risk >= 0.3),
            ("compliance", violations),
            ("churn", churn >= 0.6),
        )
        if on
    ]
    service, cadence, loyalty = TREATMENT[value_tier]
    return {
        "value_tier": value_tier,
        "lifecycle_stage": stage,
        "risk_level": risk,
        "risk_flags": flags,
        "monitored": risk == "high",
        "service_level": service,
        "contact_cadence_days": cadence,
        "loyalty_programme": loyalty,
    }
