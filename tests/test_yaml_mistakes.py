"""The YAML-level mistakes an officer makes (#13), each answered with its own code, the line
and column where the mistake is (where a bracket or quote was opened, not where parsing gave
up) and what to write instead: never raw parser text. Characters an editor or an input
method slips in (tabs, non-breaking and full-width spaces, full-width punctuation, smart
quotes) are named with their code point."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MINIMAL

from engine.core.bundle import build_bundle
from engine.errors import PolicyError, PolicyErrors
from engine.plugins import build_registry

REGISTRY = build_registry()


def edit(old: str, new: str, base: str = MINIMAL) -> str:
    assert old in base, old
    return base.replace(old, new, 1)


# (case, policy text, code, line, column, words in the message, words in the hint)
MISTAKES = [
    ("tab-indent", edit("  clv: {type", "\tclv: {type"), "P040", 5, 1, "a tab in the indentation", "spaces"),
    ("tab-after-colon", edit("hit: first", "hit:\tfirst"), "P040", 11, 9, "a tab after `hit:`", "a space"),
    ("nbsp-indent", edit("    hit: first", "\u00a0   hit: first"), "P041", 11, 1, "U+00A0", "plain space"),
    ("nbsp-after-colon", edit("hit: first", "hit:\u00a0first"), "P041", 11, 9, "non-breaking space", "plain space"),
    ("ideographic-space", edit("    hit: first", "\u3000   hit: first"), "P041", 11, 1, "U+3000", "plain space"),
    ("zero-width-space", edit("hit: first", "hit: fi\u200brst"), "P041", 11, 12, "U+200B", "delete it"),
    ("bom-mid-file", edit("hit: first", "hit: \ufefffirst"), "P041", 11, 10, "U+FEFF", "delete it"),
    ("full-width-colon", edit("hit: first", "hit\uff1afirst"), "P042", 11, 8, "U+FF1A", "`hit: first`"),
    (
        "full-width-bracket",
        edit("values: [gold, silver]", "values: \uff3bgold, silver\uff3d"),
        "P042",
        8,
        32,
        "U+FF3B",
        "`[`",
    ),
    (
        "full-width-comma",
        edit("values: [gold, silver]", "values: [gold\uff0csilver]"),
        "P013",
        8,
        37,
        "U+FF0C",
        "`gold, silver`",
    ),
    (
        "ideographic-comma",
        edit("values: [gold, silver]", "values: [gold\u3001silver]"),
        "P013",
        8,
        37,
        "U+3001",
        "plain comma",
    ),
    ("smart-quote", edit('when: "true"', "when: \u201ctrue\u201d"), "P043", 18, 15, "U+201C", '`"true"`'),
    ("full-width-quote", edit('when: "true"', "when: \uff02true\uff02"), "P043", 18, 15, "U+FF02", '`"true"`'),
    (
        "bracket-closed-wrong",
        edit("values: [gold, silver]", "values: [gold, silver}"),
        "P045",
        8,
        45,
        "opened on line 8",
        "`]`",
    ),
    (
        "brace-never-closed",
        edit("  clv: {type: number, min: 0, required: true}", "  clv: {type: number, min: 0, required: true"),
        "P044",
        5,
        8,
        "the `{` opened on line 5 is never closed",
        "`}`",
    ),
    (
        "quote-never-closed",
        edit('when: "true"', 'when: "true'),
        "P046",
        18,
        15,
        "opened on line 18",
        'close it with `"`',
    ),
    (
        "missing-comma",
        edit("values: [gold, silver]", 'values: ["gold" "silver"]'),
        "P047",
        8,
        40,
        "a `,` is missing",
        "`, `",
    ),
    ("colon-in-text", edit("then: silver", "then: silver: best"), "P048", 19, 21, "`: ` inside", '`"silver: best"`'),
    ("key-too-deep", edit("    output: tier", "      output: tier"), "P049", 12, 7, "indented deeper", "column 5"),
    ("key-without-colon", edit("    output: tier", "    output tier"), "P050", 12, 5, "no `:`", "`output: tier`"),
    (
        "dash-among-keys",
        edit("    output: tier", "    - output: tier"),
        "P051",
        12,
        5,
        "among the keys",
        "`key: value`",
    ),
    ("key-misaligned", edit("    output: tier", "   output: tier"), "P052", 12, 4, "not lined up", "column 5"),
    (
        "dash-on-key-line",
        edit("    rules:\n      - id: gold", "    rules: - id: gold"),
        "P053",
        13,
        12,
        "cannot start",
        "next line",
    ),
    ("at-sign-value", edit("then: silver", "then: @silver"), "P054", 19, 15, "`@` cannot start", '`"@silver"`'),
    ("backtick-value", edit("then: silver", "then: `silver`"), "P054", 19, 15, "cannot start a value", "double quotes"),
    ("text-after-quote", edit('when: "true"', 'when: "true" x'), "P055", 18, 22, "`x` follows the closing", "quote"),
    ("unknown-escape", edit('when: "true"', 'when: "tr\\due"'), "P056", 18, 18, "`\\d` is not an escape", "`\\\\d`"),
    ("alias-to-nothing", edit("then: silver", "then: *silver"), "P057", 19, 15, "refers to no anchor", '`"*silver"`'),
    (
        "anchor-twice",
        edit("then: gold", "then: &a gold").replace("then: silver", "then: &a silver"),
        "P059",
        19,
        15,
        "`&a` is defined twice",
        "own name",
    ),
    ("second-document", MINIMAL + "---\nkind: x\n", "P060", 20, 1, "a second YAML document", "own file"),
    ("tag", edit("then: silver", "then: !silver x"), "P062", 19, 15, "`!silver` is a YAML tag", '`"!silver"`'),
    ("python-tag", edit("then: silver", "then: !!python/object x"), "P062", 19, 15, "`!!python/object`", "remove"),
    ("text-after-pipe", edit('when: "true"', "when: | true"), "P063", 18, 17, "after `|`", "next line"),
    (
        "empty-item",
        edit("values: [gold, silver]", "values: [gold,, silver]"),
        "P064",
        8,
        38,
        "an empty item",
        "remove one",
    ),
    ("merge-not-a-mapping", edit("    hit: first", "    <<: 5\n    hit: first"), "P066", 11, 9, "`<<:`", "`<<: *name`"),
    (
        "no-space-after-colon",
        edit("    hit: first", "    hit:first"),
        "P067",
        11,
        9,
        "no space after the `:`",
        "`hit: first`",
    ),
    (
        "bracket-in-item",
        edit("values: [gold, silver]", "values: [contacts[].x, silver]"),
        "P068",
        8,
        41,
        "`[` inside",
        "double quotes",
    ),
]


def first_error(text: str, tmp_path: Path) -> PolicyError:
    path = tmp_path / "tiering.yaml"
    path.write_bytes(text.encode("utf-8"))
    with pytest.raises(PolicyErrors) as info:
        build_bundle([path], REGISTRY)
    return info.value.errors[0]


@pytest.mark.parametrize(
    ("case", "text", "code", "line", "column", "words", "hint"), MISTAKES, ids=[c[0] for c in MISTAKES]
)
def test_each_yaml_mistake_is_located_and_answered(
    tmp_path: Path, case: str, text: str, code: str, line: int, column: int, words: str, hint: str
) -> None:
    err = first_error(text, tmp_path)
    where = (err.code, err.location.line, err.location.column)
    assert where == (code, line, column), f"{case}: {err}"
    assert err.location.file.endswith("tiering.yaml")
    assert words in err.message, err.message
    assert hint in (err.hint or ""), err.hint


RAW = ("expected <block end>", "found undefined alias", "could not find expected", "while parsing", "while scanning")


@pytest.mark.parametrize(("case", "text"), [(c[0], c[1]) for c in MISTAKES], ids=[c[0] for c in MISTAKES])
def test_no_answer_is_raw_parser_text(tmp_path: Path, case: str, text: str) -> None:
    err = first_error(text, tmp_path)
    assert not any(raw in err.message or raw in (err.hint or "") for raw in RAW), err
    assert err.hint, f"{case}: no hint"


def test_an_unclosed_bracket_is_reported_where_it_opened_not_lines_later(tmp_path: Path) -> None:
    # the `[` and `{` on line 8 are never closed; YAML itself notices only on a later line
    err = first_error(edit("values: [gold, silver]}", "values: [gold, silver"), tmp_path)
    assert err.location.line == 8 and "opened on line 8" in err.message, err
    assert "never closed" in err.message and err.code == "P044", err
