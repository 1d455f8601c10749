"""The files a policy test file names are confined to the project and must be regular files
of a bounded size: a test file is text anyone with write access to the repository can
change, and `customers: /dev/zero` once ran `charter test` to 3 GB."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import EXAMPLES, POLICIES

from engine.cli import main
from engine.workbench.policytest import format as fmt

CASE = "cases:\n  - name: one\n    domain: tiering\n    customer: C000001\n    expect: {value_tier: high}\n"


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Callable[[Path], tuple[int, str]]:
    def go(path: Path) -> tuple[int, str]:
        code = main(["test", str(path)])
        return code, capsys.readouterr().out

    return go


def _write(tmp_path: Path, customers: str, population: str | None = None) -> Path:
    path = tmp_path / "t.yaml"
    head = f"now: 2025-06-30\npolicies: {POLICIES}\ncustomers: {customers}\n"
    if population is not None:
        head += f"population: {population}\n"
    path.write_text(head + CASE, encoding="utf-8")
    return path


@pytest.mark.parametrize("target", ["/dev/zero", "/etc/passwd", "/proc/self/environ"])
def test_a_file_outside_the_project_is_refused(
    tmp_path: Path, run: Callable[[Path], tuple[int, str]], target: str
) -> None:
    code, out = run(_write(tmp_path, target))
    assert code == 2
    assert out.splitlines()[0].startswith(f"{tmp_path / 't.yaml'}:3:12: `{target}` lies outside the project")
    assert "[T043]" in out.splitlines()[0]


def test_a_link_inside_the_project_to_a_file_outside_is_refused(
    tmp_path: Path, run: Callable[[Path], tuple[int, str]]
) -> None:
    (tmp_path / "customers.jsonl").symlink_to("/etc/hostname")
    code, out = run(_write(tmp_path, "customers.jsonl"))
    assert code == 2
    assert "lies outside the project" in out and "[T043]" in out


def test_a_device_a_pipe_or_a_folder_inside_the_project_is_refused(
    tmp_path: Path, run: Callable[[Path], tuple[int, str]]
) -> None:
    os.mkfifo(tmp_path / "pipe.jsonl")  # reading it would wait for ever
    (tmp_path / "folder.jsonl").mkdir()
    code, out = run(_write(tmp_path, "pipe.jsonl", population="folder.jsonl"))
    assert code == 2
    lines = out.splitlines()
    assert any(line.endswith("`pipe.jsonl` is not a regular file [T044]") for line in lines), out
    assert any(line.endswith("`folder.jsonl` is not a regular file [T044]") for line in lines), out
    assert "T036" not in out and "T042" not in out  # the file's cases are not checked against files it may not read


def test_a_policy_folder_outside_the_project_is_refused(tmp_path: Path, run: Callable[[Path], tuple[int, str]]) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(f"now: 2025-06-30\npolicies: /etc\ncustomers: {EXAMPLES}\n" + CASE, encoding="utf-8")
    code, out = run(path)
    assert code == 2
    assert out.splitlines()[0].startswith(f"{path}:2:11: `/etc` lies outside the project")


def test_a_file_too_large_is_refused(
    tmp_path: Path, run: Callable[[Path], tuple[int, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "big.jsonl"
    big.write_bytes(EXAMPLES.read_bytes())
    monkeypatch.setattr(fmt, "MAX_INPUT_BYTES", 1000)
    code, out = run(_write(tmp_path, "big.jsonl"))
    assert code == 2
    assert "more than the 1,000 a test file may read [T044]" in out


def test_the_shipped_tests_and_files_in_the_project_are_read(
    tmp_path: Path, run: Callable[[Path], tuple[int, str]]
) -> None:
    (tmp_path / "customers.jsonl").write_bytes(EXAMPLES.read_bytes())
    code, out = run(_write(tmp_path, "customers.jsonl"))
    assert "T043" not in out and "T044" not in out
    assert code in (0, 1), out  # the case ran: passed or failed on its expectation
    code, out = run(POLICIES / "tests")
    assert code == 0, out


def test_the_project_is_found_by_its_marker(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("", encoding="utf-8")
    tests = tmp_path / "policies" / "tests"
    tests.mkdir(parents=True)
    assert fmt.project_roots(tests)[-1] == tmp_path.resolve()
    bare = tmp_path / "elsewhere" / "policies" / "tests"
    bare.mkdir(parents=True)
    (tmp_path / "pyproject.toml").unlink()
    assert fmt.project_roots(bare)[-1] == (tmp_path / "elsewhere").resolve()
    assert fmt.project_roots(bare.parent)[-1] == (tmp_path / "elsewhere").resolve()
