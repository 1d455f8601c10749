"""`charter serve`: the HTTP decision service, through Starlette's TestClient and a real server.

Each decision the service answers is compared with `Engine.evaluate`'s for the same input;
logged decisions are found in the store by their id, verified and replayed; a broken policy
edit leaves /ready 503 and the old policies deciding; the OpenAPI document served is the
one checked in.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, NOW, POLICIES, ROOT
from starlette.testclient import TestClient

from engine import population
from engine.api import Engine
from engine.audit.protect import Protector, load_key
from engine.plugins import open_store
from engine.population import Snapshot
from engine.serve.app import create_app
from engine.serve.service import Service, TimedLog

STAMP = "2025-06-30T00:00:00Z"
REQUESTS = ROOT / "examples" / "requests"


def lines(path: Path, n: int) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(n), f, strict=False)]


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    engine = Engine(POLICIES)
    return engine.build_snapshot(lines(EXAMPLES, 2000), now=NOW)


@pytest.fixture(scope="module")
def reference(snapshot: Snapshot) -> Engine:
    """An engine of its own, unlogged: what the service's answers are compared with."""
    return Engine(POLICIES, snapshot=snapshot)


@pytest.fixture(scope="module")
def examples() -> dict[str, dict[str, Any]]:
    customer = lines(EXAMPLES, 1)[0]
    out = {d: lines(REQUESTS / f"{d}.jsonl", 1)[0] for d in ("access", "retention", "escalation")}
    return {"tiering": customer, "classification": customer, **out}


@pytest.fixture(scope="module")
def client(snapshot: Snapshot) -> Iterator[TestClient]:
    service = Service(Engine(POLICIES, snapshot=snapshot), watch_interval=None)
    with TestClient(create_app(service)) as c:
        yield c


@pytest.fixture
def logged(tmp_path: Path, snapshot: Snapshot) -> Iterator[tuple[TestClient, Service]]:
    store = open_store(f"sqlite:///{tmp_path / 'log.db'}")
    protector = Protector(store, load_key(tmp_path / "log.key", create=True))
    engine = Engine(POLICIES, snapshot=snapshot, log=TimedLog(store, protector))
    service = Service(engine, store=store, protector=protector, watch_interval=None)
    with TestClient(create_app(service)) as c:
        yield c, service


