"""The Python client (`engine.client`) against a real `charter serve` on a loopback port.

One server for the module: the shipped policies, a SQLite log, a population snapshot built
from the example customers, and a tokens file with a token per job (decide; log:read and
replay; admin). Every method of the client is called for real; refusals (401, 403, 404, 422)
come back as the client's one error class with the service's code, message and hint.
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, ROOT, serving_with_tokens

from engine.client import Client, Decision, Failure, ServiceError
from engine.serve.auth import new_token

STAMP = "2025-06-30T00:00:00Z"


def lines(path: Path, n: int) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(n), f, strict=False)]


ACCESS = lines(ROOT / "examples" / "requests" / "access.jsonl", 20)
CUSTOMER = lines(EXAMPLES, 1)[0]


@dataclass
class Server:
    url: str
    tokens: dict[str, str]  # name -> secret
    proc: subprocess.Popen[str]

    def client(self, name: str | None, **kwargs: Any) -> Client:
        return Client(self.url, None if name is None else self.tokens[name], **kwargs)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    scopes = {"crm": ["decide"], "auditor": ["log:read", "replay"], "ops": ["admin"]}
    with serving_with_tokens(tmp_path_factory.mktemp("served"), scopes) as (url, secrets, proc):
        yield Server(url, secrets, proc)


def test_decide_names_the_logged_record_and_the_bundle(server: Server) -> None:
    with server.client("crm") as crm, server.client("ops") as ops:
        d = crm.decide("access", ACCESS[0], STAMP)
        explained = crm.decide("access", ACCESS[0], datetime(2025, 6, 30, tzinfo=UTC), explain=True)
        bundle = ops.bundle()
    assert isinstance(d, Decision) and d.domain == "access" and d.now == STAMP
    assert d.outputs["effect"] in ("allow", "deny", "partial") and d.decision_id and len(d.decision_id) == 64
    assert d.bundle_version == bundle.bundle_version and "access" in bundle.domains
    assert d.trace is None and explained.trace and explained.outputs == d.outputs
    assert explained.decision_id != d.decision_id  # each decision its own record
    assert bundle.snapshot is not None and bundle.snapshot_id == bundle.snapshot["id"]


def test_a_batch_answers_each_item_in_order_with_a_failure_in_place_of_a_bad_one(server: Server) -> None:
    items = [*ACCESS[:5], {"subject": "nobody"}, *ACCESS[5:8]]
    with server.client("crm") as crm:
        batch = crm.decide_batch("access", items, STAMP)
        singles = [crm.decide("access", item, STAMP) for item in ACCESS[:8]]
    assert (batch.count, batch.decided, batch.errors) == (9, 8, 1)
    bad = batch.results[5]
    assert isinstance(bad, Failure) and bad.index == 5 and bad.code.startswith("F") and bad.errors
    decided = [r for r in batch.results if isinstance(r, Decision)]
    assert [r.index for r in decided] == [0, 1, 2, 3, 4, 6, 7, 8]
    assert [r.outputs for r in decided] == [s.outputs for s in singles]


def test_customer_decides_every_domain_about_one_customer(server: Server) -> None:
    ticket = {"id": "T1", "category": "complaint", "severity": "major", "complexity": "simple", "opened_at": STAMP}
    access = {"subject": {"id": "u009", "roles": ["agent"]}, "action": "read", "purpose": "service"}
    with server.client("crm") as crm:
        got = crm.customer(CUSTOMER, STAMP, tickets=[ticket, {**ticket, "id": "T2"}], access=access)
        tier = crm.decide("tiering", CUSTOMER, STAMP)
    assert got.customer == CUSTOMER["id"] and got.now == STAMP
    assert {"tiering", "classification", "retention", "escalation", "access"} <= set(got.decisions)
    tiering = got.decisions["tiering"]
    assert isinstance(tiering, Decision) and tiering.outputs == tier.outputs
    escalation = got.decisions["escalation"]
    assert isinstance(escalation, list) and len(escalation) == 2
    assert all(isinstance(e, Decision) and e.decision_id in got.decision_ids for e in escalation)
    assert got.snapshot_id == tier.snapshot_id is not None


def test_the_log_found_shown_verified_and_replayed(server: Server) -> None:
    who = ACCESS[10]["resource"]["customer"]
    with server.client("crm") as crm:
        made = crm.decide("access", ACCESS[10], STAMP)
    with server.client("auditor") as auditor:
        found = auditor.records(customer=who, domain="access", limit=1000)
        one = auditor.record(made.decision_id[:12] if made.decision_id else "")
        checked = auditor.verify()
        again = auditor.verify(head=checked.head)
        job = auditor.replay(customer=who)
        done = auditor.wait(job, timeout=120)
    assert made.decision_id in [r.decision_id for r in found.records] and not found.truncated
    assert all(r.domain == "access" and r.subject == who for r in found.records)
    assert one.summary.decision_id == made.decision_id and one.summary.outputs == made.outputs
    assert [r["rule"] for r in one.reasons] == made.fired_ids
    assert checked.ok and checked.count >= 1 and checked.head and again.ok
    assert job.kind == "replay" and done.state == "done" and done.report is not None
    assert done.total is not None and done.done == done.total >= 1
    assert done.report["reproduced"] == done.report["total"] == done.total


def test_health_and_readiness(server: Server) -> None:
    with server.client(None) as anyone, server.client("ops") as ops:
        health, ready, detailed = anyone.health(), anyone.ready(), ops.ready()
        metrics = ops.metrics()
    assert health.ok and health.bundle_version == ready.bundle_version
    assert ready.ready and ready.reasons == [] and ready.log and "access" in ready.domains
    assert detailed.ready and detailed.snapshot_id is not None
    assert "charter_decisions_total" in metrics


def test_a_token_without_the_scope_is_refused_with_the_services_error(server: Server) -> None:
    with server.client("auditor") as auditor, pytest.raises(ServiceError) as refused:
        auditor.decide("access", ACCESS[0], STAMP)
    err = refused.value
    assert (err.status, err.code) == (403, "C081") and "`decide`" in err.message
    with server.client("crm") as crm, pytest.raises(ServiceError) as log_refused:
        crm.records(customer="C000001")
    assert (log_refused.value.status, log_refused.value.code) == (403, "C081")
    assert "log:read" in log_refused.value.message


def test_no_token_or_an_unknown_one_is_refused(server: Server) -> None:
    for client in (server.client(None), Client(server.url, new_token())):
        with client, pytest.raises(ServiceError) as refused:
            client.decide("access", ACCESS[0], STAMP)
        assert (refused.value.status, refused.value.code) == (401, "C080")


def test_bad_facts_are_422_with_one_error_per_field(server: Server) -> None:
    bad = {**ACCESS[0], "subject": {"id": 7, "roles": "agent"}, "action": "fly"}
    with server.client("crm") as crm, pytest.raises(ServiceError) as refused:
        crm.decide("access", bad, STAMP)
    err = refused.value
    assert err.status == 422 and err.code.startswith("F") and len(err.errors) >= 2
    assert all({"code", "message"} <= set(e) for e in err.errors)
    assert err.body["code"] == err.code and str(err).endswith(f"[{err.code}, HTTP 422]")


def test_other_refusals_carry_code_and_hint(server: Server) -> None:
    with server.client("crm") as crm:
        with pytest.raises(ServiceError) as unknown:
            crm.decide("acess", ACCESS[0], STAMP)
        with pytest.raises(ServiceError) as bad_now:
            crm.decide("access", ACCESS[0], "yesterday")
    assert (unknown.value.status, unknown.value.code) == (404, "C060") and "access" in (unknown.value.hint or "")
    assert (bad_now.value.status, bad_now.value.code) == (422, "C063")
    with server.client("auditor") as auditor:
        with pytest.raises(ServiceError) as no_job:
            auditor.job("0" * 32)
        with pytest.raises(ServiceError) as no_record:
            auditor.record("f" * 64)
    assert (no_job.value.status, no_job.value.code) == (404, "C067")
    assert (no_record.value.status, no_record.value.code) == (404, "C066")


def test_one_client_shared_by_threads_keeps_one_connection_each(server: Server) -> None:
    client = server.client("crm")
    got: list[list[str | None]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            for item in ACCESS[i * 5 : i * 5 + 5]:
                got[i].append(client.decide("access", item, STAMP).decision_id)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for _ in range(5):  # and this thread's, reused request after request
        client.health()
    opened = len(client._open)
    client.close()
    assert not errors, errors
    ids = [rid for part in got for rid in part]
    assert len(ids) == 20 == len(set(ids)) and all(ids)
    assert opened == 5  # one per thread, kept alive across its requests


def test_a_service_that_does_not_answer_is_c088_with_status_0() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        with Client(f"http://127.0.0.1:{port}", timeout=5) as client, pytest.raises(ServiceError) as lost:
            client.decide("access", ACCESS[0], STAMP)
    err = lost.value
    assert (err.status, err.code) == (0, "C088") and "find it with `records`" in (err.hint or "")
    with pytest.raises(ValueError, match="not an http"):
        Client("ftp://example.org")


def test_a_connection_the_server_closed_while_idle_is_opened_again(server: Server) -> None:
    with server.client("crm") as crm:
        crm.decide("access", ACCESS[0], STAMP)
        first = crm._local.conn.sock
        deadline = time.monotonic() + 30
        while not select.select([first], [], [], 0.5)[0]:  # until uvicorn closes it (keep-alive: 5 s)
            assert time.monotonic() < deadline, "the server kept the idle connection open"
        d = crm.decide("access", ACCESS[1], STAMP)  # a decision, never retried: found closed before sending
        assert d.decision_id and crm._local.conn.sock is not first
