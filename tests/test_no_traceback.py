"""No command ever ends in a traceback: hostile input gets a located error, and a bug of
Charter's (or a plugin's) one line with code C099."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import EXAMPLES, POLICIES

import engine.cli as cli


def test_an_unexpected_exception_is_one_line_with_a_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(_args: object) -> int:
        raise RuntimeError("the bug")

    monkeypatch.setattr(cli, "cmd_validate", broken)
    monkeypatch.delenv("CHARTER_TRACEBACK", raising=False)
    assert cli.main(["validate", str(POLICIES)]) == 2
    err = capsys.readouterr().err
    assert "charter failed unexpectedly in `validate`: RuntimeError: the bug" in err
    assert "[C099]" in err and "test_no_traceback.py:" in err and "Traceback" not in err
    monkeypatch.setenv("CHARTER_TRACEBACK", "1")
    assert cli.main(["validate", str(POLICIES)]) == 2
    assert "Traceback" in capsys.readouterr().err  # asked for: shown


def hostile(tmp: Path) -> list[list[str]]:
    binary = tmp / "binary.jsonl"
    binary.write_bytes(bytes(range(256)) * 4)
    bad_csv = tmp / "bad.csv"
    bad_csv.write_text('id,"unclosed\n1,2,3,4\n', encoding="utf-8")
    empty = tmp / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    deep = tmp / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    huge = tmp / "huge.jsonl"
    huge.write_text('{"id": "' + "x" * 2_000_000 + '"}\n', encoding="utf-8")
    not_policy = tmp / "policies"
    not_policy.mkdir()
    (not_policy / "tiering.yaml").write_bytes(b"\xff\xfe\x00kind: tiering\n")
    facts = str(EXAMPLES)
    pol = str(POLICIES)
    store = f"sqlite:///{tmp / 'log.db'}"
    out: list[list[str]] = []
    for f in (binary, bad_csv, empty, deep, huge, tmp, tmp / "missing.jsonl"):
        out.append(
            ["evaluate", "--facts", str(f), "--policies", pol, "--now", "2025-06-30T00:00:00Z", "--store", store]
        )
        out.append(["explain", "--facts", str(f), "--policies", pol, "--now", "2025-06-30T00:00:00Z", "--no-log"])
    out += [
        ["evaluate", "--facts", facts, "--policies", pol, "--now", "yesterday"],
        ["evaluate", "--facts", facts, "--policies", pol, "--now", "2025-02-30T00:00:00Z"],
        ["evaluate", "--facts", facts, "--policies", str(not_policy), "--now", "2025-06-30T00:00:00Z"],
        ["evaluate", "--facts", facts, "--policies", pol, "--domain", "nope", "--now", "2025-06-30T00:00:00Z"],
        ["evaluate", "--facts", facts, "--policies", pol, "--now", "2025-06-30T00:00:00Z", "--store", "nosuch://x"],
        ["validate", str(not_policy)],
        ["validate", str(binary)],
        ["validate", str(tmp / "missing")],
        ["log", "verify", "--store", f"sqlite:///{binary}"],
        ["log", "verify", "--store", store, "--checkpoints", str(binary)],
        ["log", "show", "#1", "--store", store, "--key-file", str(binary)],
        ["replay", "--store", store, "--key-file", str(binary), "--since", "not a time"],
        ["snapshot", "--facts", str(binary), "--policies", pol, "--now", "2025-06-30T00:00:00Z", "--store", store],
        ["bundle", "verify", pol, "--approvers", str(binary)],
        ["test", str(binary)],
        ["diff", str(not_policy), pol],
        ["lint", str(binary)],
    ]
    return out


def test_hostile_input_to_every_command_never_shows_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHARTER_TRACEBACK", raising=False)
    monkeypatch.setenv("CHARTER_LOG_KEY", os.urandom(32).hex())
    unexpected = []
    for argv in hostile(tmp_path):
        try:
            rc = cli.main(argv)
        except SystemExit as exit:  # argparse refusing an argument: its own usage line
            rc = int(exit.code or 0)
        err = capsys.readouterr().err
        if "Traceback" in err or "C099" in err:
            unexpected.append((argv, err[-400:]))
        assert isinstance(rc, int)
    assert not unexpected, unexpected