def without(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head == (f"{name}{{{want}}}" if want else name):
            return float(value)
    return 0.0


# -- deciding --------------------------------------------------------------------------------------


@pytest.mark.parametrize("domain", ["tiering", "classification", "access", "retention", "escalation"])
def test_a_decision_is_the_engines_for_the_same_input(
    client: TestClient, reference: Engine, examples: dict[str, dict[str, Any]], domain: str
) -> None:
    facts = examples[domain]
    r = client.post(f"/v1/decide/{domain}", json={"facts": facts, "now": STAMP})
    assert r.status_code == 200, r.text
    got = r.json()
    want = reference.evaluate(domain, facts, now=NOW).to_dict()
    assert without(got, "decision_id", "snapshot_id") == without(want, "snapshot_id")
    assert got["decision_id"] is None  # no log configured
    assert got["bundle_version"] == reference.bundle_version == r.headers["X-Charter-Bundle"]
    ranks = domain in ("tiering", "escalation")  # escalation ranks through tiering, which it uses
    assert got["snapshot_id"] == (reference.snapshot.id if ranks and reference.snapshot else None)

    explained = client.post(f"/v1/decide/{domain}?explain=true", json={"facts": facts, "now": STAMP}).json()
    assert explained["trace"] == reference.evaluate(domain, facts, now=NOW, explain=True).to_dict()["trace"]


def test_without_now_the_server_clock_at_the_request_is_used(client: TestClient, examples: dict[str, Any]) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    got = client.post("/v1/decide/access", json={"facts": examples["access"]}).json()
    after = datetime.now(UTC)
    assert before <= datetime.fromisoformat(got["now"]) <= after


def test_bad_input_gets_the_error_shape_and_never_a_traceback(client: TestClient, examples: dict[str, Any]) -> None:
    bad = {**examples["tiering"], "annual_sales": "lots"}
    r = client.post("/v1/decide/tiering", json={"facts": bad, "now": STAMP})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["subject"] == "C000001" and [e["field"] for e in err["errors"]] == ["annual_sales"]

    r = client.post("/v1/decide/tierng", json={"facts": {}})
    assert r.status_code == 404 and r.json()["error"]["code"] == "C060"
    assert "did you mean `tiering`?" in r.json()["error"]["hint"]

    cases = [
        (client.post("/v1/decide/access", content=b'{"facts": {'), 400, "C061"),
        (client.post("/v1/decide/access", content=b""), 400, "C061"),
        (client.post("/v1/decide/access", json=[1, 2]), 422, "C062"),
        (client.post("/v1/decide/access", json={"facts": "x"}), 422, "C062"),
        (client.post("/v1/decide/access", json={"facts": {}, "now": "yesterday"}), 422, "C063"),
        (client.post("/v1/decide/access?explain=maybe", json={"facts": {}}), 422, "C064"),
        (client.get("/v1/log/records"), 404, "C065"),
        (client.get("/v1/jobs/nope"), 404, "C067"),
        (client.get("/v2/nothing"), 404, "C068"),
        (client.delete("/v1/bundle"), 405, "C068"),
        (client.post("/v1/decide/access/batch", json={"facts": {}}), 422, "C062"),
        (client.post("/v1/customer", json={"customer": 3}), 422, "C062"),
    ]
    for resp, status, code in cases:
        assert (resp.status_code, resp.json()["error"]["code"]) == (status, code), resp.text
        assert set(resp.json()) == {"error"} and resp.json()["error"]["message"]
        assert "Traceback" not in resp.text


def test_a_body_over_the_limit_is_refused(snapshot: Snapshot, examples: dict[str, Any]) -> None:
    service = Service(Engine(POLICIES, snapshot=snapshot), watch_interval=None)
    with TestClient(create_app(service, max_body=512)) as c:
        r = c.post("/v1/decide/access", json={"facts": examples["access"], "pad": "x" * 600})
    assert r.status_code == 413 and r.json()["error"]["code"] == "C068"


def test_a_batch_answers_each_item_in_place(client: TestClient, reference: Engine) -> None:
    items: list[Any] = lines(REQUESTS / "access.jsonl", 20)
    items[3] = {"subject": {"id": "u1"}, "action": "read"}  # bad: no roles, purpose or resource
    items[7] = "not an object"
    r = client.post("/v1/decide/access/batch", json={"facts": items, "now": STAMP})
    assert r.status_code == 200
    out = r.json()
    assert (out["count"], out["decided"], out["errors"]) == (20, 18, 2)
    assert [x["index"] for x in out["results"]] == list(range(20))
    for i, (item, result) in enumerate(zip(items, out["results"], strict=True)):
        if i in (3, 7):
            assert result["error"]["code"].startswith("F"), result
            continue
        want = reference.evaluate("access", item, now=NOW).to_dict()
        assert without(result, "index", "decision_id", "snapshot_id") == without(want, "snapshot_id")


def test_a_decision_that_cannot_be_made_is_reported_in_place(examples: dict[str, Any]) -> None:
    service = Service(Engine(POLICIES), watch_interval=None)  # no snapshot: tiering cannot rank
    with TestClient(create_app(service)) as c:
        one = c.post("/v1/decide/tiering", json={"facts": examples["tiering"], "now": STAMP})
        batch = c.post("/v1/decide/tiering/batch", json={"facts": [examples["tiering"]] * 3, "now": STAMP})
        access = c.post("/v1/decide/access", json={"facts": examples["access"], "now": STAMP})
    assert one.status_code == 422 and one.json()["error"]["code"].startswith("V")
    assert batch.status_code == 200 and batch.json()["errors"] == 3
    assert all(r["error"]["code"] == one.json()["error"]["code"] for r in batch.json()["results"])
    assert access.status_code == 200  # a domain that does not rank still decides


def test_the_customer_endpoint_decides_every_domain_as_the_engine_does(
    client: TestClient, reference: Engine, examples: dict[str, Any]
) -> None:
    customer = examples["tiering"]
    ticket = examples["escalation"]["ticket"]
    subject = {"id": "u009", "roles": ["data_engineer"], "department": "west"}
    body = {
        "customer": customer,
        "now": STAMP,
        "tickets": [ticket],
        "access": {"subject": subject, "action": "read", "purpose": "service", "fields": ["name", "email"]},
    }
    r = client.post("/v1/customer", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["customer"] == "C000001" and got["bundle_version"] == reference.bundle_version
    decisions = got["decisions"]
    assert set(decisions) == {"tiering", "classification", "retention", "escalation", "access"}

    tier = reference.evaluate("tiering", customer, now=NOW)
    assert without(decisions["tiering"], "decision_id", "snapshot_id") == without(tier.to_dict(), "snapshot_id")
    assert (
        decisions["classification"]["outputs"]
        == reference.evaluate("classification", customer, now=NOW).to_dict()["outputs"]
    )
    retention = {
        "customer": "C000001",
        "record_type": "customer_profile",
        "record": customer,
        "created_at": customer["first_purchase_at"],
        "last_activity_at": customer["last_purchase_at"],
    }
    assert decisions["retention"]["outputs"] == reference.evaluate("retention", retention, now=NOW).to_dict()["outputs"]
    escalation = {"ticket": ticket, "customer": customer, "events": []}
    assert [d["outputs"] for d in decisions["escalation"]] == [
        reference.evaluate("escalation", escalation, now=NOW).to_dict()["outputs"]
    ]
    access = {
        "subject": subject,
        "action": "read",
        "purpose": "service",
        "resource": {
            "customer": "C000001",
            "record_type": "customer_profile",
            "tier": tier.outputs["value_tier"],  # the tiering decision's, as none was given
            "record": {"name": customer["name"], "email": customer["email"]},
        },
    }
    assert without(decisions["access"], "decision_id", "snapshot_id") == without(
        reference.evaluate("access", access, now=NOW).to_dict(), "snapshot_id"
    )

    partial = client.post("/v1/customer", json={**body, "tickets": [{"id": "T1"}]}).json()["decisions"]
    assert "error" in partial["escalation"][0] and "outputs" in partial["tiering"]  # the others still decided


def test_the_bundle_endpoint_describes_what_serves(client: TestClient, reference: Engine) -> None:
    r = client.get("/v1/bundle")
    assert r.status_code == 200
    b = r.json()
    assert b["bundle_version"] == reference.bundle_version == r.headers["X-Charter-Bundle"]
    assert b["files"] == list(reference.bundle.files)
    assert b["approvals"] == [] and b["snapshot_id"] == reference.snapshot.id  # type: ignore[union-attr]
    assert set(b["domains"]) == set(reference.domains)
    assert "no-sensitive-export" in {rule["id"] for rule in b["domains"]["access"]["rules"]}
    assert b["domains"]["access"]["uses"] == ["classification"]


def test_health_ready_metrics_and_openapi(client: TestClient, examples: dict[str, Any]) -> None:
    assert client.get("/health").json()["status"] == "ok"
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True and ready.json()["reasons"] == []

    before = client.get("/metrics").text
    for _ in range(3):
        client.post("/v1/decide/access", json={"facts": examples["access"], "now": STAMP})
    client.post("/v1/decide/access", json={"facts": {"action": "read"}, "now": STAMP})
    after = client.get("/metrics").text
    effect = client.post("/v1/decide/access", json={"facts": examples["access"], "now": STAMP}).json()["outputs"][
        "effect"
    ]
    grew = metric(after, "charter_decisions_total", domain="access", outcome=effect) - metric(
        before, "charter_decisions_total", domain="access", outcome=effect
    )
    assert grew == 3
    assert metric(after, "charter_decisions_total", domain="access", outcome="bad_facts") >= 1
    assert metric(after, "charter_decision_seconds_count", domain="access") >= 4
    version = client.get("/v1/bundle").json()["bundle_version"]
    assert re.search(rf'charter_bundle_info\{{snapshot="pop-[0-9a-f]+",version="{version}"\}} 1\.0', after)
    assert metric(after, "charter_ready") == 1.0

    served = client.get("/openapi.json").json()
    checked_in = json.loads((ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))
    assert served == checked_in, "regenerate it: python -m engine.serve.openapi > docs/openapi.json"
    routes = {r.path for r in client.app.routes}  # type: ignore[attr-defined]
    # every API route is described; the web workbench's pages (/ui, HTML for people) are not API
    assert set(served["paths"]) == routes - {"/openapi.json", "/ui"}
    assert all(p.startswith(("/v1/", "/health", "/ready", "/metrics")) for p in served["paths"])


# -- the decision log --------------------------------------------------------------------------------


def test_logged_decisions_are_found_verified_and_replayed(
    logged: tuple[TestClient, Service], examples: dict[str, Any]
) -> None:
    client, service = logged
    ids = []
    for domain in ("tiering", "access", "retention", "escalation"):
        got = client.post(f"/v1/decide/{domain}", json={"facts": examples[domain], "now": STAMP}).json()
        assert got["decision_id"] is not None and got["decision_id"] == got["record_id"]
        ids.append(got["decision_id"])
    batch = client.post("/v1/decide/access/batch", json={"facts": lines(REQUESTS / "access.jsonl", 5), "now": STAMP})
    ids += [r["decision_id"] for r in batch.json()["results"]]
    whole = client.post("/v1/customer", json={"customer": examples["tiering"], "now": STAMP}).json()
    assert len(whole["decision_ids"]) == 3  # tiering, classification, retention
    ids += whole["decision_ids"]
    assert len(set(ids)) == 12

    stored = {json.loads(data)["hash"] for _, data in service.store.read()}  # type: ignore[union-attr]
    assert set(ids) == stored

    one = client.get(f"/v1/log/records/{ids[1][:12]}")
    assert one.status_code == 200
    record = one.json()
    assert record["decision_id"] == ids[1] and record["domain"] == "access"
    assert record["reasons"] and all(r.get("message") and r.get("file") for r in record["reasons"])
    assert client.get("/v1/log/records/0000000000").status_code == 404

    found = client.get("/v1/log/records", params={"customer": "C000001", "domain": "tiering"}).json()
    assert [r["decision_id"] for r in found["records"]] == [ids[0], whole["decisions"]["tiering"]["decision_id"]]
    rule = record["reasons"][0]["rule"]
    by_rule = client.get("/v1/log/records", params={"rule": rule}).json()["records"]
    assert ids[1] in {r["decision_id"] for r in by_rule} and all(rule in r["fired"] for r in by_rule)
    outcome = record["outcome"]
    by_outcome = client.get("/v1/log/records", params={"domain": "access", "outcome": outcome}).json()["records"]
    assert by_outcome and all(r["outcome"] == outcome for r in by_outcome)
    limited = client.get("/v1/log/records", params={"limit": "2"}).json()
    assert limited["count"] == 2 and limited["truncated"] is True
    assert client.get("/v1/log/records", params={"since": "2025-07-01T00:00:00Z"}).json()["count"] == 0
    assert client.get("/v1/log/records", params={"limit": "0"}).json()["error"]["code"] == "C064"

    verified = client.post("/v1/log/verify").json()
    assert verified["ok"] is True and verified["count"] == 12
    # the bundle, plugin and snapshot blobs and the customers' keys the records need: all there
    assert verified["depends"] == [] and verified["blobs_checked"] >= 2 and verified["keys_checked"] >= 1
    assert client.post("/v1/log/verify", json={"head": "0" * 64}).json()["ok"] is False

    job = client.post("/v1/log/replay", json={})
    assert job.status_code == 202
    job_id = job.json()["id"]
    state = job.json()
    deadline = time.monotonic() + 30
    while state["state"] not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.05)
        state = client.get(f"/v1/jobs/{job_id}").json()
    assert state["state"] == "done", state
    assert state["progress"] == {"done": 12, "total": 12}
    assert state["report"]["total"] == state["report"]["reproduced"] == 12 and state["report"]["errors"] == []

    only = client.post("/v1/log/replay", json={"domain": "access"}).json()["id"]
    service.jobs.stop()
    assert client.get(f"/v1/jobs/{only}").json()["report"]["total"] == 6

    text = client.get("/metrics").text
    assert metric(text, "charter_log_append_seconds_count") == 8  # one per single decision, one for the batch
    assert client.get("/ready").json()["log"] is True


# -- reloading ----------------------------------------------------------------------------------------


def test_a_broken_edit_keeps_the_old_policies_serving_and_shows_in_ready(
    tmp_path: Path, snapshot: Snapshot, examples: dict[str, Any]
) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies, ignore=shutil.ignore_patterns("tests"))
    service = Service(Engine(policies, snapshot=snapshot, settle=0), watch_interval=None, settle=0)
    watcher = service.watcher_for_polling()
    body = {"facts": examples["access"], "now": STAMP}
    with TestClient(create_app(service)) as c:
        first = c.get("/v1/bundle").json()["bundle_version"]
        with (policies / "tiering.yaml").open("a", encoding="utf-8") as f:
            f.write("# a comment: a new version\n")
        assert watcher.poll()
        second = c.post("/v1/decide/access", json=body).json()["bundle_version"]
        assert second != first and c.get("/ready").status_code == 200

        text = (policies / "access.yaml").read_text(encoding="utf-8")
        (policies / "access.yaml").write_text(text.replace("effect: allow", "effect: perhaps", 1), encoding="utf-8")
        assert watcher.poll()
        ready = c.get("/ready")
        assert ready.status_code == 503
        reason = ready.json()["reasons"][0]
        assert reason["what"] == "reload" and "access.yaml" in reason["error"]
        served = c.post("/v1/decide/access", json=body)
        assert served.status_code == 200 and served.json()["bundle_version"] == second
        assert served.headers["X-Charter-Bundle"] == second
        metrics = c.get("/metrics").text
        assert metric(metrics, "charter_reloads_total") == 1 and metric(metrics, "charter_reloads_failed_total") == 1
        assert metric(metrics, "charter_ready") == 0

        (policies / "access.yaml").write_text(text, encoding="utf-8")
        assert watcher.poll()
        assert c.get("/ready").status_code == 200


