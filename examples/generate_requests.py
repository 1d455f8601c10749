"""Example requests for the access, retention and escalation domains, made from customers.jsonl.

Deterministic (a fixed seed), so the committed files can be regenerated exactly:
``python examples/generate_requests.py`` writes ``examples/requests/{access,retention,escalation}.jsonl``.
The classification domain reads customer records as they are (``examples/customers.jsonl``).
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
AS_OF = datetime(2025, 6, 30, tzinfo=UTC)
ROLES = [
    "agent",
    "supervisor",
    "sales_rep",
    "sales_manager",
    "key_account_manager",
    "marketing_analyst",
    "auditor",
    "compliance_officer",
    "data_protection_officer",
    "data_engineer",
]
PURPOSES = {
    "agent": "service",
    "supervisor": "service",
    "sales_rep": "sales",
    "sales_manager": "sales",
    "key_account_manager": "sales",
    "marketing_analyst": "marketing",
    "auditor": "audit",
    "compliance_officer": "audit",
    "data_protection_officer": "legal",
    "data_engineer": "service",
}


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def access(rng: random.Random, c: dict[str, Any], n: int) -> dict[str, Any]:
    role = rng.choice(ROLES)
    fields = rng.sample(sorted(c), rng.randint(3, 8))
    return {
        "id": f"A{n:06d}",
        "subject": {"id": f"u{rng.randint(1, 40):03d}", "roles": [role], "department": rng.choice(["east", "west"])},
        "action": rng.choice(["read", "read", "read", "write", "export", "delete"]),
        "purpose": PURPOSES[role] if rng.random() < 0.85 else rng.choice(list(set(PURPOSES.values()))),
        "resource": {
            "customer": c["id"],
            "record_type": "customer_profile",
            "owner": f"u{rng.randint(1, 40):03d}",
            "department": rng.choice(["east", "west"]),
            "tier": rng.choice(["high", "medium", "low", "minimal"]),
            "record": {k: c[k] for k in fields},
        },
    }


def retention(rng: random.Random, c: dict[str, Any], n: int) -> dict[str, Any]:
    kind = rng.choice(["customer_profile", "transaction", "marketing_preferences", "service_ticket"])
    created = datetime.fromisoformat(c["first_purchase_at"])
    req: dict[str, Any] = {
        "customer": c["id"],
        "record_type": kind,
        "created_at": stamp(created),
        "last_activity_at": c["last_purchase_at"],
    }
    if kind == "customer_profile":
        req["record"] = {k: v for k, v in c.items() if k not in ("product_categories",)}
    elif kind == "transaction":
        req["record"] = {"annual_sales": c["annual_sales"], "bank_account": c["bank_account"]}
    elif kind == "marketing_preferences":
        req["record"] = {"product_categories": c["product_categories"], "consent_marketing": c["consent_marketing"]}
        if not c["consent_marketing"]:
            req["consent_withdrawn_at"] = stamp(AS_OF - timedelta(days=rng.randint(0, 400)))
    else:
        req["record"] = {"name": c["name"], "phone": c["phone"]}
        req["events"] = {"ticket_closed": stamp(AS_OF - timedelta(days=rng.randint(0, 1200)))}
    if "relationship_ended_at" in c:
        req["relationship_ended_at"] = c["relationship_ended_at"]
    if c.get("legal_hold"):
        req["holds"] = [{"id": f"hold-{c['id']}", "reason": "litigation"}]
    return req


def escalation(rng: random.Random, c: dict[str, Any], n: int) -> dict[str, Any]:
    opened = AS_OF - timedelta(hours=rng.randint(1, 120), minutes=rng.randint(0, 59))
    t: dict[str, Any] = {
        "id": f"T{n:06d}",
        "category": rng.choice(["enquiry", "complaint", "incident", "billing"]),
        "severity": rng.choice(["minor", "minor", "major", "critical"]),
        "complexity": rng.choice(["simple", "simple", "complex"]),
        "opened_at": stamp(opened),
        "first_contact": f"agent-{rng.randint(1, 20)}",
    }
    if rng.random() < 0.6:
        t["first_response_at"] = stamp(opened + timedelta(hours=rng.uniform(0.2, 30)))
    if rng.random() < 0.3:
        t["pauses"] = [{"from": stamp(opened + timedelta(hours=2)), "to": stamp(opened + timedelta(hours=8))}]
    if rng.random() < 0.05:
        t["cancelled_at"] = stamp(opened + timedelta(hours=1))
    events = []
    for i in range(rng.randint(0, 5)):
        kind = rng.choice(["complaint", "complaint", "complaint_answered", "purchase", "survey", "tier_drop"])
        e: dict[str, Any] = {"type": kind, "at": stamp(AS_OF - timedelta(days=rng.randint(0, 200))), "id": f"ev{i}"}
        if kind == "survey":
            e["score"] = rng.randint(1, 5)
        if kind == "complaint_answered":
            e["ref"] = f"ev{rng.randint(0, 4)}"
        events.append(e)
    return {"ticket": t, "customer": c, "events": events}


def main() -> None:
    with (HERE / "customers.jsonl").open(encoding="utf-8") as f:
        customers = [json.loads(line) for line in f][:500]
    out = HERE / "requests"
    out.mkdir(exist_ok=True)
    for name, make in (("access", access), ("retention", retention), ("escalation", escalation)):
        rng = random.Random(f"charter-{name}")
        with (out / f"{name}.jsonl").open("w", encoding="utf-8", newline="\n") as f:
            for n, c in enumerate(customers, 1):
                f.write(json.dumps(make(rng, c, n), ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
