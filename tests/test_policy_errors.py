"""Every mistake a compliance officer can make is located: file, line, column, code, words.

Each case edits the minimal policy of ``conftest.MINIMAL`` (or the shipped one) and pins
where the error points, not just that there is one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MINIMAL

from engine.core.bundle import build_bundle
from engine.core.load import load_text
from engine.errors import PolicyError, PolicyErrors
from engine.plugins import build_registry

REGISTRY = build_registry()


def errors_for(text: str, tmp_path: Path) -> list[PolicyError]:
    path = tmp_path / "tiering.yaml"
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    with pytest.raises(PolicyErrors) as info:
        build_bundle([path], REGISTRY)
    return info.value.errors


def edit(old: str, new: str, base: str = MINIMAL) -> str:
    assert old in base, old
    return base.replace(old, new, 1)


# (case id, policy text, code (or code prefix), line, column, words in the message, words in the hint)
CASES = [
    ("yaml-syntax", edit("values: [gold, silver]}", "values: [gold, silver}"), "P045", 8, 45, "closed with `}`", "`]`"),
    ("yaml-tab", edit("  clv: {type", "\tclv: {type"), "P040", 5, 1, "a tab", "spaces"),
    (
        "duplicate-key",
        edit("    hit: first\n", "    hit: first\n    hit: unique\n"),
        "P005",
        12,
        5,
        "`hit` is written twice",
        "keep one",
    ),
    (
        "unknown-key",
        edit("        when: customer.clv", "        whenn: customer.clv"),
        "P020",
        15,
        9,
        "unknown key `whenn`",
        "did you mean `when`?",
    ),
    (
        "unknown-top-key",
        edit("outputs:\n", "output:\n"),
        "P020",
        7,
        1,
        "unknown key `output`",
        "did you mean `outputs`?",
    ),
    ("wrong-type", edit("min: 0,", "min: zero,"), "P023", 5, 28, "expected a number, found `zero`", "without quotes"),
    ("bad-enum", edit("hit: first", "hit: frist"), "P022", 11, 10, "`frist` is not allowed", "did you mean `first`?"),
    ("missing-key", edit("        then: gold\n", ""), "P021", 14, 9, "missing key `then`", "add `then:`"),
    ("bad-expression", edit(">= 50000 && customer", ">= 50000 and customer"), "E1", 15, 37, "", ""),
    (
        "unknown-fact",
        edit("customer.clv >= 50000", "customer.clvv >= 50000"),
        "E1",
        15,
        15,
        "clvv",
        "did you mean `customer.clv`?",
    ),
    (
        "duplicate-id",
        edit("      - id: silver", "      - id: gold"),
        "P120",
        17,
        13,
        "rule id `gold` is used twice",
        "",
    ),
    (
        "unknown-value",
        edit("        then: gold", "        then: gould"),
        "P123",
        16,
        15,
        "`gould` is not a value of output `tier`",
        "did you mean `gold`?",
    ),
    (
        "unknown-output",
        edit("    output: tier", "    output: tire"),
        "P121",
        12,
        13,
        "unknown output `tire`",
        "did you mean `tier`?",
    ),
    (
        "unknown-kind",
        edit("kind: tiering", "kind: tierin"),
        "P011",
        2,
        7,
        "unknown policy kind `tierin`",
        "did you mean `tiering`?",
    ),
    (
        "not-boolean",
        edit("when: customer.clv >= 50000 && customer.complaints < 3", "when: customer.clv + 1.0"),
        "E150",
        15,
        15,
        "gives a double, not a bool",
        "",
    ),
    ("min-above-max", edit("min: 0,", "min: 10, max: 5,"), "P101", 5, 28, "`min` 10 is above `max` 5", "swap"),
    (
        "unused-output",
        edit(
            "  tier: {type: string, values: [gold, silver]}\n",
            "  tier: {type: string, values: [gold, silver]}\n  spare: {type: string}\n",
        ),
        "P141",
        9,
        3,
        "no table sets output `spare`",
        "",
    ),
    (
        "when-and-match",
        edit("        when: customer.clv >= 50000", "        match: {tier: gold}\n        when: customer.clv >= 50000"),
        "P138",
        15,
        9,
        "`when:` or `match:`, not both",
        "fold the match into the condition",
    ),
    (
        "not-utf8",
        MINIMAL.replace("id: t\n", "id: t\n# \xff\n").encode("latin-1"),
        "P002",
        4,
        3,
        "not valid UTF-8",
        "UTF-8",
    ),
]


@pytest.mark.parametrize(("case", "text", "code", "line", "column", "words", "hint"), CASES, ids=[c[0] for c in CASES])
def test_error_is_located(
    case: str, text: str, code: str, line: int, column: int, words: str, hint: str, tmp_path: Path
) -> None:
    errors = errors_for(text, tmp_path)
    first = errors[0]
    assert first.code.startswith(code), [str(e) for e in errors]
    assert first.location.file.endswith("tiering.yaml")
    assert (first.location.line, first.location.column) == (line, column), str(first)
    assert words in first.message
    if hint:
        assert first.hint is not None and hint in first.hint, first.hint


UNIQUE = edit(
    """  - id: tiering
    hit: first
    output: tier
    rules:
      - id: gold
        when: customer.clv >= 50000 && customer.complaints < 3
        then: gold
      - id: silver
        when: "true"
        then: silver
