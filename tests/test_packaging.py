"""Every package of the engine is listed in pyproject.toml's `packages`: one left out (as
`engine.analysis` was, which `charter lint` imports) is missing from a wheel install, though an
editable install hides it."""

from __future__ import annotations

import tomllib

from conftest import ROOT


def test_every_engine_package_is_packaged() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "engine").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
