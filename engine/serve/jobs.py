"""Long-running work for auditors: replay of the decision log as jobs, each in a background thread.

``POST /v1/log/replay`` starts one (202 with its id); ``GET /v1/jobs/{id}`` reports its state
(``queued``, ``running``, ``done``, ``failed``), its progress (records replayed of those
the filters keep) and, once done, the replay report (``engine.audit.replay.Report``).
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from engine.audit.chain import ChainBroken
from engine.audit.replay import Filters, Replayer, Report, records
from engine.errors import CharterError
from engine.serve.errors import ServeError

if TYPE_CHECKING:
    from engine.serve.service import Service

_LOG = logging.getLogger("charter.serve")
KEPT = 100  # finished jobs kept for GET /v1/jobs/{id}; the oldest are forgotten first


@dataclass
class Job:
    id: str
    kind: str
    filters: dict[str, Any]
    state: str = "queued"
    done: int = 0
    total: int | None = None
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat().replace("+00:00", "Z"))
    finished: str | None = None
    report: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "filters": self.filters,
            "progress": {"done": self.done, "total": self.total},
            "started": self.started,
            "finished": self.finished,
            "report": self.report,
            "error": self.error,
        }


class _Counting(Replayer):
    """A replayer that counts each record it replays into its job."""

    job: Job

    def _one(self, report: Report, *args: Any) -> None:
        super()._one(report, *args)
        self.job.done += 1


class Jobs:
    def __init__(self, service: Service) -> None:
        self.service = service
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def running(self) -> int:
        with self._lock:
            return sum(1 for j in self._jobs.values() if j.state in ("queued", "running"))

    def listed(self) -> list[dict[str, Any]]:
        """Every job kept, newest first (the workbench's replay page)."""
        with self._lock:
            jobs = list(self._jobs.values())
        return [j.to_dict() for j in reversed(jobs)]

    def get(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise ServeError(
                    f"no job `{job_id}`", status=404, code="C067", hint="jobs are kept while the service runs"
                )
            return job.to_dict()

    def replay(self, filters: Filters, described: dict[str, Any]) -> dict[str, Any]:
        store = self.service.store
        assert store is not None  # the route checks that the service has a log
        job = Job(uuid.uuid4().hex, "replay", described)
        with self._lock:
            finished = [k for k, j in self._jobs.items() if j.state in ("done", "failed")]
            for k in finished[: max(0, len(self._jobs) - KEPT + 1)]:
                del self._jobs[k]
            self._jobs[job.id] = job
        thread = threading.Thread(target=self._replay, args=(job, filters), name=f"charter-job-{job.id[:8]}")
        thread.daemon = True
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return job.to_dict()

    def _replay(self, job: Job, filters: Filters) -> None:
        service = self.service
        assert service.store is not None
        job.state = "running"
        try:
            try:
                job.total = sum(1 for _ in records(service.store, filters))
            except ChainBroken:  # the replay reports where the chain breaks
                job.total = None
            replayer = _Counting(service.store, service.protector, registry=service.engine.registry)
            replayer.job = job
            with replayer:
                report = replayer.run(filters)
            job.report = report.to_dict()
            job.state = "done"
        except Exception as exc:  # reported in the job; the service goes on
            _LOG.exception("replay job %s failed", job.id)
            job.error = {"code": exc.code if isinstance(exc, CharterError) else None, "message": str(exc)}
            job.state = "failed"
        job.finished = datetime.now(UTC).isoformat().replace("+00:00", "Z")

    def stop(self, timeout: float = 5.0) -> None:
        for thread in self._threads:
            thread.join(timeout)
