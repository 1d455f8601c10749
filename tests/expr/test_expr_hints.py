"""The hints of the expression parser for slips an officer makes (#13): the reversed
comparison, a percentage written as `30%`, a full-width operator from an input method."""

from __future__ import annotations

import pytest

from engine.core.expr.parser import ExprError, parse


@pytest.mark.parametrize(
    ("text", "code", "offset", "hint"),
    [
        ("customer.clv => 5", "E102", 13, "write `>=`"),
        ("customer.clv =< 5", "E102", 13, "write `<=`"),
        ("customer.clv = 5", "E102", 13, "=="),
        ("scores.churn >= 30%", "E101", 19, "write `0.3` for 30%"),
        ("scores.churn >= 12.5 %", "E101", 22, "write `0.125` for 12.5%"),
        ("customer.clv \uff08 5", "E102", 13, "write `(`"),
        ("customer.clv \uff1e 5", "E102", 13, "write `>`"),
    ],
)
def test_a_slip_gets_the_hint_that_fixes_it(text: str, code: str, offset: int, hint: str) -> None:
    with pytest.raises(ExprError) as info:
        parse(text)
    assert (info.value.code, info.value.offset) == (code, offset)
    assert hint in (info.value.hint or ""), info.value.hint


def test_a_percent_sign_inside_text_is_not_taken_for_a_share() -> None:
    with pytest.raises(ExprError) as info:
        parse('customer.note == "30%" &&')
    assert "fractions" not in (info.value.hint or "")
