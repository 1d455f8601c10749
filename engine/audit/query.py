"""Finding decisions in the log: the one query behind ``charter log find``,
``GET /v1/log/records`` (``engine.serve.auditlog``) and the workbench's log search.

It reads the log from its first record, checking the hash chain as it goes
(``engine.audit.replay.records``), so its cost grows with the log: it is for auditors, not for
the decision path. A broken chain ends the search: the records found before the break are
answered, with where it breaks.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.audit.chain import ChainBroken
from engine.audit.replay import Filters, records
from engine.storage import Store


def outcome_of(outputs: Mapping[str, Any], domain: str | None = None) -> str:
    """A decision's outcome in one word: the output its domain names (``Domain.outcome``:
    tiering's ``value_tier``, access's ``effect``, retention's ``action``, escalation's
    ``state``, classification's ``highest``), else its first output that is a string (or a
    boolean); ``decided`` when none is. (A logged record's outputs are in sorted order, so
    without the domain its first string output is not the outcome.)"""
    key = _outcome_keys().get(domain or "", "")
    if key in outputs:
        value = outputs[key]
        if value is None:  # e.g. classification's `highest` of a record no rule classifies
            return "none"
        return str(value).lower() if isinstance(value, bool) else str(value)[:40]
    for value in outputs.values():
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, str):
            return value[:40]
    return "decided"


@functools.cache
def _outcome_keys() -> dict[str, str]:
    """Each loaded domain's outcome output, by kind (the built-in and plugin domains)."""
    from engine.plugins import build_registry

    return {kind: d.outcome for kind, d in build_registry().domains.items() if d.outcome}


def matches_outcome(outcome: str, outputs: Mapping[str, Any], domain: str | None = None) -> bool:
    """``deny``: the record's outcome (``outcome_of``) is ``deny``; ``risk_level=high``: its
    output ``risk_level`` is ``high``."""
    name, eq, value = outcome.partition("=")
    if eq:
        got = outputs.get(name)
        return got == value or (isinstance(got, bool) and str(got).lower() == value)
    return outcome_of(outputs, domain) == outcome


def summary(seq: int, rid: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """One found record: its number and id, what it decided about whom, when, and the rules
    that decided."""
    return {
        "decision_id": rid,
        "seq": seq,
        "domain": body["domain"],
        "subject": body["subject"],
        "now": body["time"],
        "outcome": outcome_of(body["outputs"], body["domain"]),
        "outputs": body["outputs"],
        "fired": [f[0] for f in body["fired"]],
        "bundle_version": body["bundle"],
        "snapshot_id": body.get("snapshot"),
    }


@dataclass
class Found:
    """What a search found: the records (``summary`` each), whether more matched than the
    limit, and where the hash chain breaks (``{"seq", "reason"}``) when it does."""

    records: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False
    chain_broken: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "count": len(self.records),
            "truncated": self.truncated,
            "chain_broken": self.chain_broken,
        }


def find(
    store: Store,
    filters: Filters | None = None,
    *,
    outcome: str | None = None,
    limit: int = 100,
    newest_first: bool = False,
) -> Found:
    """The records ``filters`` keep whose outcome matches ``outcome`` (``matches_outcome``):
    the first ``limit`` in log order, or with ``newest_first`` the last ``limit``, newest
    first (which reads the whole log)."""
    kept: deque[dict[str, Any]] = deque(maxlen=limit if newest_first else None)
    found = Found()
    matched = 0
    try:
        for seq, rid, body in records(store, filters or Filters()):
            if outcome is not None and not matches_outcome(outcome, body["outputs"], body["domain"]):
                continue
            matched += 1
            if matched > limit and not newest_first:
                break
            kept.append(summary(seq, rid, body))
    except ChainBroken as exc:
        found.chain_broken = {"seq": exc.result.bad_seq, "reason": exc.result.reason}
    found.records = list(reversed(kept)) if newest_first else list(kept)
    found.truncated = matched > limit
    return found
