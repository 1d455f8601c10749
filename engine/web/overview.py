"""``/ui/``: what is loaded: the bundle (version, files, approvals, periods), each domain with
its rule count and owner, the population snapshot, and whether the last reload failed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.serve.service import Service
from engine.workbench.policytest.coverage import enumerate_rules


def overview(service: Service) -> dict[str, Any]:
    info = service.bundle_info()
    bundle = service.engine.bundle
    domains = []
    for kind, cp in bundle.policies.items():
        policy = cp.policy
        domains.append(
            {
                "kind": kind,
                "id": policy.id,
                "title": policy.metadata.get("title", ""),
                "owner": policy.metadata.get("owner", ""),
                "clause": policy.metadata.get("clause", ""),
                "file": Path(policy.path).name,
                "rules": len(enumerate_rules(cp).rules),
                "uses": list(policy.uses),
            }
        )
    ready, state = service.readiness()
    return {
        "bundle": info,
        "files": [Path(f).name for f in info["files"]],
        "domains": domains,
        "ready": ready,
        "reasons": state["reasons"],
        "log": service.store is not None,
    }
