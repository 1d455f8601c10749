"""The code checks CI runs: the import contract (.importlinter), ruff and mypy --strict.

Each runs as a subprocess from this virtualenv at the repository root and must exit 0; a
failure shows the tool's own output.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

BIN = Path(sys.executable).parent  # the virtualenv's scripts, next to its python


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, cwd=ROOT, timeout=600)


def shown(r: subprocess.CompletedProcess[str]) -> str:
    return f"{' '.join(map(str, r.args))} exited {r.returncode}\n{r.stdout}{r.stderr}"


def test_import_contract_is_kept() -> None:
    lint_imports = shutil.which("lint-imports", path=str(BIN))
    assert lint_imports is not None, f"no lint-imports in {BIN}: install the test extras (pip install -e .[test])"
    r = run(lint_imports, "--no-cache")  # no cache folder left in the work tree
    assert r.returncode == 0, shown(r)


def test_ruff_finds_nothing() -> None:
    r = run(sys.executable, "-m", "ruff", "check", "--no-cache", "engine", "plugins", "tests", "bench")
    assert r.returncode == 0, shown(r)


def test_mypy_strict_finds_nothing() -> None:
    r = run(sys.executable, "-m", "mypy")  # pyproject.toml: packages = ["engine"], strict
    assert r.returncode == 0, shown(r)
