"""Access control: per-field allow, mask or deny; deny wins; default deny; waivers; roles inherit."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, POLICIES

from engine import Engine
from engine.errors import FactErrors, PolicyErrors

CARD = "6222020200112345679"
RECORD = {"name": "Wang Fang", "phone": "13812345678", "annual_sales": 1200.5, "bank_account": CARD}


def request(roles: list[str], action: str = "read", purpose: str = "service", **resource: Any) -> dict[str, Any]:
    return {
        "subject": {"id": "u1", "roles": roles, "department": "east"},
        "action": action,
        "purpose": purpose,
        "resource": {"customer": "C1", "record": dict(RECORD), **resource},
    }


@pytest.fixture(scope="module")
def shipped() -> Engine:
    return Engine(POLICIES)


def effects(engine: Engine, req: dict[str, Any], now: datetime) -> dict[str, str]:
    d = engine.evaluate("access", req, now=now)
    return {p: f["effect"] for p, f in d.outputs["fields"].items()}


def test_service_staff_see_what_their_duties_need(shipped: Engine, now: datetime) -> None:
    d = shipped.evaluate("access", request(["agent"]), now=now)
    assert {p: f["effect"] for p, f in d.outputs["fields"].items()} == {
        "name": "allow",
        "phone": "allow",
        "annual_sales": "allow",
        "bank_account": "mask",
    }
    assert d.outputs["fields"]["bank_account"]["mask"] == "last4"  # the style comes from classification.yaml
    assert d.outputs["effect"] == "partial"
    assert d.outputs["obligations"] == ["log_access"]
    assert d.subject == "C1"
    assert [u.domain for u in d.upstream] == ["classification"]
    assert set(d.fired_ids) == {"service-basic", "service-transactions", "service-sensitive-masked"}


def test_roles_inherit_and_obligations_travel(shipped: Engine, now: datetime) -> None:
    d = shipped.evaluate("access", request(["supervisor"]), now=now)
    assert d.outputs["fields"]["bank_account"] == {
        "effect": "allow",
        "class": "sensitive",
        "rule": "supervisor-sensitive",
    }
    assert d.outputs["fields"]["name"]["rule"] == "service-basic"  # inherited from agent
    assert d.outputs["obligations"] == ["log_access", "require_justification"]
    assert d.outputs["effect"] == "allow"


def test_default_deny(shipped: Engine, now: datetime) -> None:
    d = shipped.evaluate("access", request(["sales_rep"], purpose="sales", owner="someone-else"), now=now)
    assert set(effects(shipped, request(["sales_rep"], purpose="sales", owner="someone-else"), now).values()) == {
        "deny"
    }
    assert d.outputs["effect"] == "deny"
    assert d.fired_ids == ("default-deny",)
    assert d.outputs["obligations"] == ["log_access"]


def test_conditions_read_the_request(shipped: Engine, now: datetime) -> None:
    own = effects(shipped, request(["sales_rep"], purpose="sales", owner="u1"), now)
    assert own == {"name": "allow", "phone": "allow", "annual_sales": "allow", "bank_account": "deny"}
    kam = request(["key_account_manager"], purpose="sales", tier="high")
    assert effects(shipped, kam, now)["annual_sales"] == "allow"
    kam["resource"]["tier"] = "medium"
    assert effects(shipped, kam, now)["annual_sales"] == "deny"


def test_an_absent_attribute_leaves_an_allow_undecided(shipped: Engine, now: datetime) -> None:
    d = shipped.evaluate("access", request(["sales_rep"], purpose="sales"), now=now)  # no `owner`
    assert d.outputs["effect"] == "deny"
    assert any("sales-own-customers" in n and "undefined" in n for n in d.notes)


def test_deny_overrides_allow(shipped: Engine, now: datetime) -> None:
    # compliance may read everything, but sensitive data never serves marketing, whatever the role
    d = shipped.evaluate("access", request(["compliance_officer", "marketing_analyst"], purpose="marketing"), now=now)
    assert d.outputs["fields"]["bank_account"] == {
        "effect": "deny",
        "class": "sensitive",
        "rule": "no-sensitive-marketing",
    }
    assert d.outputs["fields"]["name"]["effect"] == "allow"


def test_waiver_allows_until_it_expires_and_is_reported(shipped: Engine) -> None:
    req = request(["data_engineer"], action="export")
    before = shipped.evaluate("access", req, now=datetime(2026, 12, 1, tzinfo=UTC))
    assert before.outputs["fields"]["name"] == {
        "effect": "allow",
        "class": "basic",
        "rule": "waiver-crm-migration-2026",
    }
    assert before.outputs["fields"]["bank_account"]["effect"] == "deny"  # the waiver does not cover sensitive data
    assert before.outputs["waivers"] == [
        {"id": "waiver-crm-migration-2026", "owner": "data_protection_officer", "expires": "2026-12-31T23:59:59Z"}
    ]
    assert "require_justification" in before.outputs["obligations"]
    after = shipped.evaluate("access", req, now=datetime(2027, 1, 1, tzinfo=UTC))
    assert after.outputs["effect"] == "deny" and after.outputs["waivers"] == []


def test_unclassified_fields_are_denied(shipped: Engine, now: datetime) -> None:
    req = request(["supervisor"])
    req["resource"]["record"]["mystery"] = "x"
    d = shipped.evaluate("access", req, now=now)
    assert d.outputs["fields"]["mystery"] == {"effect": "deny", "class": None, "rule": None}
    assert "mystery" in d.outputs["denied"]


def test_unknown_roles_are_ignored_and_noted(shipped: Engine, now: datetime) -> None:
    d = shipped.evaluate("access", request(["agnet"]), now=now)
    assert d.outputs["effect"] == "deny"
    assert "unknown role `agnet` ignored" in d.notes


@pytest.mark.parametrize(
    ("edit", "field", "hint"),
    [
        (lambda r: r.update(action="raed"), "action", "did you mean `read`?"),
        (lambda r: r["subject"].update(roles="agent"), "subject.roles", 'write a list, like `["agent"]`'),
        (lambda r: r.pop("subject"), "subject", "add `subject`"),
        (lambda r: r["resource"].pop("record"), "resource.record", None),
        (lambda r: r["resource"]["record"].update(deep=_deep(40)), "resource.record", "flatten the record"),
    ],
)
def test_bad_requests_name_the_field(
    shipped: Engine, now: datetime, edit: Callable[[dict[str, Any]], Any], field: str, hint: str | None
) -> None:
    req = request(["agent"])
    edit(req)
    with pytest.raises(FactErrors) as info:
        shipped.evaluate("access", req, now=now)
    assert info.value.errors[0].field.startswith(field)
    if hint:
        assert info.value.errors[0].hint == hint


def _deep(n: int) -> dict[str, Any]:
    out: dict[str, Any] = {"x": 1}
    for _ in range(n):
        out = {"a": out}
    return out


def test_every_example_customer_is_decided_for_every_role(shipped: Engine, now: datetime) -> None:
    roles = list(shipped.bundle.policy("access").extra.roles)
    with EXAMPLES.open(encoding="utf-8") as f:
        customers = [json.loads(line) for _, line in zip(range(200), f, strict=False)]
    for c in customers:
        for role in roles:
            req = {
                "subject": {"id": "u1", "roles": [role]},
                "action": "read",
                "purpose": "audit",
                "resource": {"customer": c["id"], "record": c},
            }
            d = shipped.evaluate("access", req, now=now)
            assert set(d.outputs["fields"]) == set(c)
            sensitive = [p for p, f in d.outputs["fields"].items() if f["class"] == "sensitive"]
            # sensitive data only to authorised roles: in clear for compliance, masked for auditors, else denied
            shown = {d.outputs["fields"][p]["effect"] for p in sensitive}
            if role in ("compliance_officer", "data_protection_officer"):
                assert shown <= {"allow"}
            elif role == "auditor":
                assert shown <= {"mask"}
            else:
                assert shown <= {"deny"}


POLICY_DIR_EDITS = [
    (
        ("roles: [agent]\n    classes: [basic]", "roles: [agnet]\n    classes: [basic]"),
        "P183",
        "unknown role `agnet`",
        "did you mean `agent`?",
    ),
    (
        (
            "classes: [commercially_sensitive]\n    actions: [read]\n    purposes: [service]",
            "classes: [comercially_sensitive]\n    actions: [read]\n    purposes: [service]",
        ),
        "P185",
        "unknown data class `comercially_sensitive` in `service-transactions`",
        "did you mean `commercially_sensitive`?",
    ),
    (
        ("supervisor: {inherits: [agent]", "supervisor: {inherits: [agentt]"),
        "P181",
        "role `supervisor` inherits from `agentt`, which is not a role",
        "did you mean `agent`?",
    ),
    (
        ("  agent: {description", "  agent: {inherits: [supervisor], description"),
        "P182",
        "role `agent` inherits from itself through `supervisor`",
        None,
    ),
    (("uses:\n  classification: resource.record", "title2: x"), "P020", "unknown key `title2`", None),
    (
        (
            "    purposes: [service]\n    obligations: [require_justification]\n    message: supervisors",
            "    purposes: [service]\n    obligations: [require_justifcation]\n    message: supervisors",
        ),
        "P187",
        "unknown obligation `require_justifcation`",
        "did you mean `require_justification`?",
    ),
]


@pytest.mark.parametrize(("edit", "code", "message", "hint"), POLICY_DIR_EDITS)
def test_policy_mistakes_are_located(
    tmp_path: Path, edit: tuple[str, str], code: str, message: str, hint: str | None
) -> None:
    text = (POLICIES / "access.yaml").read_text(encoding="utf-8")
    assert edit[0] in text
    d = tmp_path / "p"
    d.mkdir()
    for f in POLICIES.glob("*.yaml"):
        (d / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    (d / "access.yaml").write_text(text.replace(edit[0], edit[1]), encoding="utf-8")
    with pytest.raises(PolicyErrors) as info:
        Engine(d)
    err = info.value.errors[0]
    assert (err.code, err.message) == (code, message)
    assert err.location.file.endswith("access.yaml") and err.location.line > 0
    if hint:
        assert err.hint == hint


def test_access_without_classification_is_a_located_error(tmp_path: Path) -> None:
    d = tmp_path / "p"
    d.mkdir()
    (d / "access.yaml").write_text((POLICIES / "access.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(PolicyErrors) as info:
        Engine(d)
    err = info.value.errors[0]
    assert err.code == "P160"
    assert err.message == "this policy uses `classification`, but no `classification` policy is loaded"
    assert err.location.line == 15


def test_a_cycle_of_uses_is_rejected_naming_both_files(tmp_path: Path) -> None:
    d = tmp_path / "p"
    d.mkdir()
    for f in POLICIES.glob("*.yaml"):
        text = f.read_text(encoding="utf-8")
        if f.name == "classification.yaml":
            text = text.replace(
                'clause: "CRM Spec 2025 §4 客户信息分类"\n',
                'clause: "CRM Spec 2025 §4 客户信息分类"\nuses: {access: request}\n',
                1,
            )
        (d / f.name).write_text(text, encoding="utf-8")
    with pytest.raises(PolicyErrors) as info:
        Engine(d)
    err = info.value.errors[0]
    assert err.code == "P161"
    assert "access.yaml (access)" in err.message and "classification.yaml (classification)" in err.message
    assert err.related is not None


def test_waiver_can_waive_a_named_deny(write_policy: Callable[..., Path], now: datetime) -> None:
    write_policy((POLICIES / "classification.yaml").read_text(encoding="utf-8"), "classification.yaml")
    text = (
        (POLICIES / "access.yaml").read_text(encoding="utf-8")
        + """\
  - id: waiver-regulator-export
    owner: data_protection_officer
    expires: "2030-01-01T00:00:00Z"
    subjects: [u-regulator-liaison]
    classes: [sensitive]
    actions: [export]
    purposes: [legal]
    waives: [no-sensitive-export]
    message: export of identifiers to the regulator under order 2025-17
"""
    )
    eng = Engine(write_policy(text, "access.yaml"))
    req = request(["compliance_officer"], action="export", purpose="legal")
    assert effects(eng, req, now)["bank_account"] == "deny"
    req["subject"]["id"] = "u-regulator-liaison"
    d = eng.evaluate("access", req, now=now)
    assert d.outputs["fields"]["bank_account"]["rule"] == "waiver-regulator-export"
    assert d.outputs["fields"]["bank_account"]["effect"] == "allow"
    assert [w["id"] for w in d.outputs["waivers"]] == ["waiver-regulator-export"]
