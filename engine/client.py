"""The official Python client of ``charter serve`` (docs/serve.md), on the standard library only.

::

    from engine.client import Client, ServiceError

    with Client("http://127.0.0.1:8080", token="charter_…") as charter:
        d = charter.decide("access", facts, now="2025-06-30T00:00:00Z")
        d.outputs["effect"], d.decision_id, d.bundle_version
        job = charter.wait(charter.replay(customer="C000001"))

Every error the service answers is raised as one class, ``ServiceError`` (a ``CharterError``),
carrying the service's error shape: ``code``, ``message``, ``hint``, ``status`` (the HTTP
status; 0 when no answer came) and, for bad facts (422 F…), ``errors``: one entry per field.
A failure to reach the service or to read its answer is ``ServiceError`` C088, status 0.

Connections are kept alive, one per thread (``threading.local``): one ``Client`` may be shared
by many threads, each with its own connection. An idle connection the server closed is found
before it is reused and opened again; a request that loses its connection after being sent is
retried once when it reads only (``GET``), never when it decides (a decision may have been
logged: find it with ``records`` before deciding again).
"""

from __future__ import annotations

import http.client
import json
import select
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.errors import CharterError

__all__ = [
    "Batch",
    "Bundle",
    "Client",
    "CustomerDecisions",
    "Decision",
    "Failure",
    "Health",
    "Job",
    "Readiness",
    "Record",
    "RecordSummary",
    "Records",
    "ServiceError",
    "Verification",
]

Json = dict[str, Any]
Now = datetime | str | None  # a datetime (naive: UTC), an ISO timestamp, or None: the server's clock
NO_ANSWER = "C088"


class ServiceError(CharterError):
    """An error the service answered (its error shape), or none it could give (C088, status 0)."""

    code = NO_ANSWER

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str,
        hint: str | None = None,
        errors: Sequence[Json] = (),
        body: Json | None = None,
    ) -> None:
        super().__init__(message, hint=hint, code=code)
        self.status = status
        self.errors = list(errors)  # bad facts: one entry per field (`path`, `code`, `message`, ...)
        self.body = body or {}  # the error shape as answered, with any member not named above

    def __str__(self) -> str:
        return f"{self.message} [{self.code}, HTTP {self.status}]" if self.status else f"{self.message} [{self.code}]"


# -- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """An item of a batch, or a domain of ``customer``, that could not be decided."""

    code: str
    message: str
    hint: str | None
    errors: list[Json]
    index: int | None = None

    @classmethod
    def from_json(cls, error: Json, index: int | None = None) -> Failure:
        return cls(error.get("code", ""), error.get("message", ""), error.get("hint"), error.get("errors", []), index)


@dataclass(frozen=True)
class Decision:
    """One decision, as ``Decision.to_dict()`` makes it, with the log record's id."""

    domain: str
    subject: str | None
    now: str
    outputs: Json
    fired: list[Json]
    bundle_version: str
    snapshot_id: str | None
    decision_id: str | None  # None when the service does not log
    trace: list[Json] | None = None  # with explain=True
    index: int | None = None  # its place in a batch
    raw: Json = field(default_factory=dict, repr=False)  # everything answered

    @property
    def fired_ids(self) -> list[str]:
        return [r["id"] for r in self.fired]

    @classmethod
    def from_json(cls, d: Json) -> Decision:
        return cls(
            d["domain"],
            d.get("subject"),
            d["now"],
            d["outputs"],
            d["fired"],
            d["bundle_version"],
            d.get("snapshot_id"),
            d.get("decision_id"),
            d.get("trace"),
            d.get("index"),
            d,
        )


def _decision_or_failure(d: Json) -> Decision | Failure:
    return Failure.from_json(d["error"], d.get("index")) if "error" in d else Decision.from_json(d)


@dataclass(frozen=True)
class Batch:
    domain: str
    bundle_version: str
    snapshot_id: str | None
    count: int
    decided: int
    errors: int
    results: list[Decision | Failure]  # in the order of the items


@dataclass(frozen=True)
class CustomerDecisions:
    """Everything decided about one customer: ``decisions`` by domain (escalation a list, one per ticket)."""

    customer: str | None
    now: str
    bundle_version: str
    snapshot_id: str | None
    decision_ids: list[str]
    decisions: dict[str, Decision | Failure | list[Decision | Failure]]


