"""Long-running work for auditors: replay of the decision log as jobs, each in a background thread.

``POST /v1/log/replay`` starts one (202 with its id); ``GET /v1/jobs/{id}`` reports its state
(``queued``, ``running``, ``done``, ``failed``), its progress (records replayed of those
the filters keep) and, once done, the replay report (``engine.audit.replay.Report``).

With several workers (``charter serve --workers N``) a job runs in the worker that started
it, but every worker answers for it: each job's state is written to a directory the workers
share (``directory``: one file per job, replaced whole), at each change of state and every
``SAVE_EVERY`` records. A job whose worker stopped before it finished is reported ``failed``
(C071) by whichever worker is asked.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.audit.chain import ChainBroken
from engine.audit.replay import Filters, Replayer, Report, records
from engine.errors import CharterError
from engine.serve.errors import ServeError

if TYPE_CHECKING:
    from engine.serve.service import Service

_LOG = logging.getLogger("charter.serve")
KEPT = 100  # finished jobs kept for GET /v1/jobs/{id}; the oldest are forgotten first
SAVE_EVERY = 500  # records replayed between two writes of a shared job's progress


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
    worker: int = field(default_factory=os.getpid)  # the process that runs it

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "worker": self.worker,
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

    jobs: Jobs

    def _one(self, report: Report, *args: Any) -> None:
        super()._one(report, *args)
        self.job.done += 1
        if self.job.done % SAVE_EVERY == 0:
            self.jobs.save(self.job)


class Jobs:
    def __init__(self, service: Service, directory: str | Path | None = None) -> None:
        self.service = service
        self.directory = Path(directory) if directory is not None else None
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def save(self, job: Job) -> None:
        """Write ``job``'s state for the other workers (replaced whole: never read half-written)."""
        if self.directory is None:
            return
        path = self.directory / f"{job.id}.json"
        part = path.with_name(f".{job.id}.{os.getpid()}.part")
        part.write_text(json.dumps(job.to_dict()), encoding="utf-8")
        os.replace(part, path)

    def _shared(self, job_id: str) -> dict[str, Any] | None:
        """A job another worker runs or ran, as it last wrote it; ``failed`` when that worker
        stopped before the job finished."""
        if self.directory is None or not all(c in "0123456789abcdef" for c in job_id) or not job_id:
            return None
        try:
            found: dict[str, Any] = json.loads((self.directory / f"{job_id}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if found.get("state") in ("queued", "running") and not _alive(int(found.get("worker", 0))):
            found["state"] = "failed"
            found["error"] = {
                "code": "C071",
                "message": f"the worker that ran this job (process {found.get('worker')}) stopped before it finished",
            }
        return found

    def _all_shared(self) -> list[dict[str, Any]]:
        if self.directory is None:
            return []
        out = []
        for path in self.directory.glob("*.json"):
            found = self._shared(path.stem)
            if found is not None:
                out.append(found)
        return out

    def running(self) -> int:
        with self._lock:
            return sum(1 for j in self._jobs.values() if j.state in ("queued", "running"))

    def listed(self) -> list[dict[str, Any]]:
        """Every job kept, newest first (the workbench's replay page); every worker's."""
        with self._lock:
            jobs = [j.to_dict() for j in self._jobs.values()]
        mine = {j["id"] for j in jobs}
        jobs += [j for j in self._all_shared() if j["id"] not in mine]
        return sorted(jobs, key=lambda j: str(j.get("started", "")), reverse=True)

    def get(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                return job.to_dict()
        found = self._shared(job_id)
        if found is None:
            raise ServeError(f"no job `{job_id}`", status=404, code="C067", hint="jobs are kept while the service runs")
        return found

    def replay(self, filters: Filters, described: dict[str, Any]) -> dict[str, Any]:
        store = self.service.store
        assert store is not None  # the route checks that the service has a log
        job = Job(uuid.uuid4().hex, "replay", described)
        with self._lock:
            finished = [k for k, j in self._jobs.items() if j.state in ("done", "failed")]
            for k in finished[: max(0, len(self._jobs) - KEPT + 1)]:
                del self._jobs[k]
                if self.directory is not None:
                    (self.directory / f"{k}.json").unlink(missing_ok=True)
            self._jobs[job.id] = job
        self.save(job)
        thread = threading.Thread(target=self._replay, args=(job, filters), name=f"charter-job-{job.id[:8]}")
        thread.daemon = True
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return job.to_dict()

    def _replay(self, job: Job, filters: Filters) -> None:
        service = self.service
        assert service.store is not None
        job.state = "running"
        self.save(job)
        try:
            try:
                job.total = sum(1 for _ in records(service.store, filters))
            except ChainBroken:  # the replay reports where the chain breaks
                job.total = None
            replayer = _Counting(service.store, service.protector, registry=service.engine.registry)
            replayer.job, replayer.jobs = job, self
            with replayer:
                report = replayer.run(filters)
            job.report = report.to_dict()
            job.state = "done"
        except Exception as exc:  # reported in the job; the service goes on
            _LOG.exception("replay job %s failed", job.id)
            job.error = {"code": exc.code if isinstance(exc, CharterError) else None, "message": str(exc)}
            job.state = "failed"
        job.finished = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        try:
            self.save(job)
        except OSError:  # the shared directory is gone (the service stopping): this worker still answers
            _LOG.warning("replay job %s: its state could not be shared", job.id)

    def stop(self, timeout: float = 5.0) -> None:
        for thread in self._threads:
            thread.join(timeout)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True
