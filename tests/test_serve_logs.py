"""`charter serve --log-format json`: the service's own log as one JSON object per line on stderr.

A real server on a loopback port answers a decision, a refusal for want of a token and one for
want of a scope, then stops (SIGTERM); every line it wrote on stderr is then a JSON object with
time, level, logger and message, each request one line with its method, path, status,
duration, token name and decision id, and neither a token nor a fact anywhere.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import POLICIES, ROOT

from engine.client import Client, ServiceError
from engine.serve.auth import digest, new_token

STAMP = "2025-06-30T00:00:00Z"
SECRET_FACT = "18460269859-a-fact-never-logged"


def test_json_logs_one_object_per_line_with_each_request(tmp_path: Path) -> None:
    crm, auditor = new_token(), new_token()
    entries = [
        {"name": "crm-backend", "scopes": ["decide"], "sha256": digest(crm)},
        {"name": "auditors", "scopes": ["log:read"], "sha256": digest(auditor)},
    ]
    (tmp_path / "tokens.json").write_text(json.dumps({"tokens": entries}), encoding="utf-8")
    cmd = [sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--policies", str(POLICIES)]
    cmd += ["--store", f"sqlite:///{tmp_path / 'log.db'}", "--key-file", str(tmp_path / "k")]
    cmd += ["--watch-interval", "0", "--tokens", str(tmp_path / "tokens.json"), "--log-format", "json"]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        started = json.loads(first)
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", started["message"])
        assert m, first
        url = m.group(1)
        facts = json.loads((ROOT / "examples" / "requests" / "access.jsonl").read_text().splitlines()[0])
        facts["resource"]["record"]["phone"] = SECRET_FACT
        with Client(url, crm) as client:
            decided = client.decide("access", facts, STAMP)
            client.bundle()
        with Client(url) as anonymous, pytest.raises(ServiceError):
            anonymous.decide("access", facts, STAMP)
        with Client(url, auditor) as reader, pytest.raises(ServiceError):
            reader.decide("access", facts, STAMP)
        proc.terminate()
        rest = proc.stderr.read()  # not communicate(): it would skip what readline() buffered
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=20)
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == 0
    text = first + rest
    lines = [json.loads(line) for line in text.splitlines()]  # every line one JSON object
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert all(line["time"].endswith("Z") for line in lines)
    assert any("bearer token(s)" in line["message"] for line in lines), [line["message"] for line in lines[:4]]
    requests = [line for line in lines if line["logger"] == "charter.request"]
    shown = [(r["method"], r["path"], r["status"], r.get("token")) for r in requests]
    assert shown == [
        ("POST", "/v1/decide/access", 200, "crm-backend"),
        ("GET", "/v1/bundle", 200, "crm-backend"),
        ("POST", "/v1/decide/access", 401, None),
        ("POST", "/v1/decide/access", 403, "auditors"),
    ]
    assert requests[0]["decision_id"] == decided.decision_id
    assert all("decision_id" not in r for r in requests[1:])
    assert all(isinstance(r["duration_ms"], float) and r["duration_ms"] >= 0 for r in requests)
    assert all(r["level"] == "info" for r in requests)
    for never in (crm, auditor, SECRET_FACT, "u009"):
        assert never not in text


def test_text_logs_stay_as_they_were(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--policies", str(POLICIES)]
    cmd += ["--watch-interval", "0"]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first)
        assert url and first.startswith("charter serve: "), first
        with Client(url.group(1)) as client:
            assert client.health().ok
        proc.terminate()
        rest = proc.stderr.read()  # not communicate(): it would skip what readline() buffered
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=20)
        if proc.stderr is not None:
            proc.stderr.close()
    assert "GET /health" not in rest  # requests are logged in JSON only
    assert not rest.lstrip().startswith("{")
