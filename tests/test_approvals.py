"""Approved bundles: an engine that requires N approvers refuses an unapproved or altered bundle
at load and at reload, keeps serving the old one, and records the approvals with each decision."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, POLICIES
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine import Engine
from engine.audit import DecisionLog, Protector
from engine.audit.approvals import APPROVALS_FILE, ApprovalPolicy, approve, read_approvals, review
from engine.audit.checkpoint import append_line
from engine.core.bundle import build_bundle
from engine.errors import PolicyErrors
from engine.plugins import build_registry, open_store

NOW = datetime(2025, 6, 30, tzinfo=UTC)
SIGNED = datetime(2026, 12, 1, tzinfo=UTC)
KEYS = {name: Ed25519PrivateKey.generate() for name in ("alice", "bob", "carol", "mallory")}
TRUSTED = ApprovalPolicy({n: KEYS[n].public_key() for n in ("alice", "bob", "carol")}, required=3)


def request() -> dict[str, Any]:
    with (EXAMPLES.parent / "requests" / "access.jsonl").open(encoding="utf-8") as f:
        return dict(json.loads(f.readline()))


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    d = tmp_path / "policies"
    shutil.copytree(POLICIES, d)
    return d


def version(d: Path) -> str:
    return build_bundle([d], build_registry()).version


def sign(d: Path, *names: str, key_of: dict[str, str] | None = None) -> None:
    v = version(d)
    for name in names:
        key = KEYS[(key_of or {}).get(name, name)]
        append_line(d / APPROVALS_FILE, approve(key, name, v, SIGNED))


def edit(d: Path) -> None:
    """A change an approver did not see: one comment line (the version hashes every byte)."""
    with (d / "access.yaml").open("a", encoding="utf-8") as f:
        f.write("# edited after approval\n")


def test_three_distinct_trusted_approvers_let_a_bundle_load(policies: Path) -> None:
    sign(policies, "alice", "bob", "carol")
    engine = Engine(policies, approvals=TRUSTED)
    assert [a["approver"] for a in engine.bundle.approvals] == ["alice", "bob", "carol"]
    assert engine.evaluate("access", request(), now=NOW).outputs["effect"] in ("allow", "deny", "partial")


@pytest.mark.parametrize(
    ("names", "key_of", "why"),
    [
        (("alice", "bob"), None, "has 2 of the 3 approvals"),
        (("alice", "bob", "mallory"), None, "`mallory` is not a trusted approver"),
        (("alice", "bob", "bob"), None, "`bob` approved twice"),
        (("alice", "bob", "carol"), {"carol": "mallory"}, "signed with another key"),
    ],
)
def test_an_unapproved_bundle_is_refused_at_load(
    policies: Path, names: tuple[str, ...], key_of: dict[str, str] | None, why: str
) -> None:
    sign(policies, *names, key_of=key_of)
    with pytest.raises(PolicyErrors) as err:
        Engine(policies, approvals=TRUSTED)
    text = " | ".join(e.describe() for e in err.value.errors)
    assert err.value.errors[0].code == "P030" and "approvals it needs" in text
    assert why in text and APPROVALS_FILE in text


def test_an_altered_approval_does_not_count(policies: Path) -> None:
    sign(policies, "alice", "bob", "carol")
    path = policies / APPROVALS_FILE
    lines = path.read_text().splitlines()
    forged = json.loads(lines[2])
    forged["time"] = "2020-01-01T00:00:00.000000Z"  # any field changed after signing
    path.write_text("\n".join([*lines[:2], json.dumps(forged)]) + "\n")
    found = review(read_approvals(path), version(policies), TRUSTED)
    assert len(found.valid) == 2 and found.problems == [
        (3, "`carol`'s signature does not verify: the approval was altered")
    ]


def test_an_edit_after_approval_is_refused_at_reload_and_the_old_bundle_serves(policies: Path) -> None:
    sign(policies, "alice", "bob", "carol")
    engine = Engine(policies, approvals=TRUSTED)
    before = engine.bundle_version
    edit(policies)
    with pytest.raises(PolicyErrors) as err:
        engine.reload()
    assert "the files changed after it was signed" in " ".join(e.message for e in err.value.errors)
    assert engine.bundle_version == before  # still serving what was approved
    assert engine.evaluate("access", request(), now=NOW).bundle_version == before
    sign(policies, "alice", "bob", "carol")  # the edit approved in turn
    assert engine.reload() != before and len(engine.bundle.approvals) == 3


def test_without_an_approval_policy_approvals_are_not_needed(policies: Path) -> None:
    assert Engine(policies).bundle.approvals == ()


def test_every_logged_decision_records_the_approvals_of_its_bundle(policies: Path, tmp_path: Path) -> None:
    sign(policies, "alice", "bob", "carol")
    store = open_store(f"sqlite:///{tmp_path / 'log.db'}")
    engine = Engine(policies, approvals=TRUSTED, log=DecisionLog(store, Protector(store, bytes(32))))
    engine.evaluate("access", request(), now=NOW)
    (_, data), *_ = list(store.read())
    body = json.loads(json.loads(data)["body"])
    blob = json.loads(store.get_blob("bundle", body["bundle_blob"]) or b"{}")
    assert [a["approver"] for a in blob["approvals"]] == ["alice", "bob", "carol"]
    assert all(a["bundle"] == body["bundle"] for a in blob["approvals"])
    store.close()


def charter(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
    )


def test_cli_keygen_sign_verify_and_evaluate_with_approvals(policies: Path, tmp_path: Path) -> None:
    keys, trusted = tmp_path / "keys", tmp_path / "trusted"
    keys.mkdir()
    trusted.mkdir()
    for name in ("alice", "bob", "carol"):
        assert charter(tmp_path, "bundle", "keygen", name, "--dir", str(keys)).returncode == 0
        shutil.copy(keys / f"{name}.pem", trusted)
    assert os.stat(keys / "alice.key").st_mode & 0o077 == 0
    built = charter(tmp_path, "bundle", "build", str(policies))
    assert built.returncode == 0 and version(policies) in built.stdout and "access.yaml" in built.stdout
    for name in ("alice", "bob"):
        run = charter(tmp_path, "bundle", "sign", str(policies), "--approver", name, "--key", str(keys / f"{name}.key"))
        assert run.returncode == 0, run.stderr
    facts = str(EXAMPLES.parent / "requests" / "access.jsonl")
    evaluate = ["evaluate", "--domain", "access", "--facts", facts, "--policies", str(policies)]
    gated = [*evaluate, "--now", "2025-06-30T00:00:00Z", "--no-log", "--approvers", str(trusted)]
    short = charter(tmp_path, "bundle", "verify", str(policies), "--approvers", str(trusted))
    assert short.returncode == 1 and "2 of 3 required" in short.stdout
    refused = charter(tmp_path, *gated)
    assert refused.returncode == 1 and "has 2 of the 3 approvals it needs" in refused.stderr
    assert refused.stdout == ""  # not one decision from an unapproved bundle
    charter(tmp_path, "bundle", "sign", str(policies), "--approver", "carol", "--key", str(keys / "carol.key"))
    ok = charter(tmp_path, "bundle", "verify", str(policies), "--approvers", str(trusted))
    assert ok.returncode == 0 and "approved by alice, bob, carol" in ok.stdout
    served = charter(tmp_path, *gated)
    assert served.returncode == 0 and len(served.stdout.splitlines()) == 500
    edit(policies)
    stale = charter(tmp_path, "bundle", "verify", str(policies), "--approvers", str(trusted))
    assert stale.returncode == 1 and stale.stdout.count("the files changed after it was signed") == 3