""",
    """  - id: tiering
    hit: unique
    output: tier
    inputs: {clv: customer.clv}
    rules:
      - id: gold
        match: {clv: ">= 50000"}
        then: gold
      - id: silver
        match: {clv: "[0 .. 60000]"}
        then: silver
""",
)


def test_overlapping_unique_rows_name_both_rows(tmp_path: Path) -> None:
    errors = errors_for(UNIQUE, tmp_path)
    assert [e.code for e in errors] == ["P132"]
    err = errors[0]
    assert "`gold` and `silver` can both match" in err.message
    assert (err.location.line, err.location.column) == (18, 9)
    assert err.related is not None and err.related.line == 15


def test_exclusive_unique_rows_load(tmp_path: Path) -> None:
    fixed = UNIQUE.replace('"[0 .. 60000]"', '"[0 .. 50000)"')
    path = tmp_path / "tiering.yaml"
    path.write_text(fixed)
    bundle = build_bundle([path], REGISTRY)
    assert bundle.policy("tiering").steps[0].id == "tiering"


def test_all_errors_are_collected_and_sorted(tmp_path: Path) -> None:
    text = edit("        then: gold", "        then: gould", edit("      - id: silver", "      - id: gold"))
    errors = errors_for(text, tmp_path)
    assert [e.code for e in errors] == ["P123", "P120"]
    assert [e.location.line for e in errors] == [16, 17]


BANDS = """\
charter: 1
kind: tiering
id: t
facts:
  profit_contribution: {type: number, required: true}
  relationship_years: {type: number, required: true}
  loyalty_score: {type: number, required: true}
scores:
  value: {scorer: clv}
outputs:
  tier: {type: string, values: [high, low]}
bands:
  - id: value-tier
    output: tier
    score: value
    bands:
      - {id: high, value: high, from: 80, to: 100}
      - {id: low, value: low, from: 0, to: 70}
"""


def test_band_gap_names_both_bands(tmp_path: Path) -> None:
    errors = errors_for(BANDS, tmp_path)
    assert [e.code for e in errors] == ["P126"]
    assert "between 70 and 80" in errors[0].message
    assert errors[0].location.line == 17 and errors[0].related is not None and errors[0].related.line == 18


def test_unknown_scorer_is_located_with_suggestion(tmp_path: Path) -> None:
    errors = errors_for(BANDS.replace("scorer: clv", "scorer: cvl").replace("to: 70", "to: 80"), tmp_path)
    assert [e.code for e in errors] == ["P110"]
    assert (errors[0].location.line, errors[0].location.column) == (9, 19)
    assert errors[0].hint == "did you mean `clv`?"


def test_scorer_facts_must_be_declared(tmp_path: Path) -> None:
    text = BANDS.replace("  loyalty_score: {type: number, required: true}\n", "").replace("to: 70", "to: 80")
    errors = errors_for(text, tmp_path)
    assert [e.code for e in errors] == ["P111"]
    assert "`loyalty_score`" in errors[0].message


def test_removing_the_plugin_fails_validation_not_evaluation(tmp_path: Path) -> None:
    path = tmp_path / "tiering.yaml"
    path.write_text(BANDS.replace("to: 70", "to: 80"))
    with pytest.raises(PolicyErrors) as info:
        build_bundle([path], build_registry(builtins=("engine.domains",)))
    assert [e.code for e in info.value.errors] == ["P110"]


def test_cycle_between_tables_is_an_error(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + """\
  - id: a
    hit: first
    output: x
    rules:
      - {id: a1, when: outputs.y == "1", then: "1"}
  - id: b
    hit: first
    output: y
    rules:
      - {id: b1, when: outputs.x == "1", then: "1"}
