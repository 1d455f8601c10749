"""A sixth domain, shipped as a separately installed package (tests/example_domain), works end to
end through the same commands as the built-in five: validate, evaluate with traces, the policy
tests with coverage, lint, fmt, diff, the decision log and replay.

`python3 tasks.py test` installs it; nothing in `engine/` names it.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine import Engine
from engine.errors import FactErrors, PolicyErrors
from engine.plugins import build_registry

POLICY = """\
charter: 1
kind: consent
id: contact-consent
channels: [email, sms, phone]
purposes: [service, marketing]
consent_valid_for: 365d
rules:
  - id: service-any-channel
    channels: ["*"]
    purposes: [service]
    effect: allow
    message: service contact needs no consent
  - id: marketing-with-opt-in
    channels: [email, sms]
    purposes: [marketing]
    effect: allow
    needs: opt_in
    message: marketing by email or text needs the customer's opt-in
    clause: PIPL Art. 13
"""

NOW = datetime(2025, 6, 30, tzinfo=UTC)
REQUESTS = [
    {"id": "r1", "customer": "C1", "channel": "email", "purpose": "marketing",
     "consents": {"email:marketing": "2025-01-10T09:00:00Z"}},
    {"id": "r2", "customer": "C2", "channel": "email", "purpose": "marketing",
     "consents": {"email:marketing": "2024-01-10T09:00:00Z"}},
    {"id": "r3", "customer": "C3", "channel": "sms", "purpose": "marketing",
     "consents": {"sms:marketing": "2025-01-10T09:00:00Z"}, "opted_out_at": "2025-03-01T00:00:00Z"},
    {"id": "r4", "customer": "C4", "channel": "phone", "purpose": "service"},
    {"id": "r5", "customer": "C5", "channel": "phone", "purpose": "marketing"},
]  # fmt: skip

TESTS = """\
now: 2025-06-30T00:00:00Z
cases:
  - name: a fresh opt-in allows marketing e-mail
    domain: consent
    facts: {id: t1, channel: email, purpose: marketing, consents: {"email:marketing": "2025-01-10T09:00:00Z"}}
    expect: {contact: true, rule: marketing-with-opt-in}
  - name: service calls need no consent
    domain: consent
    facts: {id: t2, channel: phone, purpose: service}
    expect: {contact: true}
    fired: [service-any-channel]