# -- a real server -------------------------------------------------------------------------------------


def test_a_real_server_decides_over_a_socket_and_logs_durably(tmp_path: Path, snapshot: Snapshot) -> None:
    import http.client

    snap_file = tmp_path / "snapshot.json"
    population.save_file(snapshot, snap_file)
    db = tmp_path / "served.db"
    cmd = [sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--policies", str(POLICIES)]
    cmd += ["--store", f"sqlite:///{db}", "--key-file", str(tmp_path / "k"), "--snapshot", str(snap_file)]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        assert m, line
        conn = http.client.HTTPConnection("127.0.0.1", int(m.group(1)), timeout=10)
        request = lines(REQUESTS / "access.jsonl", 1)[0]
        ids = []
        for _ in range(3):  # one keep-alive connection
            conn.request("POST", "/v1/decide/access", json.dumps({"facts": request, "now": STAMP}))
            resp = conn.getresponse()
            got = json.loads(resp.read())
            assert resp.status == 200 and resp.getheader("X-Charter-Bundle") == got["bundle_version"]
            ids.append(got["decision_id"])
        conn.request("GET", "/ready")
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["snapshot_id"] == snapshot.id
        conn.close()
    finally:
        proc.terminate()
        _, rest = proc.communicate(timeout=20)
    assert proc.returncode == 0, rest  # a graceful shutdown on SIGTERM
    assert "charter.serve: stopped" in rest
    store = open_store(f"sqlite:///{db}")
    try:
        assert {json.loads(data)["hash"] for _, data in store.read()} == set(ids)
    finally:
        store.close()