"""
    )
    text = text.replace("outputs:\n", "outputs:\n  x: {type: string}\n  y: {type: string}\n", 1)
    errors = errors_for(text, tmp_path)
    assert [e.code for e in errors] == ["P143"]
    assert "`a`" in errors[0].message and "`b`" in errors[0].message


def test_two_policies_of_one_kind(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(MINIMAL)
    (tmp_path / "b.yaml").write_text(MINIMAL)
    with pytest.raises(PolicyErrors) as info:
        build_bundle([tmp_path], REGISTRY)
    err = info.value.errors[0]
    assert err.code == "P150" and err.location.file.endswith("b.yaml") and err.related is not None


def test_messages_follow_the_style_guide(tmp_path: Path) -> None:
    for _, text, *_ in CASES:
        for err in errors_for(text, tmp_path):
            assert err.message[0].islower() or err.message[0] in "`Y", err.message
            assert not err.message.endswith("."), err.message
            assert "Error" not in err.message and "Exception" not in err.message, err.message


def test_yes_and_no_stay_text(tmp_path: Path) -> None:
    """YAML 1.1 would read `no` as false (the Norway problem); policies read it as the text `no`."""
    text = MINIMAL.replace("values: [gold, silver]", "values: [gold, silver, no]").replace(
        '        when: "true"\n        then: silver', '        when: "true"\n        then: no'
    )
    path = tmp_path / "tiering.yaml"
    path.write_text(text)
    bundle = build_bundle([path], REGISTRY)
    assert bundle.policy("tiering").outputs["tier"].values == ("gold", "silver", "no")
    assert load_text(b"a: yes\nb: On\nc: true\nd: False\n", "x.yaml").data == {
        "a": "yes",
        "b": "On",
        "c": True,
        "d": False,
    }


POLICIES = Path(__file__).resolve().parent.parent / "policies"


@pytest.mark.parametrize(
    ("file", "old", "new", "code", "hint"),
    [
        ("retention.yaml", "kind: retention\n", "kind: retention\neffective_from: 2025-02-30\n", "P171", "28 days"),
        ("tiering.yaml", "kind: tiering\n", "kind: tiering\neffective_to: 2025-13-01\n", "P171", "no month 13"),
        ("escalation.yaml", 'holidays: ["2025-01-01",', "holidays: [2024-02-30,", "P197", "February 2024 has 29"),
    ],
)
def test_an_impossible_unquoted_date_is_a_located_error(
    tmp_path: Path, file: str, old: str, new: str, code: str, hint: str
) -> None:
    """YAML reads `2025-02-30` as a date and failed inside its constructor (a traceback)."""
    for p in POLICIES.glob("*.yaml"):
        text = p.read_text(encoding="utf-8")
        if p.name == file:
            assert old in text
            text = text.replace(old, new, 1)
        (tmp_path / p.name).write_text(text, encoding="utf-8")
    with pytest.raises(PolicyErrors) as info:
        build_bundle([tmp_path], build_registry())
    [err] = info.value.errors
    date = next(w for w in ("2025-02-30", "2025-13-01", "2024-02-30") if w in new)
    lines = (tmp_path / file).read_text(encoding="utf-8").splitlines()
    line = next(i for i, text in enumerate(lines, 1) if date in text)
    assert (err.code, err.location.file.endswith(file), err.location.line) == (code, True, line)
    assert hint in (err.hint or "")


def test_a_number_too_long_to_read_is_a_located_error() -> None:
    text = MINIMAL.replace("id: t\n", "id: t\ndescription: " + "9" * 5000 + "\n")
    with pytest.raises(PolicyErrors) as info:
        load_text(text.encode(), "t.yaml")
    [err] = info.value.errors
    assert (err.code, err.location.line, err.location.column) == ("P012", 4, 14)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("mark", ["\uff0c", "\u3001", "\uff1b"])
def test_a_full_width_comma_in_a_list_is_refused_at_the_comma(fast: bool, mark: str) -> None:
    """An input method's comma made `[name，phone]` one item, silently (a field rule matching nothing)."""
    text = f"charter: 1\nkind: classification\nfields: [name{mark}phone, email]\n"
    with pytest.raises(PolicyErrors) as info:
        load_text(text.encode(), "c.yaml", fast=fast)
    [err] = info.value.errors
    assert (err.code, err.location.line, err.location.column) == ("P013", 3, 14)
    assert err.hint is not None and "`name, phone`" in err.hint
    quoted = f'charter: 1\nkind: classification\nfields: ["name{mark}phone", email]\n'  # quoted: the text is meant
    assert load_text(quoted.encode(), "c.yaml", fast=fast).data["fields"][0] == f"name{mark}phone"
