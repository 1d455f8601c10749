"""``POST /v1/customer``: the requests of each domain built from one customer's facts.

::

    {"customer": {...},                 # the customer's facts, as tiering reads them (required)
     "now": "2025-06-30T00:00:00Z",     # optional: the server's clock otherwise
     "retention": {...},                # optional: merged over the retention request built below
     "tickets": [{...}], "events": [],  # optional: one escalation decision per ticket
     "access": {"subject": {...}, "action": "read", "purpose": "service",
                "record_type": "customer_profile", "fields": ["name", "phone"],
                "owner": "u006", "department": "west", "tier": "high", "justification": "..."}}

In dependency order, each domain deciding on the parts of its request that it ``uses:``
another domain for, exactly as ``Engine.evaluate`` does on its own:

* ``tiering``: the customer's facts;
* ``classification``: the customer's facts as one record;
* ``retention``: the customer's record as ``customer_profile`` (``created_at`` from
  ``first_purchase_at``, ``last_activity_at`` from ``last_purchase_at``), with ``retention``
  merged over it;
* ``escalation``: for each ticket, ``{"ticket", "customer", "events"}`` (tiering decides again
  inside it, on the same facts: escalation uses tiering);
* ``access`` (when ``access`` is given): the subject's request for the customer's record (only
  ``fields`` of it when given), its ``tier`` the tiering decision's ``value_tier`` unless given.

A domain that is not loaded is left out; one whose request is wrong gets ``{"error": ...}``
in its place, and the others are still decided.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from engine.serve.service import shape_error

RECORD_TYPE = "customer_profile"


def customer_requests(body: dict[str, Any], loaded: set[str], tier: Sequence[Any]) -> Iterator[tuple[str, Any]]:
    """(domain, request) in order. ``tier`` holds tiering's ``value_tier`` once it is decided
    (the caller appends it after deciding the first request)."""
    customer = body.get("customer")
    if not isinstance(customer, dict):
        raise shape_error("`customer` must be a JSON object: the customer's facts")
    tickets = body.get("tickets", [])
    if not isinstance(tickets, list):
        raise shape_error("`tickets` must be a JSON array of tickets")
    extra = body.get("retention", {})
    access = body.get("access")
    if not isinstance(extra, dict) or (access is not None and not isinstance(access, dict)):
        raise shape_error("`retention` and `access` must be JSON objects")
    cid = customer.get("id")
    if "tiering" in loaded:
        yield "tiering", customer
    if "classification" in loaded:
        yield "classification", customer
    if "retention" in loaded:
        yield (
            "retention",
            {
                "customer": cid,
                "record_type": RECORD_TYPE,
                "record": customer,
                "created_at": customer.get("first_purchase_at"),
                "last_activity_at": customer.get("last_purchase_at"),
                **extra,
            },
        )
    if "escalation" in loaded:
        for ticket in tickets:
            yield "escalation", {"ticket": ticket, "customer": customer, "events": body.get("events", [])}
    if "access" in loaded and access is not None:
        fields = access.get("fields")
        record = {k: customer[k] for k in fields if k in customer} if isinstance(fields, list) else customer
        resource: dict[str, Any] = {"customer": cid, "record_type": access.get("record_type", RECORD_TYPE)}
        for key in ("owner", "department"):
            if key in access:
                resource[key] = access[key]
        given_tier = access.get("tier", tier[0] if tier else None)
        if given_tier is not None:
            resource["tier"] = given_tier
        resource["record"] = record
        request = {k: access[k] for k in ("subject", "action", "purpose", "justification") if k in access}
        yield "access", {**request, "resource": resource}
