"""`charter log find` and `charter log show`: a customer's decisions from the command line, on a
real decision log (SQLite), checked against the log's own records read independently."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, NOW, POLICIES

from engine import Decision, Engine
from engine.audit import DecisionLog, Protector
from engine.audit.query import find
from engine.audit.replay import Filters
from engine.cli import main
from engine.plugins import open_store

KEY = bytes(range(32))
LATER = NOW + timedelta(days=1)
REQUESTS = EXAMPLES.parent / "requests"

Run = Callable[..., tuple[int, str, str]]


def _rows(name: str, n: int) -> list[dict[str, Any]]:
    lines = (REQUESTS / name).read_text(encoding="utf-8").splitlines()[:n]
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A log of tiering and access decisions at NOW, retention and escalation a day later."""
    where = tmp_path_factory.mktemp("log")
    url = f"sqlite:///{where / 'log.db'}"
    key_file = where / "log.key"
    key_file.write_text(KEY.hex() + "\n", encoding="utf-8")
    key_file.chmod(0o600)
    customers = [json.loads(line) for line in EXAMPLES.read_text(encoding="utf-8").splitlines()]
    store = open_store(url)
    engine = Engine(POLICIES, log=DecisionLog(store, Protector(store, KEY)))
    engine.use_snapshot(engine.build_snapshot(customers, now=NOW))
    decided: list[Decision] = []
    for domain, items, now in (
        ("tiering", customers[:40], NOW),
        ("access", _rows("access.jsonl", 40), NOW),
        ("retention", _rows("retention.jsonl", 20), LATER),
        ("escalation", _rows("escalation.jsonl", 20), LATER),
    ):
        decided += [d for d in engine.evaluate_batch(domain, items, now=now) if isinstance(d, Decision)]
    bodies = [(seq, json.loads(data)) for seq, data in store.read()]
    store.close()
    return {
        "url": url,
        "db": where / "log.db",
        "key": str(key_file),
        "engine": engine,
        "decided": decided,
        "records": [(seq, rec["hash"], json.loads(rec["body"])) for seq, rec in bodies],
    }


