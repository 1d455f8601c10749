"""The one domain model: domains arrive through ``charter_domains`` and nothing else names them."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from engine import Engine, PolicyErrors
from engine.core.decision import Decision, FiredRule
from engine.core.domain import Domain, DomainResult, RuleInfo
from engine.core.model import Policy
from engine.domains import BUILTIN
from engine.hookspecs import Registry, hookimpl
from engine.plugins import build_registry
from engine.workbench.policytest.coverage import enumerate_rules

ROOT = Path(__file__).resolve().parent.parent
KINDS = {d.kind: d for d in BUILTIN}


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string constant of a module that is not a docstring, with its line."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def _may_name(path: Path, kind: str) -> bool:
    """A domain's own modules (``<kind>.py``, ``<kind>_*.py``) name it, and so may the modules
    of a domain that declares it uses it (``Domain.uses``)."""
    if path.parent != ROOT / "engine" / "domains":
        return False
    owner = path.stem.split("_")[0]
    return owner == kind or (owner in KINDS and kind in KINDS[owner].uses)


def test_no_domain_is_named_outside_its_own_modules() -> None:
    found = []
    for path in sorted([*(ROOT / "engine").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]):
        for line, text in _strings(ast.parse(path.read_text(encoding="utf-8"))):
            if text in KINDS and not _may_name(path, text):
                found.append(f"{path.relative_to(ROOT)}:{line}: `{text}`")
    assert found == [], "ask the domain (engine.core.domain.Domain) instead of naming it:\n" + "\n".join(found)


def test_the_check_itself_finds_a_named_domain(tmp_path: Path) -> None:
    """The scan above would catch a switch on a kind (so it is not vacuous)."""
    tree = ast.parse('"""docstring naming tiering is fine"""\nif policy.kind == "retention":\n    pass\n')
    assert [t for _, t in _strings(tree) if t in KINDS] == ["retention"]
    assert not _may_name(ROOT / "engine" / "audit" / "log.py", "retention")
    assert _may_name(ROOT / "engine" / "domains" / "retention_lint.py", "retention")
    assert _may_name(ROOT / "engine" / "domains" / "access.py", "classification")  # access uses it
    assert not _may_name(ROOT / "engine" / "domains" / "tiering.py", "access")


def test_the_core_never_imports_a_domain() -> None:
    for path in (ROOT / "engine" / "core").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(n.startswith("engine.domains") for n in names), f"{path} imports a domain"


def test_builtin_domains_arrive_through_the_hook() -> None:
    registry = build_registry(entry_points=False)
    assert {"tiering", "classification", "access", "retention", "escalation"} <= set(registry.domains)
    assert {d.plugin for d in registry.domains.values()} == {"engine.domains"}
    without = build_registry(builtins=("charter_plugins.scorers",), entry_points=False)
    assert without.domains == {}
    with pytest.raises(PolicyErrors) as info:
        Engine("policies", registry=without)
    assert {e.code for e in info.value.errors} == {"P011"}  # no kind is known without the domains


class _Dummy:
    """A runner that allows everything and names one rule."""

    def __call__(
        self, facts: Mapping[str, Any], now: datetime, upstream: Mapping[str, Decision], explain: bool
    ) -> DomainResult:
        return DomainResult({"ok": True}, [FiredRule("always", "rules", (("ok", True),), "always", "x.yaml", 1)])


def _build(policy: Policy, registry: Registry) -> _Dummy:
    return _Dummy()


class _Plugin:
    def __init__(self, *domains: Domain) -> None:
        self.domains = list(domains)

    @hookimpl
    def charter_domains(self) -> list[Domain]:
        return self.domains


def test_a_taken_kind_is_reported_naming_both_plugins() -> None:
    impostor = Domain("tiering", "another tiering", shared=False, build=_build)
    registry = build_registry([_Plugin(impostor)], entry_points=False)
    problem = next(p for p in registry.problems if p.code == "X003")
    assert "`tiering`" in problem.message and "engine.domains" in problem.message
    assert registry.domains["tiering"].plugin == "engine.domains"  # the first one is kept


def test_a_domain_that_lists_no_rules_is_not_measured(tmp_path: Path) -> None:
    silent = Domain("silent", "decides, but cannot say its rules", shared=False, build=_build)
    (tmp_path / "silent.yaml").write_text("charter: 1\nkind: silent\nid: quiet\n", encoding="utf-8")
    engine = Engine(tmp_path, plugins=[_Plugin(silent)])
    decision = engine.evaluate("silent", {"id": "x"}, now=datetime.fromisoformat("2025-06-30T00:00:00+00:00"))
    assert decision.fired_ids == ("always",)
    found = enumerate_rules(engine.bundle.policies["silent"])
    assert found.rules == () and [r.id for r in found.unmeasured] == ["quiet"]

    listed = Domain(
        "listed", "lists its rule", shared=False, build=_build, rules=lambda p: [RuleInfo(p.path, 1, "always", "rule")]
    )
    (tmp_path / "silent.yaml").unlink()
    (tmp_path / "listed.yaml").write_text("charter: 1\nkind: listed\nid: loud\n", encoding="utf-8")
    engine = Engine(tmp_path, plugins=[_Plugin(listed)])
    found = enumerate_rules(engine.bundle.policies["listed"])
    assert [r.id for r in found.rules] == ["always"] and found.unmeasured == ()
