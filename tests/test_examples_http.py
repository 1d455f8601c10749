"""The HTTP examples (examples/http/) run against a real `charter serve` on a loopback port.

`client.mjs` with Node.js (skipped only when `node` is absent), `curl.sh` with curl: each
step's output is checked against what the server logged, read back with the Python client.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import ROOT, serving_with_tokens

from engine.client import Client

HTTP = ROOT / "examples" / "http"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """(url, token by name): a server with a log, a population and tokens for deciding and reading the log."""
    scopes = {"crm": ["decide"], "auditor": ["log:read"]}
    with serving_with_tokens(tmp_path_factory.mktemp("served"), scopes) as (url, secrets, _):
        yield url, secrets


def run(cmd: list[str], url: str, token: str, log_token: str | None) -> list[dict[str, Any]]:
    env = {**os.environ, "CHARTER_URL": url, "CHARTER_TOKEN": token}
    env.pop("CHARTER_LOG_TOKEN", None)
    if log_token is not None:
        env["CHARTER_LOG_TOKEN"] = log_token
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr + done.stdout
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def logged_for(url: str, token: str, customer: str) -> set[str]:
    with Client(url, token) as auditor:
        return {r.decision_id for r in auditor.records(customer=customer, domain="access", limit=1000).records}


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_the_node_example_decides_and_reads_the_log(served: tuple[str, dict[str, str]]) -> None:
    url, tokens = served
    node = shutil.which("node")
    assert node is not None
    steps = run([node, str(HTTP / "client.mjs")], url, tokens["crm"], tokens["auditor"])
    by = {s["step"]: s for s in steps}
    assert list(by) == ["decide", "batch", "customer", "records"]
    decided = by["decide"]
    assert decided["effect"] in ("allow", "deny", "partial") and len(decided["decision_id"]) == 64
    batch = by["batch"]
    assert (batch["count"], batch["decided"], batch["errors"]) == (3, 2, 1)
    assert batch["results"][2]["index"] == 2 and batch["results"][2]["error"].startswith("F")
    customer = by["customer"]
    assert customer["customer"] == "C000001" and customer["value_tier"]
    assert {"tiering", "classification", "retention", "escalation", "access"} <= set(customer["domains"])
    found = set(by["records"]["decision_ids"])
    assert decided["decision_id"] in found
    assert found == logged_for(url, tokens["auditor"], "C000001")


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_the_node_example_reports_a_refused_step_in_the_error_shape(served: tuple[str, dict[str, str]]) -> None:
    url, tokens = served
    node = shutil.which("node")
    assert node is not None
    steps = run([node, str(HTTP / "client.mjs")], url, tokens["crm"], None)  # no log token: `decide` only
    records = steps[-1]
    assert records["step"] == "records"
    assert records["error"]["status"] == 403 and records["error"]["code"] == "C081"
    assert "log:read" in records["error"]["message"] and "[" not in records["error"]["message"]
    assert all("error" not in s for s in steps[:-1])


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_curl_example(served: tuple[str, dict[str, str]]) -> None:
    url, tokens = served
    answers = run(["sh", str(HTTP / "curl.sh")], url, tokens["crm"], tokens["auditor"])
    assert len(answers) == 4
    decided, batch, customer, records = answers
    assert decided["domain"] == "access" and decided["decision_id"]
    assert batch["count"] == batch["decided"] == 2 and [r["index"] for r in batch["results"]] == [0, 1]
    assert customer["customer"] == "C000001" and len(customer["decisions"]["escalation"]) == 1
    assert "access" in customer["decisions"]
    assert 1 <= records["count"] <= 5  # limit=5: the first five in log order
    assert all(r["subject"] == "C000001" and r["domain"] == "access" for r in records["records"])


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_curl_example_stops_at_a_refusal_with_the_error_shape(served: tuple[str, dict[str, str]]) -> None:
    url, tokens = served
    env = {**os.environ, "CHARTER_URL": url, "CHARTER_TOKEN": tokens["auditor"]}  # cannot decide
    env.pop("CHARTER_LOG_TOKEN", None)
    done = subprocess.run(["sh", str(HTTP / "curl.sh")], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 22  # curl --fail-with-body, after printing the body
    error = json.loads(done.stdout.splitlines()[0])["error"]
    assert error["code"] == "C081" and "`decide`" in error["message"]


INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
    "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined, comments left out."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        word, _, rest = pending.strip().partition(" ")
        out.append((word, rest.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def test_the_dockerfile_parses_and_its_command_is_one_charter_serve_accepts() -> None:
    from engine.cli import _parser
    from engine.serve.cli import cmd_serve

    steps = dockerfile()
    assert all(word in INSTRUCTIONS for word, _ in steps), [w for w, _ in steps if w not in INSTRUCTIONS]
    assert [rest.split()[0] for word, rest in steps if word == "FROM"] == ["python:3.12-slim"] * 2
    users = [rest for word, rest in steps if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    for word, rest in steps:
        if word == "COPY" and not rest.startswith("--from"):
            sources = [s for s in rest.split() if not s.startswith("--")][:-1]
            assert all((ROOT / s).exists() for s in sources), sources
    cmds = [json.loads(rest) for word, rest in steps if word == "CMD"]
    assert cmds[0] == ["charter", "serve", *cmds[0][2:]]
    args = _parser().parse_args(cmds[0][1:])
    assert args.run is cmd_serve and args.host == "0.0.0.0"
    assert args.tokens and args.store.startswith("sqlite:////data/") and args.key_file.startswith("/keys/")
    assert args.log_format == "json"
    volumes = [json.loads(rest) for word, rest in steps if word == "VOLUME"]
    assert volumes == [["/data", "/keys"]]  # the key never beside the data


def test_the_dockerignore_lets_in_what_the_dockerfile_copies() -> None:
    kept = {line.strip().strip("!/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for word, rest in dockerfile():
        if word == "COPY" and not rest.startswith("--from"):
            for source in [s for s in rest.split() if not s.startswith("--")][:-1]:
                assert source.rstrip("/") in kept, source
