"""The log's keys default to the user's key directory, never beside the data (#20): a first
`charter evaluate` in a project directory makes `charter.db` and the checkpoints there, and the
master and signing keys in `$CHARTER_HOME` (owner-only); a key an earlier version left in the
working directory is still used there, with a warning naming where to move it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from conftest import EXAMPLES, POLICIES

from engine import keyhome
from engine.cli import main


def _evaluate(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(["evaluate", "--domain", "tiering", "--facts", str(EXAMPLES), "--policies", str(POLICIES),
               "--now", "2025-06-30T00:00:00Z"])  # fmt: skip
    return rc, capsys.readouterr().err


def test_keys_are_made_in_the_user_s_key_directory_not_beside_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home" / "charter"
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.setenv("CHARTER_HOME", str(home))
    monkeypatch.delenv("CHARTER_LOG_KEY", raising=False)
    monkeypatch.chdir(project)
    rc, err = _evaluate(capsys)
    assert rc == 0, err
    assert (project / "charter.db").exists() and (project / "charter.checkpoints.jsonl").exists()
    assert not (project / "charter.key").exists() and not (project / "charter.signing.key").exists()
    for name in ("charter.key", "charter.signing.key"):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert "warning" not in err
    rc, err = main(["log", "verify", "--checkpoints", "charter.checkpoints.jsonl"]), capsys.readouterr().err
    assert rc == 0, err  # read back with the keys where they were made


def test_a_key_left_in_the_working_directory_is_used_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CHARTER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CHARTER_LOG_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    fd = os.open(tmp_path / "charter.key", os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    rc, err = _evaluate(capsys)
    assert rc == 0, err
    assert "`charter.key` sits in the working directory, beside the data" in err
    assert str(tmp_path / "home" / "charter.key") in err  # where to move it
    assert not (tmp_path / "home" / "charter.key").exists()  # the old key still serves: no second one made


def test_the_key_directory_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CHARTER_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert keyhome.home() == tmp_path / "xdg" / "charter"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert keyhome.home() == tmp_path / ".local" / "share" / "charter"
