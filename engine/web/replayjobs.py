"""The workbench's replay of the decision log (``/ui/log/replay``): start a replay job with
filters (the service's ``POST /v1/log/replay``: a background thread, ``engine.serve.jobs``),
follow its progress on a page that refreshes itself while it runs, read its report. Needs
the ``replay`` scope, as the service's route does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.serve import auditlog
from engine.serve.service import Service

FILTERS = ("domain", "customer", "rule", "since", "until")


def jobs_page(service: Service) -> dict[str, Any]:
    """The form and every job kept, newest first."""
    auditlog.store_of(service)  # a service without a log: the page says so (C0xx, 409)
    return {"jobs": service.jobs.listed(), "domains": list(service.engine.domains)}


def start(service: Service, form: Mapping[str, str]) -> str:
    """Start a replay of the records the form's filters keep; the job's id."""
    body = {k: form[k].strip() for k in FILTERS if form.get(k, "").strip()}
    return str(auditlog.start_replay(service, body)["id"])


def job_page(service: Service, job_id: str) -> dict[str, Any]:
    """One job: its state, progress (percent when the total is known) and, once done, the
    report's counts and the first records that did not reproduce."""
    job = service.jobs.get(job_id)
    done, total = job["progress"]["done"], job["progress"]["total"]
    running = job["state"] in ("queued", "running")
    report = job.get("report") or {}
    return {
        "job": job,
        "running": running,
        "percent": int(100 * done / total) if total else (100 if not running else 0),
        "report": report,
        "sample": (report.get("sample") or [])[:20],
    }
