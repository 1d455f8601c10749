"""Loading stays linear in the file's size: a file past the value limit is refused by the fast
reader itself (never read a second time by the Python reader), and the lint checks that
compare rules with each other find the same findings when the rules number thousands."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.core import load
from engine.core.bundle import build_bundle
from engine.errors import PolicyErrors
from engine.plugins import build_registry
from engine.workbench.lint import lint_bundle

POLICIES = Path(__file__).resolve().parent.parent / "policies"


def _too_many_values() -> str:
    items = ", ".join("1" for _ in range(load.MAX_NODES + 1))
    return f"charter: 1\nkind: access\nid: big\nnotes: [{items}]\n"


def test_a_file_past_the_value_limit_is_refused_by_the_fast_reader_as_the_python_reader_refuses_it() -> None:
    text = _too_many_values()
    with pytest.raises(PolicyErrors) as fast:
        load._fast(text, text.encode(), "big.yaml")  # before: None, and the Python reader read it all again
    with pytest.raises(PolicyErrors) as slow:
        load.load_text(text.encode(), "big.yaml", fast=False)
    (f,) = fast.value.errors
    (s,) = slow.value.errors
    assert f.code == s.code == "P006"
    assert f.location == s.location
    assert f.location.line == 4 and f.location.column > 500_000  # at the value past the limit, in the list


def test_an_overridden_grant_is_found_among_thousands_of_rules(tmp_path: Path) -> None:
    for f in POLICIES.glob("*.yaml"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    head, rules = (POLICIES / "access.yaml").read_text(encoding="utf-8").split("rules:\n", 1)
    generated = "".join(
        f"  - id: gen-{i}\n    effect: allow\n    roles: [agent]\n    classes: [basic]\n    actions: [read]\n"
        f'    purposes: [service]\n    when: subject.department == "d{i}"\n    message: rule {i}\n'
        for i in range(2000)
    )
    blocked = (
        "  - id: never-allows\n    effect: allow\n    roles: [marketing_analyst]\n    classes: [basic]\n"
        "    actions: [delete]\n    purposes: [marketing]\n    message: blocked\n"
        "  - id: no-marketing-deletes\n    effect: deny\n    roles: ['*']\n    classes: ['*']\n"
        "    actions: [delete]\n    purposes: [marketing]\n    message: never\n"
    )
    (tmp_path / "access.yaml").write_text(head + "rules:\n" + generated + blocked + rules, encoding="utf-8")
    bundle = build_bundle([tmp_path], build_registry())
    overridden = [f for f in lint_bundle(bundle) if f.code == "L020"]
    assert [f.message.split("`")[1] for f in overridden] == ["never-allows"]
    assert "no-marketing-deletes" in overridden[0].message
