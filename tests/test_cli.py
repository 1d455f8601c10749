"""The `charter` command line, run as a real subprocess where the exit code matters."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import EXAMPLES, MINIMAL, POLICIES, ROOT

from engine.cli import main
from engine.core.model import FactDecl
from engine.errors import Location
from engine.inputs import read_facts

HERE = Location("p.yaml", 1, 1)


def charter(*args: str, stdin: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args], input=stdin, capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_validate_shipped_policies_exit_0() -> None:
    r = charter("validate", str(POLICIES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith(f"ok: {len(list(POLICIES.glob('*.yaml')))} policy file(s), bundle b-")


def test_validate_prints_path_line_col_and_hint(write_policy: Callable[[str], Path]) -> None:
    d = write_policy(MINIMAL.replace("then: gold", "then: gould"))
    r = charter("validate", str(d))
    assert r.returncode == 1
    first, hint = r.stdout.splitlines()[:2]
    assert first.startswith(f"{d / 'tiering.yaml'}:16:15: `gould` is not a value of output `tier`")
    assert hint.strip() == "help: did you mean `gold`?"


def test_validate_json_format(write_policy: Callable[[str], Path]) -> None:
    d = write_policy(MINIMAL.replace("hit: first", "hit: frist"))
    r = charter("validate", "--format", "json", str(d))
    assert r.returncode == 1
    errors = json.loads(r.stdout)
    assert errors[0]["line"] == 11 and errors[0]["code"] == "P022" and errors[0]["path"] == "tables[0].hit"


def test_evaluate_jsonl_over_examples(tmp_path: Path) -> None:
    r = charter(
        "evaluate",
        "--domain",
        "tiering",
        "--facts",
        str(EXAMPLES),
        "--policies",
        str(POLICIES),
        "--now",
        "2025-06-30T00:00:00Z",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    n = sum(1 for line in EXAMPLES.read_text().splitlines() if line.strip())
    assert len(lines) == n
    first = json.loads(lines[0])
    assert first["domain"] == "tiering" and first["now"] == "2025-06-30T00:00:00Z"
    assert first["snapshot_id"].startswith("pop-") and first["fired"]
    from engine import population
    from engine.plugins import open_store

    kept = population.fetch_snapshot(first["snapshot_id"], open_store(f"sqlite:///{tmp_path / 'charter.db'}"))
    assert kept.id == first["snapshot_id"]
    assert "decision(s), 0 with bad facts" in r.stderr


def test_evaluate_stdin_csv_and_json_with_snapshot(tmp_path: Path, write_policy: Callable[[str], Path]) -> None:
    d = write_policy(MINIMAL)
    csv_text = "id,clv,complaints\nc1,60000,0\nc2,100,0\nc3,-4,0\n"
    r = charter(
        "evaluate", "--facts", "-", "--format", "csv", "--policies", str(d), "--now", "2025-01-01", stdin=csv_text
    )
    assert r.returncode == 1  # one customer had bad facts
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row.get("outputs", {}).get("tier") for row in rows] == ["gold", "silver", None]
    assert rows[2]["error"]["errors"][0]["field"] == "clv"
    f = tmp_path / "one.json"
    f.write_text(json.dumps({"id": "c9", "clv": 99999}))
    r = charter("evaluate", "--facts", str(f), "--policies", str(d), "--now", "2025-01-01", "--explain")
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["outputs"]["tier"] == "gold" and out["trace"][0]["matched"] is True


def test_explain_shows_as_many_customers_as_the_limit_and_refuses_less_than_one(tmp_path: Path) -> None:
    args = ("explain", "--facts", str(EXAMPLES), "--policies", str(POLICIES), "--now", "2025-06-30")
    two = charter(*args, "--limit", "2", cwd=tmp_path)
    assert two.returncode == 0 and two.stdout.count("\ncustomer ") + two.stdout.startswith("customer ") == 2
    for bad in ("0", "-1"):
        refused = charter(*args, "--limit", bad, cwd=tmp_path)
        assert refused.returncode == 2 and "give 1 or more" in refused.stderr and not refused.stdout


def test_explain_reads_like_text(tmp_path: Path) -> None:
    r = charter(
        "explain",
        "--facts",
        str(EXAMPLES),
        "--policies",
        str(POLICIES),
        "--now",
        "2025-06-30",
        "--customer",
        "C000001",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("customer C000001 — tiering")
    assert "because:" in r.stdout and "tiering.yaml:" in r.stdout and "trace (" in r.stdout and "*yes" in r.stdout


def test_bad_now_is_a_usage_error_in_words(tmp_path: Path) -> None:
    r = charter("evaluate", "--facts", str(EXAMPLES), "--policies", str(POLICIES), "--now", "tomorrow", cwd=tmp_path)
    assert r.returncode == 1 and "`--now tomorrow` is not a timestamp" in r.stderr


def test_stdin_tiering_without_snapshot_says_what_to_do(tmp_path: Path) -> None:
    r = charter(
        "evaluate", "--facts", "-", "--policies", str(POLICIES), "--now", "2025-06-30", stdin="{}\n", cwd=tmp_path
    )
    assert r.returncode == 1 and "charter snapshot" in r.stderr


def test_snapshot_command_then_reuse(tmp_path: Path) -> None:
    r = charter(
        "snapshot",
        "--facts",
        str(EXAMPLES),
        "--policies",
        str(POLICIES),
        "--now",
        "2025-06-30",
        "--out",
        "snap.json",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    snap_id = json.loads(r.stdout)["id"]
    assert (tmp_path / "charter.db").exists() and (tmp_path / "snap.json").exists()
    one_customer = EXAMPLES.read_text().splitlines()[0] + "\n"
    by_file = charter(
        "evaluate",
        "--facts",
        "-",
        "--policies",
        str(POLICIES),
        "--now",
        "2025-06-30",
        "--snapshot",
        "snap.json",
        stdin=one_customer,
        cwd=tmp_path,
    )
    assert json.loads(by_file.stdout)["snapshot_id"] == snap_id
    missing = charter(
        "evaluate",
        "--facts",
        "-",
        "--policies",
        str(POLICIES),
        "--now",
        "2025-06-30",
        "--snapshot",
        "pop-0000",
        stdin=one_customer,
        cwd=tmp_path,
    )
    assert missing.returncode == 1 and "no snapshot `pop-0000`" in missing.stderr
    one = EXAMPLES.read_text().splitlines()[0]
    r = charter(
        "evaluate",
        "--facts",
        "-",
        "--policies",
        str(POLICIES),
        "--now",
        "2025-06-30",
        "--snapshot",
        snap_id,
        stdin=one + "\n",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["snapshot_id"] == snap_id


def test_read_facts_formats(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('[{"id": "1"}, {"id": "2"}]')
    (tmp_path / "b.csv").write_text('id,tags,score\n1,"[""a""]",2.5\n')
    assert [c["id"] for c in read_facts(str(tmp_path / "a.json"))] == ["1", "2"]
    decls = {"tags": FactDecl("tags", "list", HERE), "score": FactDecl("score", "number", HERE)}
    assert list(read_facts(str(tmp_path / "b.csv"), declared=decls)) == [{"id": "1", "tags": ["a"], "score": 2.5}]


def test_main_returns_exit_codes(write_policy: Callable[[str], Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(write_policy(MINIMAL))]) == 0
    assert main(["validate", str(write_policy(MINIMAL.replace("kind: tiering", "kind: x")))]) == 1
    out = capsys.readouterr().out
    assert "unknown policy kind `x`" in out


@pytest.mark.parametrize(
    ("domain", "facts", "extra", "summary"),
    [
        ("classification", "customers.jsonl", (), "highest: sensitive"),
        ("access", "requests/access.jsonl", (), "effect: deny"),
        ("retention", "requests/retention.jsonl", (), "status: waiting"),
        ("escalation", "requests/escalation.jsonl", ("--population", str(EXAMPLES)), "state: breached"),
    ],
)
def test_evaluate_every_domain_over_its_examples(
    tmp_path: Path, domain: str, facts: str, extra: tuple[str, ...], summary: str
) -> None:
    source = EXAMPLES.parent / facts
    r = charter(
        "evaluate",
        "--domain",
        domain,
        "--facts",
        str(source),
        "--policies",
        str(POLICIES),
        "--now",
        "2025-06-30T00:00:00Z",
        *extra,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == sum(1 for line in source.read_text(encoding="utf-8").splitlines() if line.strip())
    decisions = [json.loads(line) for line in lines]
    assert {d["domain"] for d in decisions} == {domain}
    assert all(d["fired"] or d["notes"] for d in decisions)
    assert "0 with bad facts" in r.stderr and summary in r.stderr


def test_a_domain_using_a_ranking_one_needs_a_population(tmp_path: Path) -> None:
    r = charter(
        "evaluate",
        "--domain",
        "escalation",
        "--facts",
        str(EXAMPLES.parent / "requests/escalation.jsonl"),
        "--policies",
        str(POLICIES),
        "--now",
        "2025-06-30T00:00:00Z",
        cwd=tmp_path,
    )
    assert r.returncode != 0
    assert "the `tiering` policy ranks customers, so `escalation` needs a population snapshot" in r.stderr
    assert "--population" in r.stderr


@pytest.mark.parametrize(
    ("domain", "facts", "shown"),
    [
        ("classification", "customers.jsonl", "  highest: "),
        ("access", "requests/access.jsonl", "  effect: "),
        ("retention", "requests/retention.jsonl", '  due: "20'),  # a time, shown as ISO text
        ("escalation", "requests/escalation.jsonl", '"due": "20'),
    ],
)
def test_explain_every_domain(domain: str, facts: str, shown: str, tmp_path: Path) -> None:
    r = charter(
        "explain",
        *("--domain", domain, "--facts", str(EXAMPLES.parent / facts), "--now", "2025-06-30T00:00:00Z"),
        *("--population", str(EXAMPLES), "--store", f"sqlite:///{tmp_path / 'c.db'}", "--policies", str(POLICIES)),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"customer C000001 — {domain} at ") and shown in r.stdout


@pytest.mark.parametrize(
    ("domain", "about"),
    [
        ("access", lambda r: r["resource"]["customer"]),  # the request's own id is another
        ("retention", lambda r: r["customer"]),
        ("escalation", lambda r: r["customer"]["id"]),  # no top-level id at all
    ],
)
def test_explain_selects_a_customers_requests_in_any_domain(
    domain: str, about: Callable[[dict[str, object]], str], tmp_path: Path
) -> None:
    """`--customer` asks the domain which customer a request is about; every request about
    them is shown, and only those."""
    rows = [json.loads(line) for line in (EXAMPLES.parent / "requests" / f"{domain}.jsonl").read_text().splitlines()]
    wanted = about(rows[6])
    twice = [rows[5], rows[6], rows[7], rows[6]]  # the customer's request twice, among others
    facts = tmp_path / "requests.jsonl"
    facts.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in twice), encoding="utf-8")
    r = charter(
        "explain",
        *("--domain", domain, "--facts", str(facts), "--now", "2025-06-30T00:00:00Z", "--customer", wanted),
        *("--population", str(EXAMPLES), "--store", f"sqlite:///{tmp_path / 'c.db'}", "--policies", str(POLICIES)),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    heads = [line for line in r.stdout.splitlines() if line.startswith("customer ")]
    assert heads == [f"customer {wanted} — {domain} at 2025-06-30T00:00:00+00:00"] * 2
    missing = charter(
        "explain",
        *("--domain", domain, "--facts", str(facts), "--now", "2025-06-30T00:00:00Z", "--customer", "C999999"),
        *("--population", str(EXAMPLES), "--store", f"sqlite:///{tmp_path / 'c.db'}", "--policies", str(POLICIES)),
        cwd=tmp_path,
    )
    assert missing.returncode == 1 and f"no customer `C999999` in {facts}" in missing.stderr


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_an_error_about_a_records_facts_names_its_file_and_line(fmt: str, tmp_path: Path) -> None:
    """A record that reads fine but breaks its facts' declarations is named by the line it
    starts on, as a line that cannot be read is (JSON Lines, a JSON array, CSV)."""
    good = [json.loads(line) for line in EXAMPLES.read_text(encoding="utf-8").splitlines()[:2]]
    bad = {**good[0], "id": "BAD1", "loyalty_score": 7}  # past its declared max of 1
    rows = [good[0], bad, good[1]]
    path = tmp_path / f"in.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        want = 2
    elif fmt == "json":
        path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
        want = json.dumps(rows, indent=1).splitlines().index(" {", 2) + 1  # the second item's `{`
    else:
        cols = [c for c in good[0] if not isinstance(good[0][c], list | dict)]
        lines = [",".join(cols)] + [",".join(str(r.get(c, "")) for c in cols) for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        want = 3
    r = charter(
        "evaluate", "--domain", "tiering", "--facts", str(path), "--policies", str(POLICIES),
        "--now", "2025-06-30", "--no-log", "--population", str(EXAMPLES), cwd=tmp_path,
    )  # fmt: skip
    results = [json.loads(line) for line in r.stdout.splitlines()]
    (error,) = [x["error"] for x in results if "error" in x]
    assert r.returncode == 1 and sum("error" not in x for x in results) == 2
    assert {(e["file"], e["line"]) for e in error["errors"]} == {(str(path), want)}, error
    assert any(e["field"] == "loyalty_score" for e in error["errors"])