@pytest.fixture
def charter(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    """`charter ARGS` in this process, without a key from the environment: (code, out, err)."""
    monkeypatch.delenv("CHARTER_LOG_KEY", raising=False)

    def run(*args: str | Path) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def found_json(charter: Run, log: dict[str, Any], *args: str) -> dict[str, Any]:
    code, out, err = charter("log", "find", "--store", log["url"], "--format", "json", *args)
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def expected(log: dict[str, Any], keep: Callable[[dict[str, Any]], bool]) -> list[int]:
    """The numbers of the records ``keep`` holds for, newest first, read from the raw log."""
    return [seq for seq, _, body in reversed(log["records"]) if keep(body)]


# --------------------------------------------------------------------------------------------
# log find
# --------------------------------------------------------------------------------------------


def test_a_customers_decisions_in_every_domain_newest_first(charter: Run, log: dict[str, Any]) -> None:
    got = found_json(charter, log, "--customer", "C000007")
    want = expected(log, lambda b: b["subject"] == "C000007")
    assert [r["seq"] for r in got["records"]] == want
    assert {r["domain"] for r in got["records"]} == {"tiering", "access", "retention", "escalation"}
    assert got["order"] == "newest first" and got["truncated"] is False and got["chain_broken"] is None
    by_seq = {seq: (rid, body) for seq, rid, body in log["records"]}
    for r in got["records"]:
        rid, body = by_seq[r["seq"]]
        assert r["decision_id"] == rid and r["now"] == body["time"]
        assert r["fired"] == [f[0] for f in body["fired"]]


def test_the_text_lists_number_hash_time_domain_customer_outcome_and_rules(charter: Run, log: dict[str, Any]) -> None:
    code, out, err = charter("log", "find", "--store", log["url"], "--customer", "C000003")
    assert code == 0, err
    header, *lines = out.splitlines()
    assert header.split() == ["#", "record", "time", "domain", "customer", "outcome", "rules"]
    want = [(seq, rid, body) for seq, rid, body in reversed(log["records"]) if body["subject"] == "C000003"]
    assert len(lines) == len(want) == 4
    for line, (seq, rid, body) in zip(lines, want, strict=True):
        cells = line.split(None, 6)
        assert cells[:5] == [f"#{seq}", rid[:12], body["time"], body["domain"], "C000003"]
        assert cells[6] == ", ".join(f[0] for f in body["fired"])
    assert err.strip() == "4 record(s), newest first"


def test_by_rule_outcome_domain_and_time(charter: Run, log: dict[str, Any]) -> None:
    rule = log["records"][0][2]["fired"][0][0]  # the first tiering decision's band
    got = found_json(charter, log, "--rule", rule)
    assert [r["seq"] for r in got["records"]] == expected(log, lambda b: rule in [f[0] for f in b["fired"]])
    assert len(got["records"]) > 1
    high = found_json(charter, log, "--outcome", "value_tier=high")
    assert [r["seq"] for r in high["records"]] == expected(log, lambda b: b["outputs"].get("value_tier") == "high")
    assert high["records"]
    # the outcome is the output each domain names (a logged record's outputs are sorted by name,
    # so the first text among them is not it: tiering's would be its lifecycle stage)
    assert found_json(charter, log, "--domain", "tiering", "--outcome", "high")["records"] == high["records"]
    for r in found_json(charter, log, "--limit", "1000")["records"]:
        outputs = r["outputs"]
        key = {"tiering": "value_tier", "access": "effect", "retention": "action", "escalation": "state"}.get(
            r["domain"]
        )
        if key is not None:
            assert r["outcome"] == str(outputs[key]).lower(), r
    denied = found_json(charter, log, "--domain", "access", "--outcome", "deny")
    want = expected(log, lambda b: b["domain"] == "access" and b["outputs"]["effect"] == "deny")
    assert [r["seq"] for r in denied["records"]] == want and want
    later = found_json(charter, log, "--since", LATER.isoformat())
    assert {r["domain"] for r in later["records"]} == {"retention", "escalation"} and later["count"] == 40
    before = found_json(charter, log, "--until", LATER.isoformat(), "--domain", "access")
    assert before["count"] == 40
    assert found_json(charter, log, "--domain", "retention", "--until", LATER.isoformat())["count"] == 0


def test_the_limit_keeps_the_newest_and_says_more_match(charter: Run, log: dict[str, Any]) -> None:
    got = found_json(charter, log, "--domain", "tiering", "--limit", "3")
    assert [r["seq"] for r in got["records"]] == expected(log, lambda b: b["domain"] == "tiering")[:3]
    assert got["truncated"] is True
    code, _, err = charter("log", "find", "--store", log["url"], "--domain", "tiering", "--limit", "3")
    assert code == 0 and "3 record(s), newest first; more match: pass --limit over 3" in err
    assert len(found_json(charter, log)["records"]) == 50  # the default limit
    with pytest.raises(SystemExit) as usage:
        charter("log", "find", "--store", log["url"], "--limit", "0")
    assert usage.value.code == 2


def test_the_service_and_the_command_share_one_query(log: dict[str, Any]) -> None:
    """``GET /v1/log/records`` answers ``find`` in log order; the command, the same newest first."""
    from engine.serve import auditlog

    store = open_store(log["url"])
    try:
        oldest = find(store, Filters(customer="C000005"), limit=10)
        newest = find(store, Filters(customer="C000005"), limit=10, newest_first=True)
    finally:
        store.close()
    assert oldest.records == list(reversed(newest.records)) and len(oldest.records) == 4
    assert auditlog.query.find is find


def test_a_broken_chain_lists_the_records_before_it_and_fails(
    tmp_path: Path, charter: Run, log: dict[str, Any]
) -> None:
    copy = tmp_path / "log.db"
    copy.write_bytes(log["db"].read_bytes())
    with sqlite3.connect(copy) as db:
        (data,) = db.execute("SELECT data FROM charter_records WHERE seq = 5").fetchone()
        rec = json.loads(data)
        rec["body"] = rec["body"].replace('"subject":"C000005"', '"subject":"C999999"')
        db.execute("UPDATE charter_records SET data = ? WHERE seq = 5", (json.dumps(rec).encode(),))
    code, out, err = charter("log", "find", "--store", f"sqlite:///{copy}", "--format", "json")
    assert code == 1 and "hash chain breaks at record 5" in err
    assert [r["seq"] for r in json.loads(out)["records"]] == [4, 3, 2, 1]


# --------------------------------------------------------------------------------------------
# log show: the request and the values compared
# --------------------------------------------------------------------------------------------


def _first(log: dict[str, Any], domain: str) -> tuple[int, dict[str, Any]]:
    return next((seq, body) for seq, _, body in log["records"] if body["domain"] == domain)


def test_show_prints_an_access_request_with_sealed_values_sealed(charter: Run, log: dict[str, Any]) -> None:
    seq, _ = _first(log, "access")
    request = _rows("access.jsonl", 1)[0]
    code, out, err = charter("log", "show", f"#{seq}", "--store", log["url"], "--key-file", log["key"])
    assert code == 0, err
    lines = out.splitlines()
    assert f"    action: {request['action']}" in lines and f"    purpose: {request['purpose']}" in lines
    assert f"    subject.roles: {json.dumps(request['subject']['roles'])}" in lines
    assert "    subject.id: (sealed)" in lines  # a person's id: sealed in the log
    assert request["subject"]["id"] not in out
    code, opened, err = charter("log", "show", f"#{seq}", "--store", log["url"], "--key-file", log["key"], "--unseal")
    assert code == 0, err
    assert f"    subject.id: {request['subject']['id']}" in opened.splitlines()


def test_show_unsealed_gives_the_tiering_scores_and_cut_points_compared(charter: Run, log: dict[str, Any]) -> None:
    seq, body = _first(log, "tiering")
    decision = log["decided"][0]
    assert decision.subject == body["subject"]
    snapshot = log["engine"].snapshot
    cuts = snapshot.scores["value"].cuts
    value = decision.scores["value"]
    band = decision.fired[0]  # the value band, e.g. value-high: from the 80th percentile
    code, out, err = charter("log", "show", f"#{seq}", "--store", log["url"], "--key-file", log["key"], "--unseal")
    assert code == 0, err
    assert f"scores: value = {value:,.2f}" in out
    (line,) = [x for x in out.splitlines() if x.startswith(f"  *yes value-tier/{band.id}:")]
    compared = [float(v) for v in line.split("[")[1].split("]")[0].split(", ")]
    assert compared[0] == value and compared[1] in cuts.values()
    code, shut, _ = charter("log", "show", f"#{seq}", "--store", log["url"], "--key-file", log["key"])
    (line,) = [x for x in shut.splitlines() if x.startswith(f"  *yes value-tier/{band.id}:")]
    assert "[…]" in line and f"{value}" not in shut and "scores:" not in shut


def test_unseal_without_the_key_is_refused(tmp_path: Path, charter: Run, log: dict[str, Any]) -> None:
    absent = tmp_path / "absent.key"
    code, _, err = charter("log", "show", "#1", "--store", log["url"], "--key-file", absent, "--unseal")
    assert code == 1 and "unsealing needs the log key" in err