@dataclass(frozen=True)
class Bundle:
    bundle_version: str
    snapshot_id: str | None
    files: list[str]
    approvals: list[Json]
    periods: list[Any]
    domains: dict[str, Json]  # per domain: policy_id, file, uses, outputs, owner, rules
    snapshot: Json | None


@dataclass(frozen=True)
class RecordSummary:
    decision_id: str
    seq: int
    domain: str
    subject: str | None
    now: str
    outcome: str
    outputs: Json
    fired: list[str]
    bundle_version: str
    snapshot_id: str | None

    @classmethod
    def from_json(cls, d: Json) -> RecordSummary:
        keys = ("decision_id", "seq", "domain", "subject", "now", "outcome", "outputs", "fired", "bundle_version")
        return cls(**{k: d[k] for k in keys}, snapshot_id=d.get("snapshot_id"))


@dataclass(frozen=True)
class Records:
    records: list[RecordSummary]
    truncated: bool  # more records matched than `limit`
    chain_broken: Json | None  # where the hash chain breaks: the records before it are answered


@dataclass(frozen=True)
class Record:
    summary: RecordSummary
    record: Json  # the body as logged, sensitive values sealed
    reasons: list[Json]  # each fired rule: rule, step, message, clause, file, line
    approvals: list[Json]
    note: str | None


@dataclass(frozen=True)
class Verification:
    ok: bool
    count: int
    head: str | None
    bad_seq: int | None
    reason: str | None
    depends: list[Json]
    blobs_checked: int
    keys_checked: int


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    state: str  # queued, running, done, failed
    done: int
    total: int | None
    report: Json | None  # once done: the replay report (`reproduced` of `total`)
    error: Json | None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    @classmethod
    def from_json(cls, d: Json) -> Job:
        progress = d.get("progress") or {}
        return cls(
            d["id"],
            d["kind"],
            d["state"],
            progress.get("done", 0),
            progress.get("total"),
            d.get("report"),
            d.get("error"),
        )


@dataclass(frozen=True)
class Health:
    ok: bool
    bundle_version: str | None


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reasons: list[Json]  # each `what` and `message` (details with an admin token)
    bundle_version: str | None
    snapshot_id: str | None
    domains: list[str]
    log: bool


# -- the client --------------------------------------------------------------------------------


def _stamp(now: Now) -> str | None:
    if now is None or isinstance(now, str):
        return now
    aware = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    return aware.isoformat().replace("+00:00", "Z")


