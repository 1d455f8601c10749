"""The mistake corpus of issue #13: policy mistakes in each shipped policy file
(``tests/mistakes/<file>.yaml``) and hostile facts and requests files given to
``charter evaluate``. Each policy mistake is answered with its code, line, column, message
and hint (loaded in-process); each hostile file ends without a traceback, its bad line named
by file and line, and every good record in it decided, with and without the decision log."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import EXAMPLES, POLICIES

from engine.cli import main
from engine.core.bundle import build_bundle
from engine.errors import PolicyErrors
from engine.plugins import build_registry

REGISTRY = build_registry()
HERE = Path(__file__).parent
FILES = ("tiering", "classification", "access", "retention", "escalation")


def _mistakes() -> list[Any]:
    out = []
    for name in FILES:
        for case in yaml.safe_load((HERE / "mistakes" / f"{name}.yaml").read_text(encoding="utf-8")):
            out.append(pytest.param(name, case, id=f"{name}-{case['id']}"))
    return out


MISTAKES = _mistakes()


def test_the_corpus_is_large_enough() -> None:
    per_file = {name: sum(1 for p in MISTAKES if p.values[0] == name) for name in FILES}
    assert all(n >= 20 for n in per_file.values()) and sum(per_file.values()) >= 150, per_file
    assert len(HOSTILE) >= 120 and {d for d, _, _ in HOSTILE} == set(SOURCES)  # hostile inputs, every domain


@pytest.mark.parametrize(("name", "case"), MISTAKES)
def test_each_policy_mistake_is_located_and_answered(tmp_path: Path, name: str, case: dict[str, Any]) -> None:
    shutil.copytree(POLICIES, tmp_path / "p", ignore=shutil.ignore_patterns("tests"))
    path = tmp_path / "p" / f"{name}.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.count(case["old"]) == 1, case["old"]
    path.write_bytes(text.replace(case["old"], case["new"], 1).encode("utf-8"))
    try:
        build_bundle(sorted((tmp_path / "p").glob("*.yaml")), REGISTRY)
        got: tuple[Any, ...] = (None, None, None, "", "")
    except PolicyErrors as exc:
        err = exc.errors[0]
        assert Path(err.location.file).name == path.name
        got = (err.code, err.location.line, err.location.column, err.message, err.hint or "")
    if "xfail" in case:
        pytest.xfail(case["xfail"])
    assert got[:3] == (case["code"], case["line"], case["column"]), got
    assert case["message"] in got[3] and case["hint"] in got[4], got
    if case["code"] is not None:
        assert got[4], "no hint"


# -- hostile facts and requests files -------------------------------------------------------------

REQUESTS = EXAMPLES.parent / "requests"
SOURCES = {
    "tiering": EXAMPLES,
    "classification": EXAMPLES,
    "access": REQUESTS / "access.jsonl",
    "retention": REQUESTS / "retention.jsonl",
    "escalation": REQUESTS / "escalation.jsonl",
}


def _good(domain: str, n: int = 3) -> list[str]:
    with SOURCES[domain].open(encoding="utf-8") as f:
        return [next(f).rstrip("\n") for _ in range(n)]


def _jsonl(domain: str, kind: str) -> tuple[bytes, int, int]:
    """The file's bytes, the line of the bad record (0: none) and the number of good records."""
    a, b, c = (line.encode() for line in _good(domain))
    bad = {
        "truncated": a[: len(a) // 2],
        "bad-bytes": a.replace(b'"', b'"\xff', 1)[:40] + b'"}',
        "surrogate": b'{"id": "X1", "note": "\\ud800"}',
        "not-object": b"[1, 2, 3]",
        "nan": b'{"id": "X2", "annual_sales": NaN}',
        "huge-number": b'{"id": "X3", "annual_sales": 1e999}',
        "long-digits": b'{"id": "X4", "purchases_12m": ' + b"9" * 5000 + b"}",
        "deep": b"[" * 100_000 + b"]" * 100_000,
        "single-quotes": b"{'id': 'X5'}",
        "trailing-comma": b'{"id": "X6",}',
        "control-char": b'{"id": "X7", "note": "a\x01b"}',  # a raw control character inside a string
        "lone-brace": b"{",
        "bare-string": b'"just a line of text"',
        "null-line": b"null",
        "infinity": b'{"id": "X8", "annual_sales": -Infinity}',
        "unterminated-string": b'{"id": "X9, "annual_sales": 1}',
        "comment": b"// the next customers were exported on Monday",
        "key-surrogate": b'{"id": "X10", "\\udc80note": 1}',
    }
    if kind == "bom":
        return b"\xef\xbb\xbf" + b"\n".join((a, b, c)) + b"\n", 0, 3
    return b"\n".join((a, bad[kind], b, c)) + b"\n", 2, 3


def _json(domain: str, kind: str) -> tuple[bytes, int, int]:
    good = [json.loads(line) for line in _good(domain)]
    whole = json.dumps(good, ensure_ascii=False, indent=1).encode()
    if kind == "bom":
        return b"\xef\xbb\xbf" + whole, 0, 3
    if kind == "truncated":
        cut = whole.rfind(b"\n {") + 2  # the last record cut short: the first two are decided
        text = whole[: cut + 20]
        return text, text.count(b"\n", 0, cut) + 1, 2
    if kind == "bad-bytes":
        cut = whole.rfind(b"\n {") + 2
        text = whole[: cut + 1] + b'"x\xff": 1,' + whole[cut + 1 :]
        return text, text.count(b"\n", 0, cut) + 1, 2
    raise AssertionError(kind)


def _csv(domain: str, kind: str) -> tuple[bytes, int, int]:
    rows = [json.loads(line) for line in _good(domain)]
    cols = ["id", "industry", "annual_sales", "profit_contribution", "relationship_years", "loyalty_score"]
    cols += ["purchases_12m", "first_purchase_at", "last_purchase_at"]
    lines = [",".join(cols)] + [",".join(str(r[c]) for c in cols) for r in rows]
    if kind == "bom":
        return b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n", 0, 3
    if kind == "semicolon":
        return "\n".join(line.replace(",", ";") for line in lines).encode() + b"\n", 0, 3
    shifted = {"extra-cell": lines[1] + ",surplus", "missing-cell": lines[1].rsplit(",", 1)[0]}
    if kind == "bad-bytes":
        return (
            ("\n".join(lines[:2]) + "\n").encode()
            + b"X9,\xff\xfe"
            + lines[2][2:].encode()
            + b"\n"
            + lines[3].encode()
            + b"\n",
            3,
            2,
        )
    out = [lines[0], lines[1], shifted[kind], lines[2], lines[3]]
    return "\n".join(out).encode() + b"\n", 3, 3


JSONL_KINDS = ("truncated", "bad-bytes", "surrogate", "not-object", "nan", "huge-number", "long-digits", "deep")
JSONL_KINDS += ("single-quotes", "trailing-comma", "bom", "control-char", "lone-brace", "bare-string", "null-line")
JSONL_KINDS += ("infinity", "unterminated-string", "comment", "key-surrogate")
HOSTILE = (
    [(d, "jsonl", k) for d in SOURCES for k in JSONL_KINDS]
    + [(d, "json", k) for d in SOURCES for k in ("bom", "truncated", "bad-bytes")]
    + [(d, "csv", k) for d in ("tiering", "classification") for k in ("bom", "semicolon", "extra-cell")]
    + [(d, "csv", k) for d in ("tiering", "classification") for k in ("missing-cell", "bad-bytes")]
)
MAKE = {"jsonl": _jsonl, "json": _json, "csv": _csv}


@pytest.mark.parametrize("log", [False, True], ids=["no-log", "log"])
@pytest.mark.parametrize(("domain", "fmt", "kind"), HOSTILE, ids=["-".join(h) for h in HOSTILE])
def test_a_hostile_file_loses_no_good_record(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    domain: str,
    fmt: str,
    kind: str,
    log: bool,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHARTER_TRACEBACK", raising=False)
    monkeypatch.setenv("CHARTER_LOG_KEY", os.urandom(32).hex())
    data, bad_line, good = MAKE[fmt](domain, kind)
    facts = tmp_path / f"input.{fmt}"
    facts.write_bytes(data)
    store = f"sqlite:///{tmp_path / 'log.db'}"
    argv = ["evaluate", "--domain", domain, "--facts", str(facts), "--policies", str(POLICIES)]
    argv += ["--now", "2025-06-30T00:00:00Z", "--store", store] + ([] if log else ["--no-log"])
    if domain == "escalation":
        argv += ["--population", str(EXAMPLES)]
    rc = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "C099" not in err, err
    results = [json.loads(line) for line in out.splitlines()]
    decided = [r for r in results if "error" not in r]
    errors = [r["error"]["errors"][0] for r in results if "error" in r]
    assert len(decided) == good, (err, errors)
    if bad_line:
        assert rc == 1 and len(errors) == 1, (rc, errors)
        line = errors[0]["line"]  # a record cut short: where it starts, or its string left open
        assert errors[0]["file"] == str(facts) and bad_line <= line <= data.count(b"\n") + 1, errors[0]
        assert line == bad_line or (fmt, kind) == ("json", "truncated"), errors[0]
        assert f"`{facts}` line {line}" in errors[0]["message"] and errors[0]["hint"]
        assert len(json.dumps(errors[0])) < 2000  # a huge value is cut, not echoed
    else:
        assert rc == 0 and not errors, errors
    if log:
        from engine.plugins import open_store

        logged = list(open_store(store).read())
        assert len(logged) == good
