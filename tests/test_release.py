"""Masks applied (#18): ``Engine.release`` and ``POST /v1/decide/access?release=true`` give the
request's record as the access decision lets its requester see it — denied and unnamed
fields left out, masked fields in their class's style — and refuse a domain that releases
nothing, before deciding."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import NOW, POLICIES
from starlette.testclient import TestClient

from engine import Decision, Engine
from engine.domains.access_release import HIDDEN, mask
from engine.errors import EvaluationError
from engine.serve.app import create_app
from engine.serve.service import Service

STAMP = NOW.isoformat().replace("+00:00", "Z")


def _decision(fields: dict[str, dict[str, Any]]) -> Decision:
    outputs = {"effect": "partial", "fields": fields, "denied": [], "obligations": [], "waivers": []}
    return Decision("access", "C1", outputs, (), datetime(2025, 6, 30, tzinfo=UTC), "b-x", "p", None, {})


def _request(record: dict[str, Any]) -> dict[str, Any]:
    return {"subject": {"id": "u1", "roles": ["agent"]}, "action": "read", "purpose": "service",
            "resource": {"customer": "C1", "record": record}}  # fmt: skip


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(POLICIES)


def test_denied_and_unnamed_fields_are_left_out_and_masked_ones_masked(engine: Engine) -> None:
    fields = {
        "name": {"effect": "allow", "class": "basic", "rule": "r"},
        "bank_account": {"effect": "mask", "class": "sensitive", "rule": "r", "mask": "last4"},
        "birth_date": {"effect": "mask", "class": "sensitive", "rule": "r", "mask": "year"},
        "profit": {"effect": "deny", "class": "commercially_sensitive", "rule": None},
        "address.city": {"effect": "allow", "class": "basic", "rule": "r"},
        "address.street": {"effect": "mask", "class": "basic", "rule": "r", "mask": "full"},
        "contacts[].phone": {"effect": "mask", "class": "sensitive", "rule": "r", "mask": "null"},
        "contacts[].name": {"effect": "allow", "class": "basic", "rule": "r"},
    }
    record = {
        "name": "四川海川物流有限公司",
        "bank_account": "6265265699447481468",
        "birth_date": "1985-03-02",
        "profit": 37874.36,
        "notes": "not named by the decision",
        "address": {"city": "Chengdu", "street": "1 Renmin Rd"},
        "contacts": [{"phone": "13800138000", "name": "Li"}, {"phone": "13900139000"}],
        "tax": {"id": "T1"},  # an object none of whose fields is named: left out whole
    }
    got = engine.release(_decision(fields), _request(record))
    assert got == {
        "name": "四川海川物流有限公司",
        "bank_account": HIDDEN + "1468",
        "birth_date": "1985",
        "address": {"city": "Chengdu", "street": HIDDEN},
        "contacts": [{"phone": None, "name": "Li"}, {"phone": None}],
    }
    assert record["bank_account"] == "6265265699447481468"  # the request is not changed


@pytest.mark.parametrize(
    ("value", "style", "key", "want"),
    [
        ("13800138000", "last4", None, HIDDEN + "8000"),
        ("123", "last4", None, HIDDEN),
        (1234567, "last4", None, HIDDEN + "4567"),
        ("2004-06-08T10:00:00Z", "year", None, "2004"),
        ("not a date", "year", None, HIDDEN),
        ("x", "none", None, "x"),
        ("x", "full", None, HIDDEN),
        ("x", "null", None, None),
        ("13800138000", "hash", None, HIDDEN),  # no key: an unkeyed hash of a phone number is undone by trying all
    ],
)
def test_each_mask_style(value: Any, style: str, key: bytes | None, want: Any) -> None:
    assert mask(value, style, key) == want


def test_a_keyed_hash_joins_equal_values_and_hides_them() -> None:
    a, b, c = (mask(v, "hash", b"k" * 32) for v in ("13800138000", "13800138000", "13900139000"))
    assert a == b != c and isinstance(a, str) and a.startswith("hmac-sha256:") and "138001" not in a
    assert mask("13800138000", "hash", b"j" * 32) != a  # another key, another text


def test_an_unknown_mask_style_fails_closed(engine: Engine) -> None:
    fields = {"phone": {"effect": "mask", "class": "sensitive", "rule": "r", "mask": "rot13"}}
    assert engine.release(_decision(fields), _request({"phone": "13800138000"})) == {}


def test_the_shipped_policies_mask_what_service_staff_see(engine: Engine) -> None:
    request = _request({"name": "Li Lei", "national_id": "110101199003077777", "email": "li@example.com"})
    decision = engine.evaluate("access", request, now=NOW)
    fields = decision.outputs["fields"]
    got = engine.release(decision, request)
    for path, value in request["resource"]["record"].items():  # every field as the decision says
        effect = fields[path]["effect"]
        if effect == "deny":
            assert path not in got
        elif effect == "allow":
            assert got[path] == value
        else:
            assert got[path] == mask(value, fields[path]["mask"]) and got[path] != value
    assert any(f["effect"] == "mask" for f in fields.values()), fields  # the case is about masking


def test_a_domain_that_releases_nothing_is_refused(engine: Engine) -> None:
    customer = {"id": "C1"}
    decision = _decision({})
    decision.domain = "tiering"
    with pytest.raises(EvaluationError) as got:
        engine.release(decision, customer)
    assert got.value.code == "V010" and "`access`" in (got.value.hint or "")


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Service(Engine(POLICIES), watch_interval=None))) as c:
        yield c


def test_the_service_releases_the_record_on_request(client: TestClient, engine: Engine) -> None:
    request = _request({"name": "Li Lei", "national_id": "110101199003077777", "revenue": 5})
    plain = client.post("/v1/decide/access", json={"facts": request, "now": STAMP})
    assert plain.status_code == 200 and "released" not in plain.json()
    r = client.post("/v1/decide/access?release=true", json={"facts": request, "now": STAMP})
    assert r.status_code == 200, r.text
    want = engine.release(engine.evaluate("access", request, now=NOW), request)
    assert r.json()["released"] == want and "national_id" in want and want["national_id"] != "110101199003077777"


def test_the_service_refuses_release_for_a_domain_that_has_none(client: TestClient) -> None:
    r = client.post("/v1/decide/retention?release=true", json={"facts": {"id": "R1"}, "now": STAMP})
    assert r.status_code == 422 and r.json()["error"]["code"] == "C070", r.text
    bad = client.post("/v1/decide/access?release=maybe", json={"facts": {}, "now": STAMP})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "C064", bad.text  # as `explain=maybe` is
