"""The expression parser loaded from tables built ahead of time (``engine.core.expr.tables``)
is the parser lark builds from ``grammar.lark``: same trees, same errors at the same place."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import lark
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.expr import parser, tables
from engine.core.expr.maketables import GRAMMAR_FILE, build, grammar_digest, tables_source

POLICIES = Path(__file__).resolve().parents[2] / "policies"
REFERENCE = build(GRAMMAR_FILE.read_text(encoding="utf-8"))
TOKENS = ["a", "b.c", "1", "2.5", '"s"', "true", "null", "[", "]", "(", ")", ",", "+", "-", "*", "/", "%"]
TOKENS += ["==", "!=", "<", ">=", "&&", "||", "!", "?", ":", "in", ".", "f", "x.exists(y, y > 1)", "'t'", "  "]


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def _outcome(p: lark.Lark, text: str) -> Any:
    try:
        return ("tree", p.parse(text))
    except lark.exceptions.UnexpectedInput as exc:
        return ("error", type(exc).__name__, exc.line, exc.column, getattr(exc, "token", None))


def test_tables_are_made_from_this_grammar() -> None:
    # a grammar edited without `python -m engine.core.expr.maketables > engine/core/expr/tables.py`
    assert grammar_digest(GRAMMAR_FILE.read_text(encoding="utf-8")) == tables.GRAMMAR_SHA256


def test_the_tables_are_used_when_lark_is_the_version_that_made_them() -> None:
    assert (lark.__version__ == tables.LARK_VERSION) == parser.FROM_TABLES


def test_regenerated_tables_load_into_the_same_parser(tmp_path: Path) -> None:
    (tmp_path / "fresh_tables.py").write_text(tables_source(GRAMMAR_FILE.read_text(encoding="utf-8")))
    spec = importlib.util.spec_from_file_location("fresh_tables", tmp_path / "fresh_tables.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fresh = lark.Lark._load_from_dict(module.DATA, module.MEMO, propagate_positions=True)
    for text in ("a + 1 > 2 && b.c in [1, 2]", "x ? y : z", "f(a)[0].g()"):
        assert fresh.parse(text) == REFERENCE.parse(text)


@pytest.mark.parametrize("path", sorted(POLICIES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_string_of_the_shipped_policies_parses_alike(path: Path) -> None:
    texts = _strings(yaml.safe_load(path.read_text(encoding="utf-8")))
    assert texts
    for text in texts:
        assert _outcome(parser._PARSER, text) == _outcome(REFERENCE, text), text


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=12).map(" ".join))
def test_random_token_strings_parse_alike(text: str) -> None:
    assert _outcome(parser._PARSER, text) == _outcome(REFERENCE, text)