"""


def cli(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, cwd=cwd, input=stdin, timeout=120
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "policies" / "tests").mkdir(parents=True)
    (tmp_path / "policies" / "consent.yaml").write_text(POLICY, encoding="utf-8")
    (tmp_path / "policies" / "tests" / "consent.yaml").write_text(TESTS, encoding="utf-8")
    (tmp_path / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in REQUESTS), encoding="utf-8")
    return tmp_path


def test_found_through_the_entry_point_group() -> None:
    names = {ep.name for ep in importlib.metadata.entry_points(group="charter")}
    assert "consent" in names, "install it: python3 tasks.py test (or pip install -e tests/example_domain)"
    domain = build_registry().domains["consent"]
    assert domain.plugin == "consent" and domain.kind == "consent"


def test_decides_through_the_api(project: Path) -> None:
    eng = Engine(project / "policies")
    out = {r["id"]: eng.evaluate("consent", r, now=NOW, explain=True) for r in REQUESTS}
    assert {k: (d.outputs["contact"], d.outputs["rule"]) for k, d in out.items()} == {
        "r1": (True, "marketing-with-opt-in"),
        "r2": (False, "default-deny"),  # the opt-in lapsed after 365 days
        "r3": (False, "default-deny"),  # withdrawn by the later opt-out
        "r4": (True, "service-any-channel"),
        "r5": (False, "default-deny"),  # no rule for marketing calls
    }
    assert out["r1"].outputs["consent_expires"] == datetime(2026, 1, 10, 9, tzinfo=UTC)
    assert any("lapsed on 2025-01-09T09:00:00Z" in n for n in out["r2"].notes)
    assert any("opted out on 2025-03-01" in n for n in out["r3"].notes)
    trace = out["r1"].trace or []
    assert [(t.rule, t.matched) for t in trace] == [("service-any-channel", False), ("marketing-with-opt-in", True)]


def test_bad_requests_name_the_field(project: Path) -> None:
    eng = Engine(project / "policies")
    with pytest.raises(FactErrors) as info:
        eng.evaluate("consent", {"id": "x", "channel": "fax", "purpose": "marketing"}, now=NOW)
    assert [e.field for e in info.value.errors] == ["channel"]
    with pytest.raises(FactErrors) as info:
        misspelt = {"emial:marketing": "2025-01-10T09:00:00Z"}
        eng.evaluate("consent", {"id": "x", "channel": "email", "purpose": "marketing", "consents": misspelt}, now=NOW)
    fields = {e.field for e in info.value.errors}
    assert "consents.emial:marketing" in fields
    hints = " ".join(e.hint or "" for e in info.value.errors)
    assert "email:marketing" in hints


def test_policy_mistakes_are_located(tmp_path: Path, project: Path) -> None:
    bad = POLICY.replace("channels: [email, sms]\n", "channels: [emial, sms]\n")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "consent.yaml").write_text(bad, encoding="utf-8")
    with pytest.raises(PolicyErrors) as info:
        Engine(tmp_path / "bad")
    [err] = info.value.errors
    line = bad.splitlines().index("    channels: [emial, sms]") + 1
    assert (err.code, err.location.line) == ("CS101", line) and "email" in (err.hint or "")
    r = cli("validate", str(tmp_path / "bad"), cwd=project)
    assert r.returncode == 1 and f"consent.yaml:{line}:" in r.stdout + r.stderr
    assert cli("validate", "policies", cwd=project).returncode == 0


def test_evaluate_with_traces_on_the_command_line(project: Path) -> None:
    r = cli(
        "evaluate", "--domain", "consent", "--facts", "requests.jsonl", "--now", "2025-06-30T00:00:00Z",
        "--explain", "--no-log", "--format", "jsonl", cwd=project,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["outputs"]["contact"] for row in rows] == [True, False, False, True, False]
    assert all(row["trace"] for row in rows), "every consent decision is traced"


def test_policy_tests_and_coverage(project: Path) -> None:
    r = cli("test", "--coverage", "policies/tests", cwd=project)
    assert r.returncode == 0, r.stdout + r.stderr
    text = r.stdout
    assert "consent" in text and "2/3" in text  # default-deny is never the deciding rule in these cases
    assert "default-deny" in text


def test_lint_finds_an_unreachable_rule(tmp_path: Path) -> None:
    shadowed = POLICY + (
        "  - id: sms-marketing-again\n    channels: [sms]\n    purposes: [marketing]\n"
        "    effect: deny\n    needs: opt_in\n"
    )
    (tmp_path / "consent.yaml").write_text(shadowed, encoding="utf-8")
    r = cli("lint", "--format", "json", str(tmp_path), cwd=tmp_path)
    findings = json.loads(r.stdout)
    codes = {f["code"] for f in findings}
    assert "CS201" in codes and "CS202" in codes
    [unreachable] = [f for f in findings if f["code"] == "CS201"]
    assert "marketing-with-opt-in" in unreachable["message"] and r.returncode == 1


def test_fmt_orders_keys_and_keeps_comments(tmp_path: Path) -> None:
    messy = POLICY.replace(
        "    effect: allow\n    message: service contact needs no consent\n",
        "    message: service contact needs no consent  # kept\n    effect: allow\n",
    ).replace("rules:\n", "rules:\n", 1)
    messy = messy.replace(
        "channels: [email, sms, phone]\npurposes: [service, marketing]\n",
        "purposes: [service, marketing]\nchannels: [email, sms, phone]\n",
    )
    (tmp_path / "consent.yaml").write_text(messy, encoding="utf-8")
    assert cli("fmt", "--check", str(tmp_path), cwd=tmp_path).returncode == 1
    assert cli("fmt", str(tmp_path), cwd=tmp_path).returncode == 0
    text = (tmp_path / "consent.yaml").read_text(encoding="utf-8")
    assert text.index("channels:") < text.index("purposes:")
    assert text.index("effect: allow") < text.index("message: service contact needs no consent  # kept")
    assert cli("fmt", "--check", str(tmp_path), cwd=tmp_path).returncode == 0


def test_diff_names_the_changed_rule_and_the_decisions(project: Path) -> None:
    new = project / "new"
    new.mkdir()
    (new / "consent.yaml").write_text(POLICY.replace("consent_valid_for: 365d", "consent_valid_for: 730d"), "utf-8")
    r = cli(
        "diff", "--format", "json", "--facts", "requests.jsonl", "--domain", "consent",
        "--now", "2025-06-30T00:00:00Z", "policies", "new", cwd=project,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert "consent_valid_for" in json.dumps(report["changes"])
    impact = report["impact"]
    assert impact["total"] == 5 and impact["changed"] == 2  # r1's opt-in lasts longer; r2's has not lapsed
    assert impact["by_output"]["contact"] == {"false -> true": 1}


def test_logged_verified_and_replayed(project: Path) -> None:
    r = cli(
        "evaluate", "--domain", "consent", "--facts", "requests.jsonl", "--now", "2025-06-30T00:00:00Z",
        "--store", "sqlite:///log.db", cwd=project,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    verify = cli("log", "verify", "--store", "sqlite:///log.db", cwd=project)
    assert verify.returncode == 0 and "5" in verify.stdout
    shown = cli("log", "show", "#1", "--store", "sqlite:///log.db", cwd=project)
    assert shown.returncode == 0 and "marketing-with-opt-in" in shown.stdout
    replay = cli("replay", "--store", "sqlite:///log.db", "--domain", "consent", cwd=project)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "5" in replay.stdout
    changed = project / "changed"
    changed.mkdir()
    edited = POLICY.replace("effect: allow\n    message: service", "effect: deny\n    message: service")
    (changed / "consent.yaml").write_text(edited, encoding="utf-8")
    what_if = cli("replay", "--store", "sqlite:///log.db", "--against", "changed", "--json", "w.json", cwd=project)
    report = json.loads((project / "w.json").read_text(encoding="utf-8"))
    assert what_if.returncode == 0 and report["changed"] == 1 and report["by_output"]["consent.contact"]
    assert report["sample"][0]["subject"] == "C4"  # the service call, now denied


def test_its_schema_is_written_for_editors(tmp_path: Path) -> None:
    r = cli("schema", str(tmp_path / "schemas"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    schema = json.loads((tmp_path / "schemas" / "consent.schema.json").read_text(encoding="utf-8"))
    assert "channels" in json.dumps(schema) and "consent_valid_for" in json.dumps(schema)
