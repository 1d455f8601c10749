"""The what-if replay of ``/ui/impact``: how many logged decisions the edited policies would
decide otherwise, per domain, with a sample.

``charter replay --against DIR`` does it (``engine.audit.replay.Replayer`` with ``against``):
each record the filters keep is decided again from its facts (the sealed ones opened with
the service's log key, on the server) and its snapshot, with the edited policies in place
of those it names, and compared with what was logged. The page shows counts, the customers
and outputs that change and the rules that fired: what the log search shows, so it needs
``log:read``; no sealed value is shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.audit.replay import Replayer
from engine.serve import auditlog
from engine.serve.service import Service

SAMPLE = 10


def replay_against(service: Service, edited: Path, params: Mapping[str, str]) -> dict[str, Any]:
    """The log's records (``since``/``until`` of the form's ``log_since``, ``log_until``) replayed with ``edited``."""
    store = auditlog.store_of(service)
    filters = auditlog.filters_from(
        {k: params[f"log_{k}"].strip() for k in ("since", "until") if params.get(f"log_{k}", "").strip()}
    )
    with Replayer(store, service.protector, against=edited, registry=service.engine.registry) as replayer:
        report = replayer.run(filters, sample=SAMPLE)
    sample = []
    for entry in report.changed[:SAMPLE]:
        before, after = entry["before"], entry["after"]
        names = sorted(set(before.get("outputs", {})) | set(after.get("outputs", {})))
        moved = {
            n: {"old": before["outputs"].get(n), "new": after["outputs"].get(n)}
            for n in names
            if before["outputs"].get(n) != after["outputs"].get(n)
        }
        sample.append(
            {
                "seq": entry["seq"],
                "id": entry["id"],
                "domain": entry["domain"],
                "subject": entry["subject"],
                "outputs": moved,
                "fired_before": [f[0] for f in before.get("fired", [])],
                "fired_after": [f[0] for f in after.get("fired", [])],
            }
        )
    return {
        "total": report.total,
        "unchanged": report.same,
        "changed": len(report.changed),
        "unreadable": report.unreadable,
        "errors": report.errors[:5],
        "error_count": len(report.errors),
        "by_domain": sorted(report.by_domain.items()),
        "by_output": {k: v.most_common(12) for k, v in sorted(report.by_output.items())},
        "sample": sample,
        "since": params.get("log_since", ""),
        "until": params.get("log_until", ""),
    }
