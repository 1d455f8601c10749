"""The compiled fact checker accepts exactly what cerberus accepts (it is cerberus's fast path)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.facts import FactChecker, FactValidator, cerberus_schema
from engine.core.model import FactDecl
from engine.errors import FactErrors, Location

HERE = Location("facts.yaml", 1, 1)
DECLS = {
    "n": FactDecl("n", "number", HERE, required=True, min=0, max=100),
    "i": FactDecl("i", "integer", HERE, default=0, has_default=True, min=-5),
    "s": FactDecl("s", "string", HERE, allowed=("a", "b"), nullable=True),
    "b": FactDecl("b", "boolean", HERE),
    "t": FactDecl("t", "timestamp", HERE),
    "l": FactDecl("l", "list", HERE, items="string"),
    "m": FactDecl("m", "string", HERE, max_length=3),
}
CHECKER = FactChecker(DECLS, "p")
CERBERUS = FactValidator(cerberus_schema(DECLS), allow_unknown=True)

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["a", "b", "c", "abcd", "2025-01-01T00:00:00Z", "2025-01-01T00:00:00", "2025-13-01T00:00:00Z"]),
    st.lists(st.sampled_from(["x", 1, None]), max_size=3),
)
documents = st.dictionaries(st.sampled_from([*list(DECLS), "extra"]), values, max_size=8)


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(documents)
def test_fast_checker_agrees_with_cerberus(doc: dict[str, Any]) -> None:
    try:
        CHECKER.check(doc)
        fast_ok = True
    except FactErrors:
        fast_ok = False
    assert fast_ok == CERBERUS.validate(dict(doc)), (doc, CERBERUS.errors)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(documents)
def test_every_rejection_names_a_declared_field(doc: dict[str, Any]) -> None:
    try:
        CHECKER.check(doc)
    except FactErrors as exc:
        assert exc.errors
        for err in exc.errors:
            assert err.field in DECLS
            assert f"`{err.field}`" in err.message
            assert err.code.startswith("F1")


def test_conversions_and_defaults() -> None:
    out = CHECKER.check({"n": 5, "t": "2025-01-01T08:00:00+08:00", "extra": object()})
    assert out["n"] == 5.0 and type(out["n"]) is float
    assert out["i"] == 0
    assert out["t"].utcoffset().total_seconds() == 8 * 3600
    assert "s" not in out and "extra" not in out
