"""Retention: periods, clocks, end actions and the documented conflict resolution."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import POLICIES

from engine import Engine
from engine.domains.retention import add_period
from engine.errors import FactErrors, PolicyErrors

NOW = datetime(2025, 6, 30, tzinfo=UTC)
ID = "11010519491231002X"


@pytest.fixture(scope="module")
def shipped() -> Engine:
    return Engine(POLICIES)


def decide(engine: Engine, record_type: str, record: dict[str, Any], now: datetime = NOW, **facts: Any) -> Any:
    req = {"record_type": record_type, "customer": "C1", "record": record, **facts}
    return engine.evaluate("retention", req, now=now)


def test_sensitive_identifiers_one_year_after_the_relationship_ends(shipped: Engine) -> None:
    d = decide(shipped, "customer_profile", {"national_id": ID}, relationship_ended_at="2024-09-01T00:00:00Z")
    assert d.outputs["action"] == "delete"
    assert d.outputs["due"] == datetime(2025, 9, 1, tzinfo=UTC)
    assert (d.outputs["status"], d.outputs["rule"]) == ("retain", "sensitive-identifiers")
    later = decide(
        shipped,
        "customer_profile",
        {"national_id": ID},
        now=datetime(2025, 9, 11, tzinfo=UTC),
        relationship_ended_at="2024-09-01T00:00:00Z",
    )
    assert (later.outputs["status"], later.outputs["overdue_days"]) == ("overdue", 10)
    assert later.subject == "C1"


def test_a_clock_not_started_keeps_waiting(shipped: Engine) -> None:
    d = decide(shipped, "customer_profile", {"national_id": ID})
    assert (d.outputs["status"], d.outputs["due"], d.outputs["action"]) == ("waiting", None, "delete")


def test_retaining_beats_deleting(shipped: Engine) -> None:
    # a transaction with a card number: deletion after 1 year waits for the 5-year accounting period
    d = decide(
        shipped,
        "transaction",
        {"bank_account": "6222020200112345679", "amount": 10},
        created_at="2023-03-01T00:00:00Z",
        relationship_ended_at="2023-06-01T00:00:00Z",
    )
    assert d.outputs["action"] == "delete"
    assert d.outputs["due"] == datetime(2028, 3, 1, tzinfo=UTC)
    assert (d.outputs["rule"], d.outputs["postponed_by"]) == ("sensitive-identifiers", "transaction-records")
    assert d.fired_ids == ("sensitive-identifiers", "transaction-records")


def test_the_shortest_deletion_wins_among_disposals(shipped: Engine) -> None:
    d = decide(
        shipped, "customer_profile", {"name": "Li", "national_id": ID}, relationship_ended_at="2024-01-01T00:00:00Z"
    )
    assert (d.outputs["rule"], d.outputs["action"]) == ("sensitive-identifiers", "delete")
    basic = decide(shipped, "customer_profile", {"name": "Li"}, relationship_ended_at="2024-01-01T00:00:00Z")
    assert (basic.outputs["rule"], basic.outputs["action"]) == ("profile-after-relationship", "anonymise")
    assert basic.outputs["due"] == datetime(2027, 1, 1, tzinfo=UTC)


def test_marketing_preferences_until_consent_is_withdrawn(shipped: Engine) -> None:
    kept = decide(shipped, "marketing_preferences", {"preferences": ["tea"]})
    assert kept.outputs["status"] == "waiting"
    gone = decide(
        shipped, "marketing_preferences", {"preferences": ["tea"]}, consent_withdrawn_at="2025-06-01T00:00:00Z"
    )
    assert (gone.outputs["status"], gone.outputs["action"], gone.outputs["overdue_days"]) == ("overdue", "delete", 29)


def test_a_legal_hold_beats_everything(shipped: Engine) -> None:
    held = decide(
        shipped,
        "customer_profile",
        {"national_id": ID, "legal_hold": True},
        relationship_ended_at="2020-01-01T00:00:00Z",
    )
    assert (held.outputs["status"], held.outputs["action"], held.outputs["hold"]) == ("held", "retain", "legal_hold")
    listed = decide(
        shipped,
        "customer_profile",
        {"national_id": ID},
        relationship_ended_at="2020-01-01T00:00:00Z",
        holds=[{"id": "case-2025-17", "reason": "litigation"}],
    )
    assert listed.outputs["hold"] == "case-2025-17"
    released = decide(
        shipped,
        "customer_profile",
        {"national_id": ID},
        relationship_ended_at="2020-01-01T00:00:00Z",
        holds=[{"id": "case-2025-17", "released_at": "2025-01-01T00:00:00Z"}],
    )
    assert released.outputs["status"] == "overdue"


def test_a_named_business_event_starts_a_clock(shipped: Engine) -> None:
    d = decide(shipped, "service_ticket", {"summary": None}, events={"ticket_closed": "2025-02-28T00:00:00Z"})
    assert (d.outputs["action"], d.outputs["due"]) == ("archive", datetime(2027, 2, 28, tzinfo=UTC))


def test_no_rule_is_a_finding(shipped: Engine) -> None:
    d = decide(shipped, "customer_profile", {"mystery": 1})
    assert (d.outputs["status"], d.outputs["action"]) == ("no_rule", "review")
    assert d.notes and "no retention rule applies" in d.notes[0]


def test_calendar_periods() -> None:
    assert add_period(datetime(2024, 2, 29, tzinfo=UTC), (1, "y")) == datetime(2025, 2, 28, tzinfo=UTC)
    assert add_period(datetime(2025, 1, 31, tzinfo=UTC), (1, "m")) == datetime(2025, 2, 28, tzinfo=UTC)
    assert add_period(datetime(2025, 1, 31, tzinfo=UTC), (30, "d")) == datetime(2025, 3, 2, tzinfo=UTC)


def test_bad_requests_name_the_field(shipped: Engine) -> None:
    with pytest.raises(FactErrors) as info:
        decide(shipped, "transactoin", {})
    assert (info.value.field, info.value.hint) == ("record_type", "did you mean `transaction`?")
    with pytest.raises(FactErrors) as info:
        decide(shipped, "transaction", {}, created_at="yesterday")
    assert info.value.field == "created_at"


@pytest.mark.parametrize(
    ("old", "new", "code", "message"),
    [
        (
            "record_types: [transaction]\n",
            "record_types: [transactions]\n",
            "P191",
            "unknown record type `transactions`",
        ),
        (
            "classes: [sensitive]\n",
            "classes: [sensitve]\n",
            "P185",
            "unknown data class `sensitve` in `sensitive-identifiers`",
        ),
        ("period: 5y", "period: 5 years", "P024", "`5 years` is not written as expected"),
    ],
)
def test_policy_mistakes_are_located(
    tmp_path: Path, old: str, new: str, code: str, message: str, write_policy: Callable[..., Path]
) -> None:
    write_policy((POLICIES / "classification.yaml").read_text(encoding="utf-8"), "classification.yaml")
    text = (POLICIES / "retention.yaml").read_text(encoding="utf-8")
    assert old in text
    with pytest.raises(PolicyErrors) as info:
        Engine(write_policy(text.replace(old, new, 1), "retention.yaml"))
    err = info.value.errors[0]
    assert (err.code, err.message) == (code, message)
    assert err.location.file.endswith("retention.yaml") and err.location.line > 20
