"""The decision log's fast paths (#17) write and read what the generic ones did, byte for byte.

``chain.encode`` is ``chain.canonical``, ``chain.decode`` is ``json.loads`` and
``chain.same_json`` is a comparison of canonical texts, each with its errors; a log written
by the generic path (``chain.link`` over ``canonical`` bodies) is the log the fast path
writes, and verifies and replays; a data key another writer stored first is the one used.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, POLICIES
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Engine
from engine.audit import DecisionLog, Protector, verify
from engine.audit.chain import canonical, decode, encode, link, same_json
from engine.audit.replay import Replayer, records
from engine.plugins import open_store
from engine.storage import Store

KEY = bytes(range(32))
NOW = datetime(2025, 6, 30, tzinfo=UTC)


def _outcome(fn: Any, value: Any) -> Any:
    try:
        return ("ok", fn(value))
    except Exception as exc:  # the same error, or the same bytes
        return ("raises", type(exc))


EDGES: list[Any] = [
    1e-05,
    -1e-07,
    0.0001,
    0.00012,
    1.00001,
    1e16,
    1e-100,
    5e-324,
    -0.0,
    0.1 + 0.2,
    2**63 - 1,
    -(2**63),
    2**64,
    10**30,
    None,
    {"b": None, "a": [True, False, 0, 1.0]},
    {"é": 1, "z": 2, "中": 3, "\U0001f600": 4, "Z": 5},
    "".join(chr(i) for i in range(0x80)) + "\u2028\ufeff中",
    {"e-5": "1e-5", "x": "null", "y": "0.00001"},
    {1: "a"},
    (1, 2),
    float("nan"),
    [float("inf")],
    "\ud800",
    {"a": object()},
]


@pytest.mark.parametrize("value", EDGES, ids=repr)
def test_encode_is_canonical_byte_for_byte_errors_included(value: Any) -> None:
    assert _outcome(encode, value) == _outcome(canonical, value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_encode_and_decode_are_canonical_and_json(value: Any) -> None:
    assert _outcome(encode, value) == _outcome(canonical, value)
    text = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    assert repr(_outcome(decode, text)) == repr(_outcome(json.loads, text))


@pytest.mark.parametrize(
    "text",
    [
        *(b"[123456789012345678901234567890]", b"-9223372036854775809", b"NaN", b"1e400", b'"\\ud800"'),
        *(b"", b"\xff", b'{"a":1,"a":2}', b" [1.5e-7, -0.0] ", '{"中":"\ud800"}'.encode("utf-8", "surrogatepass")),
    ],
    ids=repr,
)
def test_decode_reads_what_json_reads(text: bytes) -> None:
    got, want = _outcome(decode, text), _outcome(json.loads, text)
    assert repr(got) == repr(want) and type(got[1]) is type(want[1])


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (1, 1.0, False),
        (1, True, False),
        (0, False, False),
        (0.0, -0.0, False),
        ({"a": [1, "x", None]}, {"a": [1, "x", None]}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ({"a": 1}, {"b": 1}, False),
        ([1, 2], (1, 2), True),  # the same JSON: compared as text
        ({1: "x"}, {"1": "x"}, True),
        ({True: "x"}, {1: "x"}, False),  # `true` and `1` as keys
        ([[1.5]], [[1.5]], True),
        ("é", "é", True),
    ],
)
def test_same_json_is_a_comparison_of_canonical_text(a: Any, b: Any, same: bool) -> None:
    assert same_json(a, b) is same
    assert (canonical(a) == canonical(b)) is same


def test_same_json_refuses_what_canonical_refuses() -> None:
    with pytest.raises(ValueError):
        same_json(math.nan, math.nan)
    with pytest.raises(ValueError):
        same_json([math.inf], [math.inf])


def _read(name: str) -> list[dict[str, Any]]:
    with (EXAMPLES.parent / name).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _log(url: str) -> Store:
    customers, requests = _read("customers.jsonl")[:300], _read("requests/access.jsonl")[:120]
    store = open_store(url)
    engine = Engine(POLICIES, log=DecisionLog(store, Protector(store, KEY)), log_batch=64)
    engine.use_snapshot(engine.build_snapshot(customers, now=NOW))
    for domain, items in (("tiering", customers), ("access", requests)):
        assert all(not isinstance(d, Exception) for d in engine.evaluate_batch(domain, items, now=NOW))
    return store


def test_the_generic_path_writes_the_same_log_which_verifies_and_replays(tmp_path: Path) -> None:
    """The records the fast path writes are those ``chain.link`` makes of ``canonical``
    bodies, byte for byte: a log written either way verifies and replays."""
    fast = _log(f"sqlite:///{tmp_path}/fast.db")
    try:
        rows = list(fast.read())
        bodies = [canonical(json.loads(json.loads(data)["body"])) for _, data in rows]
        old = open_store(f"sqlite:///{tmp_path}/old.db")
        try:
            old.append_linked(bodies, link)
            assert [data for _, data in old.read()] == [data for _, data in rows]
            result = verify(old.read())
            assert result.ok and result.count == len(rows) == 420
            assert result.head == verify(fast.read()).head
        finally:
            old.close()
        with Replayer(fast, Protector(fast, KEY)) as replayer:
            report = replayer.run()
        assert report.ok and report.same == 420, report.to_dict()
    finally:
        fast.close()


def test_a_log_from_the_generic_path_replays(tmp_path: Path) -> None:
    """A log whose records were linked record by record (``chain.link`` after the stored last
    record, as the log did before it linked a batch itself) replays every decision."""
    store = _log(f"sqlite:///{tmp_path}/a.db")
    try:
        rows = [data for _, data in store.read()]
        relinked = open_store(f"sqlite:///{tmp_path}/b.db")
        try:
            for data in rows:  # one append per record, each linked to the stored last one
                relinked.append_linked([json.loads(data)["body"].encode()], link)
            _copy_blobs_and_keys(store, relinked)
            with Replayer(relinked, Protector(relinked, KEY, keyring=tmp_path / "a.db.keyring")) as replayer:
                report = replayer.run()
            assert report.ok and report.same == len(rows), report.to_dict()
        finally:
            relinked.close()
    finally:
        store.close()


def _copy_blobs_and_keys(src: Store, dst: Store) -> None:
    """What a record names besides itself: the policy files, plugins and snapshots, and the
    data keys (wrapped, with the row naming their keyring), read through the SQL store."""
    import sqlalchemy as sa

    engine = getattr(src, "engine")  # noqa: B009 (a SQL store's own engine)
    with engine.connect() as conn:
        for kind, digest, data in conn.execute(sa.text("SELECT kind, digest, data FROM charter_blobs")):
            dst.put_blob(str(kind), str(digest), bytes(data))
        dst.add_keys({str(n): bytes(d) for n, d in conn.execute(sa.text("SELECT name, data FROM charter_keys"))})


def test_a_number_past_64_bits_in_a_record_reads_as_written(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/big.db")
    try:
        body = {"domain": "x", "subject": "s", "time": "2025-06-30T00:00:00Z", "n": 2**70, "m": -(2**64), "f": 1e-07}
        store.append_linked([canonical(body)], link)
        (_, _, got), *_ = list(records(store))
        assert got == body and type(got["n"]) is int and repr(got["f"]) == "1e-07"
    finally:
        store.close()


class _Racing:
    """A store through which a first look for keys finds none, while another writer stores
    its own key for the same customer before this one stores its (as two processes can)."""

    def __init__(self, store: Store, other: Protector) -> None:
        self.store, self.other, self.raced = store, other, False
        self.url = store.url

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def add_keys(self, keys: Mapping[str, bytes]) -> dict[str, bytes]:
        if not self.raced and any(name.startswith("customer:") for name in keys):
            self.raced = True
            self.other.seal_many([(n.removeprefix("customer:"), "x", 1) for n in keys if n.startswith("customer:")])
        return self.store.add_keys(keys)

    def get_keys(self, names: Sequence[str]) -> dict[str, bytes]:
        return self.store.get_keys(names)


def test_a_key_another_writer_stored_first_is_the_one_used(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/race.db")
    try:
        first = Protector(store, KEY)
        racing = _Racing(store, first)
        second = Protector(racing, KEY)  # type: ignore[arg-type]  # a store, by delegation
        sealed = second.seal_many([("C1", "phone", "123"), ("C2", "phone", 45)])
        assert racing.raced
        fresh = Protector(store, KEY)
        assert fresh.open("C1", "phone", sealed[0]) == "123"
        assert fresh.open("C2", "phone", sealed[1]) == 45
        assert first.open("C1", "phone", sealed[0]) == "123"
    finally:
        store.close()
