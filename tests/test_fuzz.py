"""Fuzzing: whatever an officer types, the engine answers with a policy or a located error.

Never another exception, never a hang. Budgets are fixed so CI stays fast; run with
``--hypothesis-profile=long`` style settings locally for more.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import MINIMAL, POLICIES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Engine, FactErrors
from engine.core.bundle import build_bundle
from engine.core.expr import ExprError, check, parse
from engine.core.load import load_text
from engine.errors import PolicyError, PolicyErrors
from engine.plugins import build_registry

REGISTRY = build_registry()
SHIPPED = (POLICIES / "tiering.yaml").read_text(encoding="utf-8")
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def loads_or_located(text: str | bytes, tmp_path: Path) -> None:
    path = tmp_path / "tiering.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    try:
        build_bundle([path], REGISTRY)
    except PolicyErrors as exc:
        for err in exc.errors:
            assert isinstance(err, PolicyError)
            assert err.location.file == str(path)
            assert err.location.line >= 1 and err.location.column >= 1, str(err)
            assert err.message and err.code


@SETTINGS
@given(data=st.data())
def test_line_edits_of_the_shipped_policy(data: st.DataObject, tmp_path: Path) -> None:
    lines = SHIPPED.splitlines()
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(lines) - 1))
        action = data.draw(st.sampled_from(["delete", "duplicate", "truncate", "replace", "indent"]))
        if action == "delete":
            del lines[i]
        elif action == "duplicate":
            lines.insert(i, lines[i])
        elif action == "truncate":
            lines[i] = lines[i][: data.draw(st.integers(0, max(len(lines[i]) - 1, 0)))]
        elif action == "indent":
            lines[i] = " " + lines[i]
        else:
            junk = data.draw(
                st.sampled_from(
                    [
                        "{",
                        "]",
                        ": :",
                        "- x",
                        "when: )",
                        "then: [a",
                        "&a",
                        "*b",
                        "!!python/x",
                        "hit: 3",
                        "from: -5",
                        "'",
                        '"',
                        "\t",
                        "id: value-high",
                    ]
                )
            )
            lines[i] = lines[i] + junk
    loads_or_located("\n".join(lines) + "\n", tmp_path)


yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 200), st.floats(allow_nan=False), st.text(max_size=12)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20,
)


@SETTINGS
@given(
    section=st.sampled_from(["facts", "scores", "outputs", "tables", "bands", "kind", "id", "charter"]),
    value=yaml_values,
)
def test_any_value_in_any_section(section: str, value: Any, tmp_path: Path) -> None:
    doc = yaml.safe_load(SHIPPED)
    doc[section] = value
    loads_or_located(yaml.safe_dump(doc, allow_unicode=True), tmp_path)


@SETTINGS
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes(raw: bytes, tmp_path: Path) -> None:
    loads_or_located(raw, tmp_path)


def test_hostile_documents(tmp_path: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefg", "bcdefgh", strict=True)
    )
    deep = "a: " + "[" * 10_000 + "]" * 10_000 + "\n"
    for text in (bomb, deep, "\ufeff" + MINIMAL, MINIMAL.replace("kind:", "!!python/object:os.system kind:")):
        loads_or_located(text, tmp_path)
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"# " + b"x" * (6 * 1024 * 1024))
    try:
        load_text(huge.read_bytes(), "huge.yaml")
    except PolicyErrors as exc:
        assert exc.errors[0].code == "P008"


expression_text = st.text(
    alphabet=st.sampled_from(list("customer.clv>=<!&|()[]\"'+-*/% 0123456789.,?:has")), max_size=60
)


@settings(max_examples=1000, deadline=None, derandomize=True)
@given(expression_text)
def test_expressions_parse_or_give_located_errors(text: str) -> None:
    from engine.core.expr import DOUBLE, ObjectType

    try:
        node = parse(text)
        check(node, {"customer": ObjectType("customer", {"clv": DOUBLE})})
    except ExprError as exc:
        assert 0 <= exc.offset <= len(text)


@SETTINGS
@given(
    facts=st.dictionaries(
        st.sampled_from(["id", "clv", "complaints", "x"]),
        st.one_of(yaml_values, st.just(float("nan")), st.just(10**30)),
        max_size=4,
    )
)
def test_any_facts_give_a_decision_or_fact_errors(facts: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "tiering.yaml").write_text(MINIMAL)
    eng = Engine(tmp_path)
    from conftest import NOW

    try:
        d = eng.evaluate("tiering", facts, now=NOW)
        assert d.outputs["tier"] in ("gold", "silver")
    except FactErrors as exc:
        # a declared fact's own check, or the boundary's (any field: F306, a whole number past 64 bits)
        assert all(e.field in ("id", "clv", "complaints", "") or e.code == "F306" for e in exc.errors)
        json.dumps(exc.to_dict())


def test_a_100_mb_file_is_refused_without_being_read(tmp_path: Path) -> None:
    import tracemalloc

    from engine.core.bundle import read_sources

    big = tmp_path / "tiering.yaml"
    with big.open("wb") as f:
        f.truncate(100 * 1024 * 1024)  # sparse: costs no disk
    tracemalloc.start()
    try:
        for attempt in (lambda: build_bundle([tmp_path], REGISTRY), lambda: read_sources([tmp_path])):
            try:
                attempt()
            except PolicyErrors as exc:
                assert exc.errors[0].code == "P008" and "104857600 bytes" in exc.errors[0].message
            else:
                raise AssertionError("a 100 MB policy file was accepted")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024  # the file was never read into memory


@pytest.mark.parametrize(
    "expr",
    [
        " + ".join(["customer.clv"] * 10_000) + " >= 1.0",  # 10,000 terms
        " || ".join(["customer.clv >= 1.0"] * 10_000),
        "+".join(["1"] * 2_000) + " >= 1",  # short enough, but 2,000 operators deep
        "(" * 3_000 + "customer.clv" + ")" * 3_000 + " >= 1.0",
        "-" * 1_999 + "1 >= 0",
    ],
)
def test_huge_expressions_are_refused_at_their_location(expr: str, tmp_path: Path) -> None:
    path = tmp_path / "tiering.yaml"
    path.write_text(MINIMAL.replace("customer.clv >= 50000 && customer.complaints < 3", expr), encoding="utf-8")
    with pytest.raises(PolicyErrors) as info:
        build_bundle([path], REGISTRY)
    err = info.value.errors[0]
    assert err.code == "E106" and err.location.line == 15, str(err)


@SETTINGS
@given(data=st.data())
def test_libyaml_and_the_python_reader_read_every_file_alike(data: st.DataObject) -> None:
    """Loading takes libyaml's fast path for clean files: it must give exactly what the Python reader gives."""
    from engine.core import load

    name = data.draw(st.sampled_from(sorted(p.name for p in POLICIES.glob("*.yaml"))))
    lines = (POLICIES / name).read_text(encoding="utf-8").splitlines()
    for _ in range(data.draw(st.integers(0, 2))):  # and lightly edited copies, which may not parse at all
        i = data.draw(st.integers(0, len(lines) - 1))
        lines[i] = lines[i][: data.draw(st.integers(0, len(lines[i])))] + data.draw(
            st.sampled_from(["", ":", " x", "]"])
        )
    text = "\n".join(lines) + "\n"
    fast = load._fast(text, text.encode(), name)
    try:
        slow: Any = load_text(text.encode(), name, fast=False)
    except PolicyErrors:
        slow = None
    if fast is None:
        return  # the Python reader decides; it is what the other tests check
    assert slow is not None
    assert (fast.data, fast.spans, fast.key_spans) == (slow.data, slow.spans, slow.key_spans)


def test_the_atheris_target_runs_on_the_shipped_policies_and_junk() -> None:
    """fuzz/fuzz_policy.py is for long runs under atheris; it must keep working between them."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fuzz_policy", POLICIES.parent / "fuzz" / "fuzz_policy.py")
    assert spec is not None and spec.loader is not None
    target = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(target)
    for i, path in enumerate(sorted(POLICIES.glob("*.yaml"))):
        kind = ("tiering", "classification", "access", "retention", "escalation").index(path.stem)
        target.check_one(bytes([kind]) + path.read_bytes())
        assert i < 5
    for junk in (b"", b"\x00", b"\x02kind: [", b"\x01" + b"a: &a [*a]\n", b"\x03\xff\xfe"):
        target.check_one(junk)
    import pytest as _pytest

    with _pytest.raises(AssertionError):  # and it does catch a broken contract
        original = target.build_bundle
        target.build_bundle = lambda *a: (_ for _ in ()).throw(PolicyErrors([_unlocated()]))
        try:
            target.check_one(b"\x00x")
        finally:
            target.build_bundle = original


def _unlocated() -> PolicyError:
    from engine.errors import Location

    return PolicyError("somewhere", Location("elsewhere.yaml", 0, 0), code="P000")
