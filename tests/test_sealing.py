"""No personal value of a customer is in the decision log in clear, and erasure reaches all of them.

The five domains' decisions for example customers are logged to SQLite (WAL), JSONL and
PostgreSQL; then every byte the store holds (SQLite's database, WAL and shared-memory files;
every file of the JSONL directory) and every value read back through SQL is searched for each
personal value of those customers. Erasing a customer leaves none of their values openable,
the chain verifying and their decisions' outputs and reasons in place.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from charter_plugins import detectors
from conftest import EXAMPLES, POLICIES

from engine import Decision, Engine
from engine.audit import DecisionLog, Protector, verify
from engine.audit.chain import canonical, head_of, link_after
from engine.audit.log import decision_body, tally
from engine.audit.protect import SEALED, SealError
from engine.audit.replay import Replayer
from engine.cli import main
from engine.plugins import open_store
from engine.storage import Store

KEY = bytes(range(32))
NOW = datetime(2025, 6, 30, tzinfo=UTC)
SAMPLE = 60  # customers whose decisions are logged in every domain
NOTE_ID = "310101196012217947"  # a valid national ID (checksum), typed into a free-text note
NOTE = f"客户来电核实身份，身份证号{NOTE_ID}，请回拨"
# where a request holds a customer record: the part the domain classifies or ranks
RECORD_PARTS = {"access": ("resource", "record"), "retention": ("record",), "escalation": ("customer",)}
_BASE64 = re.compile(r"^[A-Za-z0-9+/=]+$")


def _load(name: str) -> list[dict[str, Any]]:
    with (EXAMPLES.parent / name).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _customer_of(domain: str, request: dict[str, Any]) -> str:
    if domain == "access":
        return str(request["resource"]["customer"])
    if domain == "retention":
        return str(request["customer"])
    return str(request["customer"]["id"])


def _part(request: dict[str, Any], at: tuple[str, ...]) -> Any:
    for key in at:
        request = request[key]
    return request


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _requests(customers: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The sample's requests in all five domains; one customer has a free-text note with an ID."""
    sample = [dict(c) for c in customers[:SAMPLE]]
    sample[1]["remarks"] = NOTE  # an unclassified field: only the detector finds the ID in it
    ids = {c["id"] for c in sample}
    out: dict[str, list[dict[str, Any]]] = {"classification": sample, "tiering": customers[:SAMPLE]}
    for domain in ("access", "retention", "escalation"):
        out[domain] = [r for r in _load(f"requests/{domain}.jsonl") if _customer_of(domain, r) in ids]
        assert out[domain], domain
    return out


def _personal(requests: dict[str, list[dict[str, Any]]]) -> tuple[dict[str, set[str]], set[str]]:
    """Every customer's personal values: each string (of 5 characters or more) of their records'
    fields, as logged in any domain, but the customer id (the record's `subject`, kept in clear
    by design); and the strings the requests hold outside any customer record (staff ids,
    ticket and record metadata), which stay clear."""
    by_customer: dict[str, set[str]] = {}
    outside: set[str] = set()
    for domain, facts in requests.items():
        for f in facts:
            who = str(f["id"]) if domain in ("classification", "tiering") else _customer_of(domain, f)
            record = f if domain in ("classification", "tiering") else _part(f, RECORD_PARTS[domain])
            values = {s for s in _strings(record) if len(s) >= 5 and s != who}
            by_customer.setdefault(who, set()).update(values)
            if domain in RECORD_PARTS:
                rest = json.loads(json.dumps(f))
                at = RECORD_PARTS[domain]
                del _part(rest, at[:-1])[at[-1]]
                outside.update(s for s in _strings(rest) if s != who)
    return by_customer, outside


def _log_all(store: Store, customers: list[dict[str, Any]]) -> dict[str, list[Decision]]:
    engine = Engine(POLICIES, log=DecisionLog(store, Protector(store, KEY)))
    engine.use_snapshot(engine.build_snapshot(customers, now=NOW))
    decided: dict[str, list[Decision]] = {}
    for domain, facts in _requests(customers).items():
        decided[domain] = [d for d in engine.evaluate_batch(domain, facts, now=NOW) if isinstance(d, Decision)]
        assert len(decided[domain]) == len(facts), domain
    return decided


def _bodies(store: Store) -> list[dict[str, Any]]:
    return [json.loads(json.loads(data)["body"]) for _, data in store.read()]


