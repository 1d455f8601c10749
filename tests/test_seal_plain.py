"""The sealed value's plaintext is read back without json.loads for texts, whole numbers and
booleans (replay opens tens of thousands): exactly what json.loads gives, for any value."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from engine.audit.chain import canonical
from engine.audit.protect import _plain, _scalar

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@given(VALUES)
def test_a_sealed_plaintext_reads_back_as_json_reads_it(value: Any) -> None:
    scalar = _scalar(value)
    data = canonical(value) if scalar is None else scalar  # what seal_into encrypts
    got = _plain(data, json.loads)
    assert got == json.loads(data) and type(got) is type(json.loads(data))


def test_texts_that_need_escapes_go_through_json() -> None:
    for text in ['a"b', "back\\slash", "tab\there", "中文", ""]:  # (a lone surrogate is refused at the boundary: F305)
        data = _scalar(text)
        assert data is not None and _plain(data, json.loads) == text
