"""The boundary's fast test (``engine.core.state._clean``, orjson's encoder) admits only what
the exact walk (``_walk``) admits: reserved keys at any depth, lone surrogates in keys and
texts, whole numbers past 64 bits and lists past ``MAX_ITEMS`` still reach the walk, which
refuses them (texts past ``MAX_TEXT`` too); and facts that the walk admits are admitted whichever test decides."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.state import MAX_ITEMS, MAX_TEXT, _admit, _clean, _walk
from engine.errors import FactErrors

_texts = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["$sealed", "$withheld", "$oid", "\ud800", "a\udc80b", "$", 'x"$sealed', "\\"]),
)
_numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**53, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64]),
    st.floats(allow_nan=True, allow_infinity=True),
)
_values = st.recursive(
    st.one_of(st.none(), st.booleans(), _numbers, _texts),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_texts, inner, max_size=4), st.tuples(inner, inner)
    ),
    max_leaves=20,
)


def _walks(facts: Any) -> bool:
    try:
        _walk(facts)
    except Exception:
        return False
    return True


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(st.dictionaries(_texts, _values, max_size=6))
def test_the_fast_test_admits_only_what_the_walk_admits(facts: dict[str, Any]) -> None:
    if _clean(facts):
        assert _walks(facts), facts
    refused = False
    try:
        _admit(facts)
    except FactErrors:
        refused = True
    assert refused is not _walks(facts), facts


@pytest.mark.parametrize(
    ("facts", "code"),
    [
        ({"a": {"b": [{"$sealed": "x"}]}}, "F301"),
        ({"note": "a\ud800"}, "F305"),
        ({"\udc80k": 1}, "F305"),
        ({"名称": "a\ud800"}, "F305"),  # a non-ASCII field name beside a surrogate: the message once crashed
        ({"n": [2**63]}, "F306"),
        ({"n": -(2**63) - 1}, "F306"),
        ({"items": list(range(MAX_ITEMS + 1))}, "F304"),
        ({"notes": [{"body": "x" * (MAX_TEXT + 1)}]}, "F307"),  # a text past the bound of what conditions read
    ],
)
def test_what_the_fast_test_passes_on_is_refused_by_the_walk(facts: dict[str, Any], code: str) -> None:
    assert not _clean(facts)
    with pytest.raises(FactErrors) as got:
        _admit(facts)
    assert got.value.errors[0].code == code


def test_plain_facts_pass_the_fast_test_and_near_limits_pass_the_walk() -> None:
    assert _clean({"id": "C1", "tags": ["a", "b"], "n": 2**53 - 1, "x": {"y": [1.5, None, True]}})
    near = {"id": "C1", "n": 2**63 - 1, "k": {"$oid": "5f"}}
    assert not _clean(near) and _walks(near)  # the walk decides, and admits them
    _admit(near)
