"""What the HTTP service does, without HTTP: decide, describe the bundle, say whether it is ready.

``Service`` wraps one shared ``Engine`` (safe between threads), the store its decision log
writes to (when it has one), the policy watcher that reloads it, the metrics and the replay
jobs. Every method takes and returns plain JSON values and raises a ``CharterError`` for a
request it cannot answer (``engine.serve.errors`` maps it to a status); ``engine.serve.app``
is the thin HTTP layer on top.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from engine.api import Engine, PolicyWatcher
from engine.audit.log import DecisionLog
from engine.audit.protect import Protector, SealError
from engine.audit.query import outcome_of
from engine.core.decision import Decision
from engine.core.model import BandsDecl, TableDecl
from engine.errors import CharterError, EvaluationError, FactErrors, PolicyError, did_you_mean
from engine.serve.errors import ServeError, error_body
from engine.serve.metrics import Metrics
from engine.storage import StorageError

if TYPE_CHECKING:
    from engine.core.compile import CompiledPolicy
    from engine.serve.jobs import Jobs
    from engine.storage import Store

_LOG = logging.getLogger("charter.serve")


class TimedLog(DecisionLog):
    """The decision log, counting its commits for ``/metrics``: ``charter_log_commits_total``,
    ``charter_log_batch_records`` (group commit: the records of concurrent requests share a
    commit) and ``charter_log_append_seconds``."""

    metrics: Metrics | None = None

    def committed(self, calls: int, records: int, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.committed(records, seconds)


@contextlib.contextmanager
def durable() -> Iterator[None]:
    """A decision whose record could not be made durable is not answered: the log's failure
    (its store's, or sealing's) becomes ``ServeError`` 503, C080; no decision id is given."""
    try:
        yield
    except (StorageError, SealError) as exc:
        _LOG.error("the decision log could not record a decision: %s", exc.describe())
        raise ServeError(
            "the decision could not be recorded durably: it is not acknowledged",
            status=503,
            code="C079",
            hint="the decision log's store failed (the service's log says how); the request may be retried",
        ) from None


def parse_time(value: Any, what: str) -> datetime:
    """An ISO timestamp (UTC unless it says otherwise), or ``ServeError`` C063."""
    if isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)
    raise ServeError(
        f"`{what}` is not a timestamp: `{value}`",
        status=422,
        code="C063",
        hint="write it like `2025-06-30T00:00:00Z`",
    )


def request_now(body: Mapping[str, Any]) -> datetime:
    """The body's ``now``, or the server's clock read here, at the HTTP boundary."""
    raw = body.get("now")
    return datetime.now(UTC) if raw is None else parse_time(raw, "now")


def shape_error(message: str, hint: str | None = None) -> ServeError:
    return ServeError(message, status=422, code="C062", hint=hint)


def json_object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise shape_error(f"the {what} must be a JSON object", hint='send `{"facts": {...}, "now": "..."}`')
    return body


def snapshot_of(decision: Decision) -> str | None:
    """The snapshot a decision ranked against: its own, or that of a decision it used."""
    if decision.snapshot_id is not None:
        return decision.snapshot_id
    return next((s for u in decision.upstream if (s := snapshot_of(u)) is not None), None)


def decision_json(decision: Decision) -> dict[str, Any]:
    """``Decision.to_dict()`` with ``decision_id`` (the log record's id, or None) and the
    snapshot the decision ranked against, its own or an upstream decision's (as the log records it)."""
    out = decision.to_dict()
    out["decision_id"] = decision.record_id
    out["snapshot_id"] = snapshot_of(decision)
    return out


class Service:
    """The decision service over one engine. ``start()`` starts watching the policies."""

    def __init__(
        self,
        engine: Engine,
        *,
        store: Store | None = None,
        protector: Protector | None = None,
        watch_interval: float | None = 1.0,
        settle: float | None = None,
        jobs_dir: str | None = None,
    ) -> None:
        """``jobs_dir``: where workers of one service share their jobs' state (``engine.serve.jobs``)."""
        from engine.serve.jobs import Jobs

        self.engine = engine
        self.store = store
        self.protector = protector
        self.watch_interval = watch_interval
        self.settle = settle
        self.watcher: PolicyWatcher | None = None
        self.jobs: Jobs = Jobs(self, jobs_dir)
        self.metrics = Metrics(self.gauges)
        if isinstance(engine.log, TimedLog):
            engine.log.metrics = self.metrics
        self._ready_lock = threading.Lock()

    # -- life ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Watch the policy files (``Engine.watch``) when a watch interval is set."""
        if self.watch_interval is not None and self.watcher is None:
            self.watcher = self.engine.watch(interval=self.watch_interval, settle=self.settle)

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop(timeout=10)
        self.jobs.stop()
        if self.store is not None:
            self.store.close()

    def watcher_for_polling(self) -> PolicyWatcher:
        """The watcher, made (not started) when none runs: for a caller that keeps its own time."""
        if self.watcher is None:
            self.watcher = PolicyWatcher(self.engine, interval=self.watch_interval or 1.0, settle=self.settle)
        return self.watcher

    # -- state ---------------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, what ``GET /ready`` answers): policies loaded, the last reload good, the store reachable."""
        reasons: list[dict[str, Any]] = []
        watcher = self.watcher
        error = watcher.last_error if watcher is not None else None
        if error is not None:
            reasons.append(
                {
                    "what": "reload",
                    "message": "the last reload of the policies failed: the previous policies keep serving",
                    "error": error.describe() if isinstance(error, CharterError) else str(error),
                    "errors": [e.to_dict() for e in getattr(error, "errors", [error])]
                    if isinstance(error, PolicyError)
                    else [],
                }
            )
        if self.store is not None:
            try:
                with self._ready_lock:
                    self.store.get_blob("bundle", "0" * 64)
            except Exception as exc:  # the store's own error, whatever its backend
                reasons.append({"what": "store", "message": f"the store cannot be read: {exc}"})
        ready = not reasons
        return ready, {
            "ready": ready,
            "reasons": reasons,
            "bundle_version": self.engine.bundle_version,
            "snapshot_id": self.snapshot_id,
            "domains": sorted(self.engine.domains),
            "log": self.engine.log is not None,
            "reloads": watcher.reloads if watcher is not None else 0,
            "failed_reloads": watcher.failures if watcher is not None else 0,
        }

    @property
    def snapshot_id(self) -> str | None:
        snap = self.engine.snapshot
        return snap.id if snap is not None else None

    def gauges(self) -> dict[str, Any]:
        watcher = self.watcher
        return {
            "reloads": watcher.reloads if watcher is not None else 0,
            "failures": watcher.failures if watcher is not None else 0,
            "ready": self.readiness()[0],
            "jobs": self.jobs.running(),
            "bundle_version": self.engine.bundle_version,
            "snapshot_id": self.snapshot_id,
        }

    def bundle_info(self) -> dict[str, Any]:
        bundle = self.engine.bundle
        snap = self.engine.snapshot
        return {
            "bundle_version": bundle.version,
            "snapshot_id": snap.id if snap is not None else None,
            "files": list(bundle.files),
            "approvals": list(getattr(bundle, "approvals", ()) or ()),
            "periods": [p.describe() for p in bundle.periods],
            "domains": {kind: _policy_info(cp) for kind, cp in bundle.policies.items()},
            "snapshot": None
            if snap is None
            else {
                "id": snap.id,
                "policy_id": snap.policy_id,
                "as_of": snap.as_of,
                "skipped": snap.skipped,
                "scores": {name: cuts.count for name, cuts in sorted(snap.scores.items())},
            },
        }

    # -- deciding ------------------------------------------------------------------------------

    def check_domain(self, domain: str) -> None:
        loaded = {kind for period in self.engine.bundle.periods for kind in period.policies}
        if domain not in loaded:
            raise ServeError(
                f"no `{domain}` policy is loaded",
                status=404,
                code="C060",
                hint=did_you_mean(domain, loaded) or "loaded: " + ", ".join(f"`{d}`" for d in sorted(loaded)),
            )

    def _evaluate(self, domain: str, facts: Any, now: datetime, explain: bool) -> Decision:
        start = time.perf_counter()
        try:
            with durable():
                decision = self.engine.evaluate(domain, facts, now=now, explain=explain)
        except ServeError:
            self.metrics.decided(domain, "unrecorded", time.perf_counter() - start)
            raise
        except FactErrors:
            self.metrics.decided(domain, "bad_facts", time.perf_counter() - start)
            raise
        except EvaluationError:
            self.metrics.decided(domain, "error", time.perf_counter() - start)
            raise
        self.metrics.decided(domain, outcome_of(decision.outputs, domain), time.perf_counter() - start)
        return decision

    def decide(self, domain: str, body: Any, *, explain: bool = False, release: bool = False) -> dict[str, Any]:
        """``POST /v1/decide/{domain}``: ``{"facts": {...}, "now": "..."}`` → the decision;
        with ``release``, also what its requester may see of the request's data (``released``)."""
        self.check_domain(domain)
        body = json_object(body, "request body")
        if not isinstance(body.get("facts"), dict):
            raise shape_error("`facts` must be a JSON object: the customer's or request's facts")
        kind = self.engine.registry.domains.get(domain)
        if release and (kind is None or kind.release is None):  # refused before anything is decided or logged
            raise ServeError(
                f"`{domain}` decisions release no data",
                status=422,
                code="C070",
                hint="`release=true` applies to a domain that releases a record, such as access",
            )
        decision = self._evaluate(domain, body["facts"], request_now(body), explain)
        out = decision_json(decision)
        if release:
            out["released"] = self.engine.release(decision, body["facts"])
        return out

    def decide_batch(self, domain: str, body: Any, *, explain: bool = False) -> dict[str, Any]:
        """``POST /v1/decide/{domain}/batch``: ``{"facts": [{...}, ...], "now": "..."}`` → one
        result per item, in order: the decision, or ``{"error": ...}`` in its place."""
        self.check_domain(domain)
        body = json_object(body, "request body")
        items = body.get("facts")
        if not isinstance(items, list):
            raise shape_error("`facts` must be a JSON array: one object per customer or request")
        now = request_now(body)
        results: list[dict[str, Any]] = []
        start, bad = time.perf_counter(), 0
        outcomes: list[str] = []
        for index, result in enumerate(self._batch(domain, items, now, explain)):  # a failure in its place
            if isinstance(result, CharterError):
                results.append({"index": index, "error": error_body(result)})
                outcomes.append("bad_facts" if isinstance(result, FactErrors) else "error")
                bad += 1
            else:
                results.append({"index": index, **decision_json(result)})
                outcomes.append(outcome_of(result.outputs, domain))
        share = (time.perf_counter() - start) / max(1, len(items))
        for outcome in outcomes:
            self.metrics.decided(domain, outcome, share)
        versions = {r["bundle_version"] for r in results if "bundle_version" in r}
        snapshots = {r["snapshot_id"] for r in results if r.get("snapshot_id")}
        return {
            "domain": domain,
            "bundle_version": versions.pop() if len(versions) == 1 else self.engine.bundle_version,
            "snapshot_id": snapshots.pop() if len(snapshots) == 1 else self.snapshot_id,
            "count": len(items),
            "decided": len(items) - bad,
            "errors": bad,
            "results": results,
        }

    def _batch(
        self, domain: str, items: list[Any], now: datetime, explain: bool
    ) -> Iterator[Decision | FactErrors | EvaluationError]:
        with durable():
            yield from self.engine.evaluate_batch(domain, items, now=now, explain=explain, failures="yield")

    def customer(self, body: Any, *, explain: bool = False) -> dict[str, Any]:
        """``POST /v1/customer``: every decision about one customer (see docs/serve.md)."""
        from engine.serve.customer import customer_requests

        body = json_object(body, "request body")
        now = request_now(body)
        for _ in range(2):  # a reload between the domains' decisions: decide again, all with one bundle
            out, versions = self._customer_once(body, now, explain, customer_requests)
            if len(versions) <= 1:
                break
        return out

    def _customer_once(
        self, body: dict[str, Any], now: datetime, explain: bool, requests: Any
    ) -> tuple[dict[str, Any], set[str]]:
        decisions: dict[str, Any] = {}
        ids: list[str] = []
        versions: set[str] = set()
        registry = self.engine.registry.domains
        loaded = {kind: registry[kind] for kind in self.engine.domains if kind in registry}
        earlier: dict[str, Any] = {}  # outputs decided so far, the first of each name

        def one(domain: str, facts: Mapping[str, Any]) -> dict[str, Any]:
            try:
                d = self._evaluate(domain, facts, now, explain)
            except (FactErrors, EvaluationError) as exc:
                return {"error": error_body(exc)}
            if d.record_id is not None:
                ids.append(d.record_id)
            versions.add(d.bundle_version)
            for name, value in d.outputs.items():
                earlier.setdefault(name, value)
            return decision_json(d)

        for domain, facts, many in requests(body, loaded, earlier):
            made = one(domain, facts)
            if many:
                decisions.setdefault(domain, []).append(made)
            else:
                decisions[domain] = made
        customer = body.get("customer")
        snapshots = {s for d in decisions.values() for s in _snapshots(d)}
        return {
            "customer": customer.get("id") if isinstance(customer, dict) else None,
            "now": now.isoformat().replace("+00:00", "Z"),
            "bundle_version": next(iter(versions)) if len(versions) == 1 else self.engine.bundle_version,
            "snapshot_id": next(iter(snapshots)) if len(snapshots) == 1 else self.snapshot_id,
            "decision_ids": ids,
            "decisions": decisions,
        }, versions


def _snapshots(made: Any) -> list[str]:
    items = made if isinstance(made, list) else [made]
    return [m["snapshot_id"] for m in items if m.get("snapshot_id")]


def _policy_info(cp: CompiledPolicy) -> dict[str, Any]:
    policy = cp.policy
    rules: list[dict[str, Any]] = []
    for step in policy.steps:
        if isinstance(step, BandsDecl):
            rules += [
                {"id": b.id, "kind": "band", "file": b.location.file, "line": b.location.line} for b in step.bands
            ]
        elif isinstance(step, TableDecl):
            rules += [
                {"id": r.id, "kind": f"row of table `{step.id}`", "file": r.location.file, "line": r.location.line}
                for r in step.rules
            ]
    if cp.domain is not None and cp.domain.rules is not None:
        rules += [{"id": r.id, "kind": r.kind, "file": r.file, "line": r.line} for r in cp.domain.rules(policy)]
    return {
        "policy_id": policy.id,
        "file": policy.path,
        "uses": list(policy.uses),
        "outputs": list(policy.outputs),
        "owner": policy.metadata.get("owner"),
        "rules": rules,
    }
