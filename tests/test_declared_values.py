"""Texts a policy compares with a name that has declared values, and field patterns (#13).

* a text compared with an output's ``values`` or a fact's ``allowed`` that they lack (E130 in
  a condition, P144 in a ``match:`` cell), and a tier an access condition names that tiering's
  ``value_tier`` lacks (P145), are refused at load with the value meant;
* a classification field pattern no record path can match is refused (P146), and a pattern
  over two levels of lists (``orders[].items[].sku``) classifies those fields (``fnmatch``
  read ``[].items[]`` as one character set and never matched).
"""

from __future__ import annotations

import fnmatch
import shutil
from pathlib import Path

import pytest
from conftest import NOW, POLICIES

from engine import Engine
from engine.core import globs
from engine.core.bundle import build_bundle
from engine.errors import PolicyError, PolicyErrors
from engine.plugins import build_registry

REGISTRY = build_registry()


def _edited(tmp_path: Path, name: str, old: str, new: str) -> Path:
    d = tmp_path / "p"
    shutil.copytree(POLICIES, d, ignore=shutil.ignore_patterns("tests"))
    path = d / f"{name}.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")
    return d


def _first_error(d: Path) -> PolicyError:
    with pytest.raises(PolicyErrors) as got:
        build_bundle(sorted(d.glob("*.yaml")), REGISTRY)
    return got.value.errors[0]


def _column_of(d: Path, name: str, text: str) -> tuple[int, int]:
    for n, line in enumerate((d / f"{name}.yaml").read_text(encoding="utf-8").splitlines(), 1):
        if text in line:
            return n, line.index(text) + 1
    raise AssertionError(text)


@pytest.mark.parametrize(
    ("old", "new", "literal", "meant"),
    [
        ('when: outputs.risk_level == "high"', 'when: outputs.risk_level == "hihg"', '"hihg"', "high"),
        ('when: outputs.risk_level == "high"', "when: '\"hihg\" == outputs.risk_level'", '"hihg"', "high"),
        ('when: outputs.risk_level == "high"', 'when: outputs.risk_level != "hihg"', '"hihg"', "high"),
        (
            'when: outputs.risk_level == "high"',
            'when: outputs.risk_level in ["high", "meduim"]',
            '"meduim"',
            "medium",
        ),
    ],
)
def test_a_text_an_output_never_takes_is_refused_where_it_is_written(
    tmp_path: Path, old: str, new: str, literal: str, meant: str
) -> None:
    d = _edited(tmp_path, "tiering", old, new)
    err = _first_error(d)
    assert err.code == "E130" and f"is never `{literal.strip(chr(34))}`" in err.message
    assert err.hint == f"did you mean `{meant}`?"
    assert (err.location.line, err.location.column) == _column_of(d, "tiering", literal)


def test_a_declared_value_compared_loads_and_decides_as_before(tmp_path: Path) -> None:
    d = _edited(tmp_path, "tiering", 'when: outputs.risk_level == "high"', 'when: outputs.risk_level in ["high"]')
    engine = Engine(d)
    assert "risk_level" in engine.bundle.policies["tiering"].policy.outputs


def test_a_fact_s_allowed_texts_bind_its_comparisons(tmp_path: Path) -> None:
    d = _edited(
        tmp_path,
        "tiering",
        "when: customer.fraud_flags > 0\n",
        'when: customer.fraud_flags > 0 && customer.industry == "finanse"\n',
    )
    err = _first_error(d)
    assert err.code == "E130" and err.hint == "did you mean `finance`?"


def test_a_cell_text_its_input_never_takes_is_refused(tmp_path: Path) -> None:
    d = _edited(tmp_path, "tiering", "match: {tier: low}", "match: {tier: [low, lowest]}")
    err = _first_error(d)
    assert err.code == "P144" and "`outputs.value_tier` is never `lowest`" in err.message
    assert err.hint == "did you mean `low`?"
    assert err.location.line == _column_of(d, "tiering", "match: {tier: [low, lowest]}")[0]


def test_an_access_tier_tiering_does_not_list_is_refused(tmp_path: Path) -> None:
    d = _edited(tmp_path, "access", 'resource.tier == "high"', 'resource.tier == "platinum"')
    err = _first_error(d)
    assert err.code == "P145" and "`resource.tier` is never `platinum`" in err.message
    assert err.hint is not None and "`high`" in err.hint and "`minimal`" in err.hint  # the tiers, listed
    assert err.related is not None and Path(err.related.file).name == "tiering.yaml"
    assert (err.location.line, err.location.column) == _column_of(d, "access", '"platinum"')


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("contacts[.*", "opens no list marker"),
        ("contacts[]email", "`[]` followed by a name"),
        ("address..city", "empty name between dots"),
        ("address.", "empty name between dots"),
        ("phone[z-a]", "cannot be read"),
    ],
)
def test_a_field_pattern_that_can_never_match_is_refused(tmp_path: Path, pattern: str, words: str) -> None:
    d = _edited(tmp_path, "classification", '"contacts[].*"', f'"{pattern}"')
    err = _first_error(d)
    assert err.code == "P146" and words in err.message and pattern in err.message
    assert (err.location.line, err.location.column) == _column_of(d, "classification", f'"{pattern}"')


def test_a_pattern_over_two_levels_of_lists_classifies_their_fields(tmp_path: Path) -> None:
    old = '"bank_*", card_number]'
    d = _edited(tmp_path, "classification", old, '"bank_*", card_number, "households[].members[].ref"]')
    record = {"id": "C1", "households": [{"members": [{"ref": "A-1"}]}]}
    fields = Engine(d).evaluate("classification", record, now=NOW).outputs["fields"]
    assert fields["households[].members[].ref"] == {"class": "sensitive", "rule": "sensitive-identifiers"}
    shipped = Engine(POLICIES).evaluate("classification", record, now=NOW).outputs
    assert "households[].members[].ref" not in shipped["fields"]  # the new pattern did it


@pytest.mark.parametrize("pattern", ["address.*", "*.email", "phone?", "phone[0-9]", "phone[!0-9]", "id", "a*b*c"])
@pytest.mark.parametrize(
    "path", ["address.city", "contact.email", "phone1", "phonex", "id", "abc", "a.b.c", "address", "x.email.y"]
)
def test_patterns_without_lists_match_as_fnmatch_did(pattern: str, path: str) -> None:
    assert globs.matches(pattern, path) is fnmatch.fnmatchcase(path, pattern)


def test_the_list_marker_is_literal_at_every_level() -> None:
    assert globs.matches("orders[].items[].sku", "orders[].items[].sku")
    assert not globs.matches("orders[].items[].sku", "orders[].items[]xsku")
    assert globs.matches("orders[].*", "orders[].items[].sku")
    assert not globs.matches("orders[].*", "orders.x")
    assert globs.impossible("orders[].items[].sku") is None and globs.impossible("contacts[].*") is None