class Client:
    """A client of one ``charter serve`` at ``base_url`` (``http://host:port``, or ``https://``,
    with any path prefix a proxy adds). ``token``: the bearer token. ``timeout``: seconds for
    connecting and for each read. ``verify``: for HTTPS, True (the system's CAs), a CA file,
    an ``ssl.SSLContext``, or False (no check: tests only). ``cert``: a client certificate
    (PEM file, or (certificate, key) files) for mTLS."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        verify: bool | str | ssl.SSLContext = True,
        cert: str | tuple[str, str] | None = None,
    ) -> None:
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"`{base_url}` is not an http:// or https:// address")
        self.base_url = base_url
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if self._https else 80)
        self._prefix = url.path.rstrip("/")
        self.timeout = timeout
        self._context = self._tls(verify, cert) if self._https else None
        self._headers = {"Accept": "application/json", "User-Agent": "charter-client"}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token}"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[http.client.HTTPConnection] = []

    @staticmethod
    def _tls(verify: bool | str | ssl.SSLContext, cert: str | tuple[str, str] | None) -> ssl.SSLContext:
        if isinstance(verify, ssl.SSLContext):
            context = verify
        elif isinstance(verify, str):
            context = ssl.create_default_context(cafile=verify)
        else:
            context = ssl.create_default_context()
            if not verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        if cert is not None:
            certfile, keyfile = (cert, None) if isinstance(cert, str) else cert
            context.load_cert_chain(certfile, keyfile)
        return context

    # -- connections ---------------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._https:
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout, context=self._context)
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
            self._local.conn = conn
            with self._lock:
                self._open.append(conn)
        elif conn.sock is not None and select.select([conn.sock], [], [], 0)[0]:
            conn.close()  # readable while idle: the server closed it (or sent what nobody asked for)
        return conn

    def close(self) -> None:
        """Close every thread's connection (a later request opens a new one)."""
        with self._lock:
            conns, self._open = self._open, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, body: Any = None, query: Mapping[str, Any] | None = None) -> Any:
        status, data = self._exchange(method, path, body, query)
        if 200 <= status < 300:
            return data
        raise self._error(status, data)

    def _exchange(
        self, method: str, path: str, body: Any = None, query: Mapping[str, Any] | None = None
    ) -> tuple[int, Any]:
        """(status, the JSON answered), whatever the status; ``ServiceError`` C088 without an answer."""
        target = self._prefix + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            target += "?" + urllib.parse.urlencode(params)
        headers = dict(self._headers)
        payload = None
        if body is not None:
            payload = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            conn = self._connection()
            reused = conn.sock is not None
            try:
                conn.request(method, target, payload, headers)
                response = conn.getresponse()
                raw = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                conn.close()
                if reused and method == "GET" and attempt == 1:
                    continue  # the server closed the kept-alive connection: reading again is harmless
                raise self._unreachable(method, path, exc) from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise self._unreachable(method, path, exc) from None
            return response.status, self._json(response, raw)
        raise AssertionError("unreachable")  # pragma: no cover: the loop returns or raises

    def _unreachable(self, method: str, path: str, exc: BaseException) -> ServiceError:
        hint = "is the service running at this address?"
        if method != "GET":
            hint += " a decision may have been made and logged: find it with `records` before deciding again"
        reason = str(exc) or exc.__class__.__name__
        return ServiceError(
            f"no answer from {self.base_url} to {method} {path}: {reason}", status=0, code=NO_ANSWER, hint=hint
        )

    def _json(self, response: http.client.HTTPResponse, raw: bytes) -> Any:
        media = (response.getheader("content-type") or "").partition(";")[0].strip()
        if media != "application/json":
            return {"_text": raw.decode("utf-8", "replace")}
        try:
            return json.loads(raw)
        except ValueError:
            return {"_text": raw.decode("utf-8", "replace")}

    @staticmethod
    def _error(status: int, data: Any) -> ServiceError:
        error = data.get("error") if isinstance(data, dict) else None
        if not isinstance(error, dict):
            text = data.get("_text", "") if isinstance(data, dict) else ""
            return ServiceError(
                f"the service answered {status} without its error shape: {text.strip()[:200]}",
                status=status,
                code=NO_ANSWER,
            )
        return ServiceError(
            str(error.get("message", "")),
            status=status,
            code=str(error.get("code", NO_ANSWER)),
            hint=error.get("hint"),
            errors=error.get("errors") or (),
            body=error,
        )

    # -- deciding ------------------------------------------------------------------------------

    def decide(self, domain: str, facts: Mapping[str, Any], now: Now, *, explain: bool = False) -> Decision:
        """``POST /v1/decide/{domain}``: one decision. ``now``: its time (None: the server's clock)."""
        body = {"facts": dict(facts), "now": _stamp(now)}
        query = {"explain": "true"} if explain else None
        return Decision.from_json(self._request("POST", f"/v1/decide/{_quote(domain)}", body, query))

    def decide_batch(
        self, domain: str, items: Sequence[Mapping[str, Any]], now: Now, *, explain: bool = False
    ) -> Batch:
        """``POST /v1/decide/{domain}/batch``: one result per item, in order; a ``Failure`` in
        place of an item that could not be decided (the others still are)."""
        body = {"facts": [dict(i) for i in items], "now": _stamp(now)}
        query = {"explain": "true"} if explain else None
        d = self._request("POST", f"/v1/decide/{_quote(domain)}/batch", body, query)
        results = [_decision_or_failure(r) for r in d["results"]]
        return Batch(
            d["domain"], d["bundle_version"], d.get("snapshot_id"), d["count"], d["decided"], d["errors"], results
        )

    def customer(
        self,
        customer: Mapping[str, Any],
        now: Now,
        *,
        explain: bool = False,
        **parts: Any,
    ) -> CustomerDecisions:
        """``POST /v1/customer``: every decision about one customer. ``parts`` are the body's
        other members by name, as docs/serve.md lists them (``tickets=[...]``, ``events=[...]``,
        and the request of a domain that asks for one, e.g. the access request); each domain
        the service has decides from them (the client names none)."""
        body: Json = {"customer": dict(customer), "now": _stamp(now)}
        body.update({k: v for k, v in parts.items() if v is not None})
        d = self._request("POST", "/v1/customer", body, {"explain": "true"} if explain else None)
        decisions: dict[str, Decision | Failure | list[Decision | Failure]] = {}
        for domain, made in d["decisions"].items():
            decisions[domain] = (
                [_decision_or_failure(m) for m in made] if isinstance(made, list) else _decision_or_failure(made)
            )
        return CustomerDecisions(
            d.get("customer"), d["now"], d["bundle_version"], d.get("snapshot_id"), d["decision_ids"], decisions
        )

    # -- what serves ---------------------------------------------------------------------------

    def bundle(self) -> Bundle:
        """``GET /v1/bundle``: the bundle serving, its rules and approvals; the snapshot in use."""
        d = self._request("GET", "/v1/bundle")
        keys = ("bundle_version", "snapshot_id", "files", "approvals", "periods", "domains", "snapshot")
        return Bundle(*(d.get(k) for k in keys))

    def health(self) -> Health:
        """``GET /health``: whether the process answers (``ServiceError`` C088 when it does not)."""
        status, d = self._exchange("GET", "/health")
        return Health(status == 200, d.get("bundle_version") if isinstance(d, dict) else None)

    def ready(self) -> Readiness:
        """``GET /ready``: 200 or 503 alike, as a ``Readiness`` (``ready`` false, with its reasons)."""
        status, d = self._exchange("GET", "/ready")
        if status not in (200, 503) or not isinstance(d, dict) or "ready" not in d:
            raise self._error(status, d)
        return Readiness(
            bool(d["ready"]), d["reasons"], d.get("bundle_version"), d.get("snapshot_id"), d["domains"], d["log"]
        )

    def metrics(self) -> str:
        """``GET /metrics``: the Prometheus text (a token with `metrics`)."""
        d = self._request("GET", "/metrics")
        return str(d.get("_text", ""))

    # -- the decision log ----------------------------------------------------------------------

    def records(
        self,
        *,
        customer: str | None = None,
        rule: str | None = None,
        domain: str | None = None,
        outcome: str | None = None,
        since: Now = None,
        until: Now = None,
        limit: int | None = None,
    ) -> Records:
        """``GET /v1/log/records``: the first ``limit`` records that match, in log order."""
        query = {
            "customer": customer,
            "rule": rule,
            "domain": domain,
            "outcome": outcome,
            "since": _stamp(since),
            "until": _stamp(until),
            "limit": limit,
        }
        d = self._request("GET", "/v1/log/records", query=query)
        return Records([RecordSummary.from_json(r) for r in d["records"]], d["truncated"], d.get("chain_broken"))

    def record(self, record_id: str) -> Record:
        """``GET /v1/log/records/{id}``: one record (its id, or 8 or more characters of it) with its reasons."""
        d = self._request("GET", f"/v1/log/records/{_quote(record_id)}")
        return Record(RecordSummary.from_json(d), d["record"], d["reasons"], d.get("approvals", []), d.get("note"))

    def verify(self, head: str | None = None) -> Verification:
        """``POST /v1/log/verify``: the hash chain (ending at ``head`` when given) and what the records need."""
        d = self._request("POST", "/v1/log/verify", {} if head is None else {"head": head})
        return Verification(
            d["ok"],
            d["count"],
            d.get("head"),
            d.get("bad_seq"),
            d.get("reason"),
            d.get("depends", []),
            d.get("blobs_checked", 0),
            d.get("keys_checked", 0),
        )

    def replay(
        self,
        *,
        domain: str | None = None,
        customer: str | None = None,
        rule: str | None = None,
        since: Now = None,
        until: Now = None,
    ) -> Job:
        """``POST /v1/log/replay``: start replaying the records these keep, as a job (``wait`` for it)."""
        filters = {"domain": domain, "customer": customer, "rule": rule, "since": _stamp(since), "until": _stamp(until)}
        return Job.from_json(
            self._request("POST", "/v1/log/replay", {k: v for k, v in filters.items() if v is not None})
        )

    def job(self, job_id: str) -> Job:
        """``GET /v1/jobs/{id}``: the job's state and progress, and its report once done."""
        return Job.from_json(self._request("GET", f"/v1/jobs/{_quote(job_id)}"))

    def wait(self, job: Job | str, *, timeout: float = 300.0, interval: float = 0.2) -> Job:
        """Ask after ``job`` every ``interval`` seconds until it is done or failed; ``TimeoutError``
        after ``timeout`` seconds (the job goes on in the service)."""
        job_id = job.id if isinstance(job, Job) else job
        deadline = time.monotonic() + timeout
        while True:
            current = self.job(job_id)
            if current.finished:
                return current
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {current.state} after {timeout:g} s")
            time.sleep(interval)


def _quote(part: str) -> str:
    return urllib.parse.quote(part, safe="")
