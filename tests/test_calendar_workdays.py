"""Business calendars with make-up working days (#18): `workdays:` lists dates worked although
their weekday is off (official calendars move a working day onto a weekend beside a holiday);
the clocks of such a calendar count them, and a date that is both a holiday and a make-up day
is refused."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import POLICIES

from engine.core.bundle import build_bundle
from engine.errors import PolicyErrors
from engine.plugins import build_registry

REGISTRY = build_registry()
CST = timezone(timedelta(hours=8))
SATURDAY = datetime(2025, 2, 8, tzinfo=CST)  # a make-up working day in the 2025 calendar


def _calendar(tmp_path: Path, extra: str) -> object:
    d = tmp_path / "p"
    shutil.copytree(POLICIES, d, ignore=shutil.ignore_patterns("tests"))
    path = d / "escalation.yaml"
    text = path.read_text(encoding="utf-8")
    anchor = '    holidays: ["2025-01-01",'
    assert text.count(anchor) == 1
    path.write_text(text.replace(anchor, f"    {extra}\n{anchor}"), encoding="utf-8")
    bundle = build_bundle(sorted(d.glob("*.yaml")), REGISTRY)
    return bundle.policies["escalation"].policy.extra.calendars["business"]


def test_a_make_up_working_day_is_counted_and_others_are_not(tmp_path: Path) -> None:
    worked = _calendar(tmp_path / "a", 'workdays: ["2025-02-08"]')
    shipped = _calendar(tmp_path / "b", "workdays: []")
    day = (SATURDAY, SATURDAY + timedelta(days=1))
    assert worked.between(*day) == 9 * 3600  # 09:00 to 18:00 on that Saturday
    assert shipped.between(*day) == 0
    sunday = (day[1], day[1] + timedelta(days=1))
    assert worked.between(*sunday) == 0  # only the dates listed
    friday_evening = datetime(2025, 2, 7, 17, 0, tzinfo=CST)
    assert worked.advance(friday_evening, 2 * 3600) == datetime(2025, 2, 8, 10, 0, tzinfo=CST)
    assert shipped.advance(friday_evening, 2 * 3600) == datetime(2025, 2, 10, 10, 0, tzinfo=CST)


def test_a_date_both_holiday_and_make_up_day_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyErrors) as got:
        _calendar(tmp_path, 'workdays: ["2025-10-01"]')
    err = got.value.errors[0]
    assert err.code == "P197" and "both a holiday and a make-up working day" in err.message
    with pytest.raises(PolicyErrors) as got:
        _calendar(tmp_path / "c", 'workdays: ["2025-02-30"]')
    assert got.value.errors[0].code == "P197" and "`2025-02-30` is not a date" in got.value.errors[0].message