def _clear_strings(value: Any) -> Iterator[str]:
    """Every string a stored value holds in clear: JSON is parsed (and the JSON text inside
    it, such as a record's body), sealed values are skipped; other text is taken whole."""
    if isinstance(value, bytes | memoryview):
        value = bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            yield value
            if "\n" in value.strip():  # JSON Lines: each line
                for line in value.splitlines():
                    yield from _clear_strings(line)
                return
            plain = _unbase64(value)  # JSONL stores each record base64-encoded: not a protection
            if plain is not None:
                yield from _clear_strings(plain)
            return
        if isinstance(parsed, dict | list):
            yield from _clear_strings(parsed)
        else:
            yield value
    elif isinstance(value, dict):
        if SEALED in value:
            assert set(value) == {SEALED} and _BASE64.match(value[SEALED])
            return
        for k, v in value.items():
            yield k
            yield from _clear_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _clear_strings(v)


def _unbase64(text: str) -> str | None:
    """The UTF-8 text ``text`` encodes in base64, if it is that."""
    if len(text) < 16 or len(text) % 4 or not _BASE64.match(text):
        return None
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except ValueError:
        return None


def _in_bytes(raw: bytes, secret: str) -> bool:
    """``secret`` in raw store bytes, as UTF-8 or JSON-escaped (once or twice, as a record's body
    is). A secret made only of base64 characters counts only where it stands apart: a sealed
    value's random base64 may hold any short run of them."""
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(json.dumps(secret)[1:-1])[1:-1]}
    for form in forms:
        needle = form.encode()
        if not _BASE64.match(form):
            if needle in raw:
                return True
            continue
        for m in re.finditer(re.escape(needle), raw):
            before = raw[m.start() - 1 : m.start()]
            after = raw[m.end() : m.end() + 1]
            if not _BASE64.match(before.decode("latin-1") or "!") and not _BASE64.match(after.decode("latin-1") or "!"):
                return True
    return False


def _sql_values(store: Store) -> list[Any]:
    """Every value of every row of every table, read back through SQL."""
    engine: sa.Engine = store.engine  # type: ignore[attr-defined]
    meta = sa.MetaData()
    meta.reflect(engine)
    assert {"charter_records", "charter_keys", "charter_blobs"} <= set(meta.tables)
    out: list[Any] = []
    with engine.connect() as conn:
        for table in meta.tables.values():
            for row in conn.execute(sa.select(table)):
                out.extend(v for v in row if isinstance(v, str | bytes | memoryview))
    return out


