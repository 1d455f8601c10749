"""Data classification: a class for every field, the most restrictive rule wins, detectors by content."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import POLICIES

from engine import Engine
from engine.errors import FactErrors, PolicyErrors

POLICY = """\
charter: 1
kind: classification
id: test-classes
classes:
  - id: public
    handling: {encrypt_at_rest: false, mask: none, export: true}
  - id: internal
    handling: {encrypt_at_rest: false, mask: hash, export: false}
  - id: secret
    handling: {encrypt_at_rest: true, mask: last4, export: false, purposes: [audit]}
rules:
  - {id: names, class: public, fields: [name, "address.*", "contacts[].name"]}
  - {id: money, class: internal, fields: [sales, "contacts[].phone"]}
  - {id: ids, class: secret, fields: [national_id]}
  - {id: cards, class: secret, detector: bank_card, message: a card number}
  - {id: phones, class: internal, detector: phone}
"""

CARD = "6222020200112345679"  # Luhn-valid
ID = "11010519491231002X"  # GB 11643 check character valid


@pytest.fixture
def engine(write_policy: Callable[..., Path]) -> Engine:
    return Engine(write_policy(POLICY, "classification.yaml"))


def fields(engine: Engine, record: dict[str, Any], now: datetime) -> dict[str, Any]:
    return engine.evaluate("classification", record, now=now).outputs["fields"]  # type: ignore[no-any-return]


def test_by_name_and_by_content(engine: Engine, now: datetime) -> None:
    out = fields(engine, {"name": "Wang", "sales": 10, "note": CARD}, now)
    assert out == {
        "name": {"class": "public", "rule": "names"},
        "sales": {"class": "internal", "rule": "money"},
        "note": {"class": "secret", "rule": "cards"},
    }


def test_most_restrictive_class_wins_and_names_the_rule(engine: Engine, now: datetime) -> None:
    # `name` is public by name, but holds a card number: the detector's class is more restrictive
    d = engine.evaluate("classification", {"name": CARD}, now=now)
    assert d.outputs["fields"]["name"] == {"class": "secret", "rule": "cards"}
    assert d.fired_ids == ("cards",)
    assert dict(d.fired[0].outputs) == {"class": "secret", "fields": ("name",)}
    # a less restrictive detector never overrides a name rule
    assert fields(engine, {"national_id": "13812345678"}, now)["national_id"]["rule"] == "ids"


def test_a_checksum_failure_is_not_a_card(engine: Engine, now: datetime) -> None:
    d = engine.evaluate("classification", {"note": CARD[:-1] + "0"}, now=now)
    assert d.outputs["fields"] == {}
    assert d.outputs["unclassified"] == ["note"]
    assert "unclassified field(s): `note`" in d.notes


def test_nested_records_and_lists_of_objects(engine: Engine, now: datetime) -> None:
    record = {
        "address": {"city": "Chengdu", "street": "Renmin Rd"},
        "contacts": [{"name": "Li", "phone": "13812345678"}, {"name": "Zhao", "phone": "x"}],
    }
    out = fields(engine, record, now)
    assert set(out) == {"address.city", "address.street", "contacts[].name", "contacts[].phone"}
    assert out["contacts[].phone"]["class"] == "internal"


def test_the_most_restrictive_item_of_a_list_decides(engine: Engine, now: datetime) -> None:
    out = fields(engine, {"contacts": [{"name": "Li"}, {"name": CARD}]}, now)
    assert out["contacts[].name"] == {"class": "secret", "rule": "cards"}


def test_null_is_classified_by_name_only(engine: Engine, now: datetime) -> None:
    d = engine.evaluate("classification", {"national_id": None, "other": None}, now=now)
    assert d.outputs["fields"] == {"national_id": {"class": "secret", "rule": "ids"}}
    assert d.outputs["unclassified"] == ["other"]


def test_outputs_carry_the_classes_present_and_their_handling(engine: Engine, now: datetime) -> None:
    d = engine.evaluate("classification", {"name": "a", "national_id": ID}, now=now)
    assert d.outputs["classes"] == ["public", "secret"]
    assert d.outputs["highest"] == "secret"
    assert d.outputs["handling"]["secret"]["mask"] == "last4"
    assert d.outputs["handling"]["secret"]["purposes"] == ["audit"]


def test_class_order_is_policy_data(write_policy: Callable[..., Path], now: datetime) -> None:
    swapped = POLICY.replace("  - id: public\n", "  - id: publicx\n")
    swapped = swapped.replace(
        "classes:\n", "classes:\n  - id: secret0\n    handling: {encrypt_at_rest: true, mask: full, export: false}\n"
    )
    # with `internal` moved above `public`, a name rule of `public` beats nothing it used to
    reordered = POLICY.replace(
        "  - id: public\n    handling: {encrypt_at_rest: false, mask: none, export: true}\n  - id: internal\n"
        "    handling: {encrypt_at_rest: false, mask: hash, export: false}\n",
        "  - id: internal\n    handling: {encrypt_at_rest: false, mask: hash, export: false}\n  - id: public\n"
        "    handling: {encrypt_at_rest: false, mask: none, export: true}\n",
    )
    assert reordered != POLICY
    eng = Engine(write_policy(reordered, "classification.yaml"))
    # `name` holds a phone number: the phone detector (internal) now ranks below the name rule (public)
    assert fields(eng, {"name": "13812345678"}, now)["name"] == {"class": "public", "rule": "names"}
    eng2 = Engine(write_policy(POLICY, "classification.yaml"))
    assert fields(eng2, {"name": "13812345678"}, now)["name"] == {"class": "internal", "rule": "phones"}
    assert swapped != POLICY


def test_explain_traces_every_detector_tried(engine: Engine, now: datetime) -> None:
    d = engine.evaluate("classification", {"note": CARD}, now=now, explain=True)
    assert d.trace is not None
    tried = [(t.step, t.rule, t.matched) for t in d.trace]
    assert ("note", "cards", True) in tried


def test_too_deep_a_record_is_a_fact_error(engine: Engine, now: datetime) -> None:
    deep: dict[str, Any] = {"x": 1}
    for _ in range(100):
        deep = {"a": deep}
    with pytest.raises(FactErrors) as info:
        engine.evaluate("classification", deep, now=now)
    assert "nested more than 32 levels" in info.value.message


def test_not_an_object_is_a_fact_error(engine: Engine, now: datetime) -> None:
    with pytest.raises(FactErrors) as info:
        engine.evaluate("classification", [1, 2], now=now)  # type: ignore[arg-type]
    assert info.value.code == "F001"


@pytest.mark.parametrize(
    ("edit", "code", "line", "message", "hint"),
    [
        (
            ("class: secret, fields: [national_id]", "class: secrte, fields: [national_id]"),
            "P175",
            14,
            "unknown class `secrte`",
            "did you mean `secret`?",
        ),
        (
            ("detector: phone}", "detector: phnoe}"),
            "P176",
            16,
            "no plugin provides the detector `phnoe`",
            "did you mean `phone`?",
        ),
        (("  - id: internal\n", "  - id: public\n"), "P174", 7, "class `public` is listed twice", None),
        (
            ('{id: money, class: internal, fields: [sales, "contacts[].phone"]}', "{id: money, class: internal}"),
            "P021",
            13,
            "missing one of `fields` or `detector`",
            "add `fields:` here",
        ),
    ],
)
def test_policy_errors_are_located(
    write_policy: Callable[..., Path], edit: tuple[str, str], code: str, line: int, message: str, hint: str | None
) -> None:
    text = POLICY.replace(*edit)
    assert text != POLICY
    with pytest.raises(PolicyErrors) as info:
        Engine(write_policy(text, "classification.yaml"))
    err = info.value.errors[0]
    assert (err.code, err.location.line, err.message) == (code, line, message)
    if hint:
        assert err.hint == hint


def test_shipped_policy_classifies_every_field_of_every_example(customers: list[dict[str, Any]], now: datetime) -> None:
    eng = Engine(POLICIES)
    seen: dict[str, str] = {}
    for c in customers:
        d = eng.evaluate("classification", c, now=now)
        assert d.outputs["unclassified"] == [], c["id"]
        for path, f in d.outputs["fields"].items():
            seen.setdefault(path, f["class"])
            assert seen[path] == f["class"], (path, c["id"])
    assert seen["national_id"] == seen["bank_account"] == seen["medical_notes"] == "sensitive"
    assert seen["product_categories"] == seen["annual_sales"] == "commercially_sensitive"
    assert seen["name"] == seen["phone"] == seen["address"] == "basic"


def test_shipped_detectors_find_identifiers_under_any_name(now: datetime) -> None:
    eng = Engine(POLICIES)
    out = eng.evaluate("classification", {"remark": ID, "ref": CARD, "memo": "diagnosed with asthma"}, now=now)
    rules = {p: f["rule"] for p, f in out.outputs["fields"].items()}
    assert rules == {"remark": "detect-national-id", "ref": "detect-bank-card", "memo": "detect-medical"}
