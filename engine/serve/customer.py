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

from collections.abc import Iterator, Mapping
from typing import Any

from engine.core.domain import Domain, requests_about
from engine.serve.service import shape_error


def customer_requests(
    body: dict[str, Any], domains: Mapping[str, Domain], earlier: Mapping[str, Any]
) -> Iterator[tuple[str, Any, bool]]:
    """(kind, request, one of many) for each loaded domain, in ``domains``' order (dependency
    order), as each ``Domain.customer_requests`` builds it (``engine.core.domain.requests_about``).
    ``earlier`` holds the outputs decided so far (the caller adds each decision's outputs before
    asking for the next)."""
    customer = body.get("customer")
    if not isinstance(customer, dict):
        raise shape_error("`customer` must be a JSON object: the customer's facts")
    try:
        yield from requests_about(customer, body, domains, earlier)
    except ValueError as exc:
        raise shape_error(str(exc)) from None