@pytest.fixture(params=["sqlite", "jsonl", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    if request.param == "jsonl":
        return f"jsonl://{tmp_path / 'log'}"
    return str(request.getfixturevalue("fresh_pg"))


def test_no_personal_value_in_clear_and_erasure_reaches_them_all(
    url: str,
    customers: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = open_store(url)
    try:
        decided = _log_all(store, customers)
        by_customer, outside = _personal(_requests(customers))
        secrets = set().union(*by_customer.values())
        # names, phones, e-mails, addresses, national IDs, bank accounts, medical notes, the note
        assert len(secrets) > 6 * SAMPLE and NOTE in secrets
        # the only personal strings the requests also carry outside a customer record are the
        # retention requests' record timestamps (`created_at`, `last_activity_at`: in the
        # example data they are the customer's first and last purchase): those fields are
        # not classified, so they stay clear
        coincide = secrets & outside
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", s) for s in coincide)
        wanted = secrets - coincide
        bodies = _bodies(store)
        assert len(bodies) == sum(len(d) for d in decided.values())
        assert {b["domain"] for b in bodies} == {"classification", "tiering", "access", "retention", "escalation"}

        # 1. every record, parsed: no personal value in any clear string (substring: a note too)
        clear = [s for b in bodies for s in _clear_strings(b)]
        assert [w for w in wanted if any(w in s for s in clear)] == []
        # a classification record keeps no fact of the customer in clear, numbers included
        for b in bodies:
            if b["domain"] == "classification":
                assert [p for p, v in _leaves(b["facts"]) if not (isinstance(v, dict) and SEALED in v)] == []
        # while what is not personal stays readable: outputs, rules, reasons, request metadata
        access = next(b for b in bodies if b["domain"] == "access")
        assert access["facts"]["action"] in ("read", "write", "export", "delete")
        assert access["facts"]["resource"]["customer"] == access["subject"]
        assert isinstance(access["outputs"]["effect"], str) and access["fired"]

        # 2. everything the store holds: raw bytes, and every value read back through SQL
        if url.startswith("sqlite"):
            db = Path(url.removeprefix("sqlite:///"))
            files = sorted(db.parent.glob(db.name + "*"))
            assert {p.name for p in files} >= {"log.db", "log.db-wal"}
            raw = b"".join(p.read_bytes() for p in files)
            values = _sql_values(store)
        elif url.startswith("jsonl"):
            root = Path(url.removeprefix("jsonl://"))
            files = sorted(p for p in root.rglob("*") if p.is_file())
            assert {p.parent.name for p in files} >= {"log", "keys", "bundle", "population", "plugins"}
            values = [p.read_bytes() for p in files]
            # and what a record line's base64 `data` holds, decoded
            lines = [json.loads(line) for line in (root / "log.jsonl").read_text().splitlines()]
            raw = b"".join([*values, *(base64.b64decode(line["data"]) for line in lines)])
        else:
            raw = b""
            values = _sql_values(store)
        if raw:
            assert raw.count(b"$sealed") > 1000
        # the stored policy files name some category values (`retail`, `female`...): those
        # words are in the store as policy text, not as anyone's data
        policy_text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(POLICIES.glob("*.yaml")))
        vocabulary = {w for w in wanted if w in policy_text}
        assert all(re.fullmatch(r"[a-z_]+", w) for w in vocabulary), vocabulary
        assert [w for w in wanted - vocabulary if _in_bytes(raw, w)] == []
        stored = [s for v in values for s in _clear_strings(v)]
        assert len(stored) > len(clear) // 2
        assert [w for w in wanted - vocabulary if any(w in s for s in stored)] == []

        # 3. erase one customer: none of their values opens, the chain verifies, outputs stay
        gone = customers[1]["id"]  # the one with the note
        theirs = [b for b in bodies if b["subject"] == gone]
        assert {b["domain"] for b in theirs} >= {"classification", "tiering"}
        sealed = [(b, path, v) for b in theirs for path, v in _sealed_in(b["facts"])]
        assert len(sealed) > 40
        found = tally(store, gone)
        assert (found.records, found.sealed, found.clear) == (len(theirs), len(sealed), 0)
        monkeypatch.setenv("CHARTER_LOG_KEY", KEY.hex())
        assert main(["log", "erase", gone, "--store", url]) == 0
        said = capsys.readouterr().out
        assert f"erased the key of `{gone}`: {len(sealed)} sealed value(s) in {len(theirs)} of their " in said
        assert "can no longer be read" in said and "the hash chain (it still verifies)" in said
        assert "still readable" not in said
        opener = Protector(store, KEY)
        for _, path, value in sealed:
            with pytest.raises(SealError) as err:
                opener.open(gone, path, value)
            assert err.value.code == "K004"
        others = next(b for b in bodies if b["subject"] != gone and b["domain"] == "classification")
        assert opener.open(others["subject"], "id", others["facts"]["id"]) == others["subject"]
        assert verify(store.read()).ok
        after = [b for b in _bodies(store) if b["subject"] == gone]
        assert [(b["outputs"], b["fired"], b["notes"]) for b in after] == [
            (b["outputs"], b["fired"], b["notes"]) for b in theirs
        ]
        logged = [decision_body(d) for ds in decided.values() for d in ds if d.subject == gone]
        assert [b["outputs"] for b in after] == [json.loads(canonical(d["outputs"])) for d in logged]
        # and replay reproduces every other decision, and counts theirs as unreadable
        with Replayer(store, Protector(store, KEY)) as replayer:
            report = replayer.run()
        assert (report.total, report.unreadable, report.same) == (len(bodies), len(theirs), len(bodies) - len(theirs))
        assert report.ok
    finally:
        store.close()


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, value) of each leaf of logged facts; a sealed value is a leaf."""
    if isinstance(value, dict) and SEALED not in value:
        for k, v in value.items():
            yield from _leaves(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, value


def _sealed_in(value: Any) -> list[tuple[str, dict[str, str]]]:
    return [(p, v) for p, v in _leaves(value) if isinstance(v, dict)]


def test_a_note_holding_an_identifier_is_sealed_whole(tmp_path: Path, customers: list[dict[str, Any]]) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'log.db'}")
    try:
        engine = Engine(POLICIES, log=DecisionLog(store, Protector(store, KEY)))
        notes = {
            "remarks": NOTE,
            "callback": "please call back on +86 184 6026 9859 after 6pm",
            "contact_note": "wrote from user000002@mail.example.com, asks for an invoice",
            "payment_note": "paid with card 6265 2656 9944 7481 468 last week",
            "summary": "asked about the delivery date of order 2025-118",  # nothing personal in it
        }
        record = {**customers[0], **notes}
        d = engine.evaluate("classification", record, now=NOW)
        # classification decisions are unchanged: detectors match whole values, so the notes
        # are unclassified fields; only the log looks inside them
        assert set(d.outputs["unclassified"]) == set(notes)
        facts = _bodies(store)[0]["facts"]
        opener = Protector(store, KEY)
        for name in ("remarks", "callback", "contact_note", "payment_note"):
            assert set(facts[name]) == {SEALED}, name
            assert opener.open(record["id"], name, facts[name]) == notes[name]  # sealed whole
        assert facts["summary"] == notes["summary"]  # not personal: readable
        # the path is the authenticated data: a sealed note moved to another field does not open
        with pytest.raises(SealError) as err:
            opener.open(record["id"], "summary", facts["remarks"])
        assert err.value.code == "K005"
        with Replayer(store, Protector(store, KEY)) as replayer:
            assert replayer.run().same == 1
    finally:
        store.close()


def test_erase_says_which_values_older_records_hold_in_clear(
    tmp_path: Path,
    customers: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    store = open_store(url)
    try:
        engine = Engine(POLICIES, log=DecisionLog(store, Protector(store, KEY)))
        who = customers[0]["id"]
        engine.evaluate("classification", customers[0], now=NOW)
        engine.evaluate("classification", customers[1], now=NOW)
        # a record as written before every personal value was sealed: only the `sensitive`
        # class was, so name, phone, e-mail, address... were stored in clear
        body = _bodies(store)[0]
        old = {k: customers[0][k] if k != "bank_account" else v for k, v in body["facts"].items()}
        in_clear = len(_sealed_in(body["facts"])) - 1  # list items count one by one
        prior = canonical({**body, "facts": old})
        store.append_linked([prior], lambda prev, b: link_after(*head_of(prev), b)[0])
        assert verify(store.read()).ok
        monkeypatch.setenv("CHARTER_LOG_KEY", KEY.hex())
        assert main(["log", "erase", who, "--store", url]) == 1  # erased, but not everything
        said = capsys.readouterr().out
        sealed = len(_sealed_in(body["facts"])) + 1  # all of the new record's, the old record's bank account
        assert f"erased the key of `{who}`: {sealed} sealed value(s) in 2 of their 2 record(s)" in said
        assert f"still readable: {in_clear} personal value(s) of `{who}` in 1 record(s) logged in clear" in said
        # a second erase: no key any more, the same values stay unreadable
        assert main(["log", "erase", who, "--store", url]) == 1
        assert "no key for" in capsys.readouterr().out
        assert main(["log", "erase", "C999999", "--store", url]) == 1
        assert "no record of theirs" in capsys.readouterr().out
    finally:
        store.close()


@pytest.mark.parametrize("name", sorted(detectors.CONTAINS))
def test_each_detector_finds_its_values_inside_text(name: str, customers: list[dict[str, Any]]) -> None:
    contains = detectors.CONTAINS[name]
    whole = getattr(detectors, name)
    assert whole.contains is contains  # the attribute the log reads
    field = {"national_id": "national_id", "bank_card": "bank_account", "phone": "phone", "email": "email"}
    values = (
        [str(c[field[name]]) for c in customers if field[name] in c][:200]
        if name in field
        else [str(c["medical_notes"]) for c in customers if "medical_notes" in c]
    )
    assert values and all(whole(v) for v in values)
    for v in values:
        assert contains(v)  # the whole value
        for text in (f"备注：{v}。", f"see {v}, thanks", f"({v})", f"ID{v}号" if name != "email" else f"<{v}>"):
            assert contains(text), (name, text)
    spaced = {"phone": "+86 184-6026-9859", "bank_card": "6265 2656 9944 7481 468"}
    if name in spaced:
        assert contains(f"call {spaced[name]} now")
    for text in ("nothing here", "order 2025-118 of 12 items", "tel 1234567", "a@b", ""):
        assert not contains(text), (name, text)
    if name == "national_id":
        assert contains(f"号{NOTE_ID}号") and not contains(f"号{NOTE_ID[:-1]}0号")  # a wrong check digit
