"""A third-party plugin package that fails to load never stops a command: it is named and skipped.

The packages here are real distributions as importlib.metadata finds them: a `*.dist-info`
directory (METADATA, entry_points.txt) and the modules it names, in a temporary directory
put on the path (PYTHONPATH for the command line, sys.path in process).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import NOW, POLICIES, ROOT

from engine import Engine
from engine.errors import PluginError
from engine.plugins import STRICT_ENV, build_registry

GOOD = """\
from engine.hookspecs import hookimpl
from engine.plugins import DetectorSpec


@hookimpl
def charter_detectors():
    return [DetectorSpec("{prefix}_token", lambda text: text.startswith("tok_"))]
"""
RAISES = 'import os\n\nraise RuntimeError("the licence server is down")\n'
SYNTAX = "def broken(:\n    pass\n"
MISSING_DEPENDENCY = "import {prefix}_no_such_dependency\n"
UNKNOWN_HOOK = "from engine.hookspecs import hookimpl\n\n\n@hookimpl\ndef charter_scorerz():\n    return []\n"
HOOK_RAISES = (
    "from engine.hookspecs import hookimpl\n\n\n@hookimpl\ndef charter_scorers():\n"
    '    raise ValueError("no scorers today")\n'
)


def dist(root: Path, name: str, entry_points: str) -> None:
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"  # as a wheel names it
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(entry_points, encoding="utf-8")


def packages(root: Path, prefix: str, *, garbled: bool = True) -> Path:
    """One distribution with a good plugin and five bad ones, and (``garbled``) one whose entry
    points cannot be read."""
    modules = {
        "good": GOOD,
        "raises": RAISES,
        "syntax": SYNTAX,
        "missing": MISSING_DEPENDENCY,
        "unknown_hook": UNKNOWN_HOOK,
        "hook_raises": HOOK_RAISES,
    }
    lines = ["[charter]"]
    for name, text in modules.items():
        (root / f"{prefix}_{name}.py").write_text(text.format(prefix=prefix), encoding="utf-8")
        lines.append(f"{prefix}-{name} = {prefix}_{name}")
    dist(root, f"{prefix}-plugins", "\n".join(lines) + "\n")
    if garbled:
        dist(root, f"{prefix}-garbled", "[charter]\nthis line names no module\n")
    return root


def charter(*args: str, path: Path, strict: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != STRICT_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(path), *filter(None, [env.get("PYTHONPATH")])])
    if strict:
        env[STRICT_ENV] = "1"
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )


def test_validate_warns_about_each_broken_plugin_and_succeeds(tmp_path: Path) -> None:
    root = packages(tmp_path, "cvw")
    r = charter("validate", str(POLICIES), path=root)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok: 5 policy file(s)")
    assert "Traceback" not in r.stderr
    err = r.stderr
    raises, syntax = root / "cvw_raises.py", root / "cvw_syntax.py"
    assert (
        "warning: plugin `cvw-raises` from `cvw-plugins 0.1` (entry point `cvw_raises`) failed to load"
        f" at `{raises}:3`: it raised while being imported: the licence server is down [X007]"
    ) in err
    assert (
        "plugin `cvw-syntax` from `cvw-plugins 0.1` (entry point `cvw_syntax`) failed to load"
        f" at `{syntax}:1`: its code does not compile"
    ) in err
    assert "plugin `cvw-missing` from `cvw-plugins 0.1` (entry point `cvw_missing`) failed to load at" in err
    assert "it cannot be imported: No module named 'cvw_no_such_dependency'" in err
    assert "plugin `cvw-unknown_hook` from `cvw-plugins 0.1`" in err and "unknown hook 'charter_scorerz'" in err
    assert "the entry points of `cvw-garbled 0.1` cannot be read" in err
    assert "help: fix or uninstall `cvw-plugins`" in err
    assert err.count("[X007]") == 5  # each once, though the command builds the registry more than once


def test_strict_mode_refuses_to_start_with_a_located_message(tmp_path: Path) -> None:
    root = packages(tmp_path, "csm", garbled=False)
    r = charter("validate", str(POLICIES), path=root, strict=True)
    assert r.returncode == 1
    assert r.stdout == "" and "Traceback" not in r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith(
        "error: strict plugin loading refuses to start: plugin `csm-raises` from `csm-plugins 0.1`"
        f" (entry point `csm_raises`) failed to load at `{root / 'csm_raises.py'}:3`: it raised while being imported"
    )
    assert first.endswith(
        "[X007] (and 4 more, from `csm-syntax`, `csm-missing`, `csm-unknown_hook`, `csm-hook_raises`)"
    )
    assert "warning:" not in r.stderr  # refused, not skipped


def test_charter_plugins_lists_the_good_plugin_and_every_problem(tmp_path: Path) -> None:
    r = charter("plugins", "--format", "json", path=packages(tmp_path, "cpl"))
    assert r.returncode == 1  # problems: as before, `charter plugins` says so in its exit code
    out = json.loads(r.stdout)
    listed = {p["plugin"]: p for p in out["plugins"]}
    assert listed["cpl-good"]["detectors"] == ["cpl_token"]
    assert "charter_plugins.detectors" in listed
    problems = sorted((p["code"], p["message"].split(" ")[1]) for p in out["problems"])
    assert problems == [
        ("X001", "`cpl-hook_raises`"),
        ("X007", "`cpl-missing`"),
        ("X007", "`cpl-raises`"),
        ("X007", "`cpl-syntax`"),
        ("X007", "`cpl-unknown_hook`"),
        ("X007", "entry"),  # the garbled entry_points.txt: "the entry points of `cpl-garbled 0.1` ..."
    ]


def test_in_process_the_others_keep_working(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(packages(tmp_path, "ipk")))
    monkeypatch.delenv(STRICT_ENV, raising=False)
    registry = build_registry()
    assert registry.detectors["ipk_token"].func("tok_123") is True
    assert registry.detectors["ipk_token"].plugin == "ipk-good"
    assert {"clv", "churn_risk"} <= set(registry.scorers) and "example" in registry.plugins
    failed = {p.plugin: p for p in registry.problems}
    assert set(failed) == {"ipk-raises", "ipk-syntax", "ipk-missing", "ipk-unknown_hook", "ipk-hook_raises"} | {
        "ipk-garbled 0.1"
    }
    assert failed["ipk-hook_raises"].code == "X001" and "no scorers today" in failed["ipk-hook_raises"].message
    assert all(p.code == "X007" for name, p in failed.items() if name != "ipk-hook_raises")
    assert "ipk-raises" not in registry.plugins and "ipk-unknown_hook" not in registry.plugins
    assert "ipk_raises" not in sys.modules
    engine = Engine(POLICIES)  # the host API loads and decides as if the broken packages were not there
    facts = {"record_type": "transaction", "created_at": "2021-03-15T00:00:00Z", "record": {"orders_total": 1.0}}
    assert engine.evaluate("retention", facts, now=NOW).outputs["rule"] == "transaction-records"


def test_strict_in_process_raises_a_plugin_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(packages(tmp_path, "sip")))
    monkeypatch.delenv(STRICT_ENV, raising=False)
    with pytest.raises(PluginError) as caught:
        build_registry(strict=True)
    assert caught.value.code == "X008" and "`sip-" in caught.value.message
    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(PluginError):
        build_registry()
    assert build_registry(strict=False).detectors["sip_token"].plugin == "sip-good"  # the argument wins


def test_a_strict_registry_without_problems_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STRICT_ENV, "1")
    assert build_registry().problems == []


def test_each_load_failure_is_logged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.syspath_prepend(str(packages(tmp_path, "lgo")))
    monkeypatch.delenv(STRICT_ENV, raising=False)
    with caplog.at_level(logging.WARNING, logger="charter.plugins"):
        build_registry()
        build_registry()
    logged = [r.getMessage() for r in caplog.records if r.name == "charter.plugins"]
    assert len(logged) == 5 and all(m.startswith("warning: ") and "[X007]" in m for m in logged)
    assert len({m.split("`")[1] for m in logged}) == 5  # one per failing package or entry point
