"""L040 (#18): a message that states a figure its rule no longer holds. Each edit below changes
a figure of a shipped rule and leaves its message as it was; lint names the rule, the figure
the message states, and the figure the rule holds, at the message's place. The shipped
policies, whose messages agree with their figures, give none."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_lint import POLICIES, line_of, lint, one, seeded

from engine.analysis.figures import stated

EDITS = [
    # file, old, new, rule, the stated figure, the held figure, text on the message's line
    ("tiering.yaml", "from: 80, to: 100", "from: 75, to: 100", "value-high", "20%", "from 75 to 100", "top 20%"),
    (
        "tiering.yaml",
        "when: customer.default_risk >= 0.6",
        "when: customer.default_risk >= 0.5",
        "risk-default-high",
        "60%",
        "0.5",
        "default risk of 60%",
    ),
    (
        "tiering.yaml",
        "when: customer.relationship_years < 3.0",
        "when: customer.relationship_years < 4.0",
        "lifecycle-growth",
        "3 years",
        "4",
        "less than 3 years",
    ),
    (
        "tiering.yaml",
        "contact_cadence_days: 7,",
        "contact_cadence_days: 10,",
        "treat-high",
        "weekly",
        "contact_cadence_days: 10",
        "weekly contact",
    ),
    (
        "tiering.yaml",
        "contact_cadence_days: 90,",
        "contact_cadence_days: 60,",
        "treat-minimal",
        "quarterly",
        "contact_cadence_days: 60",
        "quarterly contact",
    ),
    ("retention.yaml", "period: 5y", "period: 7y", "transaction-records", "5 years", "7y", "kept 5 years"),
    ("escalation.yaml", "within: 4h", "within: 6h", "critical-response", "4 hours", "within: 6h", "within 4 hours"),
    ("escalation.yaml", "after: 24h", "after: 48h", "level 4", "a day", "after: 2d", "a day past"),
    ("escalation.yaml", "factor: 0.5", "factor: 0.6", "priority high", "half", "factor: 0.6", "half the usual"),
    ("escalation.yaml", "within: 14d", "within: 10d", "repeat-complaint", "14 days", "within: 10d", "within 14 days"),
    (
        "escalation.yaml",
        "score_at_most: 2",
        "score_at_most: 3",
        "low-satisfaction",
        "2",
        "score_at_most: 3",
        "score of 2 or less",
    ),
]


@pytest.mark.parametrize(("name", "old", "new", "rule", "says", "holds", "line_text"), EDITS, ids=[e[3] for e in EDITS])
def test_a_message_that_states_another_figure_is_named(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    old: str,
    new: str,
    rule: str,
    says: str,
    holds: str,
    line_text: str,
) -> None:
    extra = [(name, "from: 50, to: 80", "from: 50, to: 75")] if rule == "value-high" else []  # bands meet
    d = seeded(tmp_path, (name, old, new), *extra)
    code, findings = lint(capsys, str(d))
    f = one(findings, "L040", f"`{rule}`")
    assert f"says `{says}`" in f["message"] and f"`{holds}`" in f["message"], f
    assert f["severity"] == "warning" and code == 0  # a warning: the policy still loads and lints
    path = d / name
    assert (f["file"], f["line"]) == (str(path), line_of(path, line_text))
    text = path.read_text(encoding="utf-8").splitlines()[f["line"] - 1]
    assert text[f["column"] - 1 :].startswith(says), (text, f["column"])  # at the figure in the message
    assert [r for r in f["related"] if r["file"] == str(path)], f  # and where the rule holds its figure


def test_the_shipped_messages_agree_with_their_figures(capsys: pytest.CaptureFixture[str]) -> None:
    _, findings = lint(capsys, str(POLICIES))
    assert [f for f in findings if f["code"] == "L040"] == []


@pytest.mark.parametrize(
    ("message", "figures"),
    [
        ("top 20% of customers by lifetime value (source)", [("percent", 20.0)]),
        ("CRM Spec 2025 §3.2: 2 or more complaints", [("number", 2.0)]),
        ("regular service, contact every two weeks", [("time", 2.0)]),
        ("basic service, monthly contact (default)", [("time", 1.0)]),
        ("billing disputes are reviewed within two working days (default)", []),
        ("a day past a missed target", [("time", 1.0)]),
        ("churn warning points of 0.6 or more", [("number", 0.6)]),
        ("first purchase less than 180 days ago", [("time", 180.0)]),
        ("the first contact owns the case (source, 首问负责制)", []),
        ("a tenure score of 50,000 or more", [("number", 50000.0)]),  # a thousands separator: one number
        ("24/7 support under Article 17", []),  # neither a ratio nor a citation is a figure
        ("paid in the first half of the month", []),
    ],
)
def test_the_figures_a_message_states(message: str, figures: list[tuple[str, float]]) -> None:
    assert [(s.kind, s.count) for s in stated(message)] == figures


def test_a_time_agrees_with_a_number_counted_in_another_unit() -> None:
    from engine.analysis.figures import Figure, _agrees

    six_months = stated("no order in the last 6 months")[0]
    assert _agrees(six_months, Figure.number(180, "180"))  # `days_since_order > 180`
    assert _agrees(six_months, Figure.number(6, "6"))  # `months_quiet > 6`
    assert not _agrees(six_months, Figure.number(90, "90"))
    two_years = stated("customer for two years")[0]
    assert _agrees(two_years, Figure.number(24, "24"))  # `tenure_months >= 24`
