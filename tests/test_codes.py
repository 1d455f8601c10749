"""The code catalogue (engine.codes, docs/errors.md) cannot drift from the source."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

from conftest import ROOT

from engine.codes import CODES, catalogue
from engine.core.facts import _RULE_CODES
from engine.domains.request import _CODES as REQUEST_CODES

CODE = re.compile(r"^[A-Z][0-9]{3}$")

# Codes raised from more than one module, each with one meaning in every place (see CODES).
# A new code raised in a second module must be added here knowingly, or get its own number.
SHARED = {
    "E100",  # the base code of ExprError, and the parser's "cannot read"
    "E105",  # a number too large: found by the parser or the checker
    "F001",  # not a JSON object: the facts, a request, or the part another domain decides on
    "F099",  # rejected without a named field: facts or a request
    "K001",  # no log key: the sealer, or replay meeting a sealed value
    "K004",  # erased: raised by the sealer, recognised by replay
    "K005",  # a value that does not open: raised by the sealer, recognised by replay (K011)
    "D004",  # a store could not write: the SQL stores (charter_plugins.sql) or the JSONL one
    "D003",  # a store cannot be opened: the SQL stores or the JSONL one
    "P009",  # a policy file that cannot be read: when listing or when loading
    "P181",  # access's role checks, and lint's list of codes that make a finding moot
    "P183",
    "P185",  # an unknown data class: access and retention
    "P189",  # a domain that needs another's decisions: access, retention, escalation
    "T035",  # a file a test file names cannot be read: when parsing or when running
    "V001",  # a ranking policy without a snapshot: when compiled or when deciding
}


def raised() -> dict[str, set[str]]:
    """Every code literal in engine/ and plugins/, with the modules it appears in."""
    found: dict[str, set[str]] = defaultdict(set)
    for root in ("engine", "plugins"):
        for path in sorted((ROOT / root).rglob("*.py")):
            if path == ROOT / "engine" / "codes.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and CODE.match(node.value):
                    found[node.value].add(str(path.relative_to(ROOT)))
    return found


def computed() -> set[str]:
    """The fact codes built from a rule's number: F1xx for facts, F2xx for requests."""
    return {f"F1{n:02d}" for n in (*_RULE_CODES.values(), 99)} | {f"F2{n:02d}" for n in (*REQUEST_CODES.values(), 99)}


def test_every_code_the_source_raises_is_catalogued() -> None:
    missing = sorted(set(raised()) - set(CODES))
    assert not missing, f"add these codes and their meaning to engine/codes.py: {missing}"


def test_every_catalogued_code_is_raised() -> None:
    dead = sorted(set(CODES) - set(raised()) - computed())
    assert not dead, f"catalogued but raised nowhere: {dead}"


def test_a_code_in_two_modules_is_known_to_share_one_meaning() -> None:
    shared = {code for code, modules in raised().items() if len(modules) > 1}
    assert shared == SHARED, "a code raised from a new module: give it its own number, or add it to SHARED"


def test_the_documented_catalogue_is_the_generated_one() -> None:
    text = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    assert text == catalogue(), "regenerate it: python -m engine.codes > docs/errors.md"
    documented = set(re.findall(r"^\| `([A-Z]+[0-9]{3})` \|", text, flags=re.M))
    assert documented == set(CODES)


def test_each_meaning_is_written_once() -> None:
    by_meaning: dict[str, list[str]] = defaultdict(list)
    for code, meaning in CODES.items():
        by_meaning[meaning].append(code)
    assert not {m: c for m, c in by_meaning.items() if len(c) > 1}


def test_the_docs_link_the_catalogue() -> None:
    assert "docs/errors.md" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert Path(ROOT / "docs" / "errors.md").exists()
