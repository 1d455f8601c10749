"""Examples in the docs run, so they cannot rot."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

from engine import Decision


def blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def test_readme_python_example_runs(customers: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    (code,) = blocks(ROOT / "README.md", "python")
    scope: dict[str, Any] = {"customers": customers, "customer": customers[0], "stream_of_customers": customers[:50]}
    exec(compile(code.replace("    ...", "    pass"), "README.md", "exec"), scope)  # the docs, not policy text
    assert isinstance(scope["decision"], Decision)
    assert scope["decision"].outputs["value_tier"] in ("high", "medium", "low", "minimal")


def test_readme_opens_with_the_two_commands() -> None:
    first = blocks(ROOT / "README.md", "sh")[0].splitlines()
    assert [line.split("#")[0].strip() for line in first] == ["python3 tasks.py demo", "python3 tasks.py test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 tasks.py test" in ci


@pytest.mark.parametrize("doc", ["expressions.md"])
def test_expression_examples_in_docs_parse(doc: str) -> None:
    from engine.core.expr import parse

    text = (ROOT / "docs" / doc).read_text(encoding="utf-8")
    samples = re.findall(r"^when: (.+)$", text, flags=re.M)
    samples += [s for s in re.findall(r"`([^`|]+)`", text) if s.startswith(("customer.", "now ", "has(", "size("))]
    assert len(samples) > 8
    for sample in samples:
        parse(sample.replace("\\|", "|"))


def test_published_schemas_match_the_code(tmp_path: Path) -> None:
    """engine/schemas/*.json (what editors load) are exactly what `charter schema` writes."""
    import json

    from engine.core.schema import SCHEMA_DIR, write_schemas
    from engine.domains import BUILTIN

    for path in write_schemas({d.kind: d for d in BUILTIN}, tmp_path):
        shipped = SCHEMA_DIR / path.name
        assert shipped.exists(), f"run `charter schema` to publish {path.name}"
        assert json.loads(shipped.read_text()) == json.loads(path.read_text())


def test_shipped_policies_carry_the_schema_modeline() -> None:
    for policy in (ROOT / "policies").glob("*.yaml"):
        first = policy.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema=../engine/schemas/")
        target = (policy.parent / first.split("$schema=")[1]).resolve()
        assert target.exists(), target
