"""One test suite for every storage backend: sqlite, postgresql (a real server) and jsonl."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from engine.plugins import open_store
from engine.storage import StorageError, Store


@pytest.fixture(params=["sqlite", "postgresql", "jsonl"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'charter.db'}"
    elif request.param == "jsonl":
        url = f"jsonl://{tmp_path / 'log'}"
    else:
        url = request.getfixturevalue("postgres_url")
    s = open_store(url)
    yield s
    if request.param == "postgresql":  # one server for the session: leave it empty for the next test
        import sqlalchemy as sa

        with s.engine.begin() as conn:  # type: ignore[attr-defined]
            conn.execute(sa.text("TRUNCATE charter_records, charter_blobs, charter_keys RESTART IDENTITY"))
    s.close()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_blobs_are_content_addressed(store: Store) -> None:
    data = b'{"policy": "tiering"}'
    store.put_blob("bundle", digest(data), data)
    store.put_blob("bundle", digest(data), data)  # idempotent
    assert store.get_blob("bundle", digest(data)) == data
    assert store.get_blob("snapshot", digest(data)) is None
    assert store.get_blob("bundle", digest(b"other")) is None
    with pytest.raises(StorageError, match="does not match its digest"):
        store.put_blob("bundle", digest(b"x"), b"y")


def test_records_append_in_order(store: Store) -> None:
    assert list(store.read()) == []
    first = store.append([b"a", b"b"])
    second = store.append([b"c"])
    assert first == [1, 2] and second == [3]
    assert list(store.read()) == [(1, b"a"), (2, b"b"), (3, b"c")]
    assert list(store.read(after=1, limit=1)) == [(2, b"b")]
    binary = bytes(range(256))
    (seq,) = store.append([binary])
    assert list(store.read(after=seq - 1)) == [(seq, binary)]


def test_concurrent_appends_lose_nothing(store: Store) -> None:
    def writer(n: int) -> None:
        for i in range(25):
            store.append([f"{n}-{i}".encode()])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = list(store.read())
    assert [seq for seq, _ in rows] == list(range(1, 101))
    assert sorted(data for _, data in rows) == sorted(f"{n}-{i}".encode() for n in range(4) for i in range(25))


def _link(prev: bytes | None, body: bytes) -> bytes:
    """A toy hash chain: each record is the hash of the one before it, then the body."""
    before = hashlib.sha256(prev).hexdigest().encode() if prev is not None else b"genesis"
    return before + b" " + body


def test_linked_appends_form_one_chain_across_writers(store: Store, tmp_path: Path) -> None:
    other = open_store(store.url)  # a second connection, as another process would have

    def writer(s: Store, n: int) -> None:
        for i in range(20):
            s.append_linked([f"{n}-{i}a".encode(), f"{n}-{i}b".encode()], _link)

    threads = [threading.Thread(target=writer, args=(s, n)) for n, s in enumerate([store, other, store, other])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    rows = [data for _, data in store.read()]
    assert len(rows) == 160
    prev = None
    for data in rows:  # each record names the one stored just before it
        assert data.split(b" ")[0] == (hashlib.sha256(prev).hexdigest().encode() if prev else b"genesis")
        prev = data
    bodies = [data.split(b" ", 1)[1] for data in rows]
    for n in range(4):  # a batch's records stay together and in order
        for i in range(20):
            k = bodies.index(f"{n}-{i}a".encode())
            assert bodies[k + 1] == f"{n}-{i}b".encode()


def test_a_stored_key_is_never_replaced_and_can_be_deleted(store: Store) -> None:
    c1, c2, c3 = "customer/C1", "customer/C2", "customer/C3"
    assert store.get_keys([c1]) == {}
    assert store.add_keys({c1: b"k1", c2: b"k2"}) == {c1: b"k1", c2: b"k2"}
    assert store.add_keys({c1: b"other", c3: b"k3"}) == {c1: b"k1", c3: b"k3"}
    assert store.get_keys([c1, c3, "customer/C4"]) == {c1: b"k1", c3: b"k3"}
    assert store.delete_key("customer/C1") is True
    assert store.get_keys(["customer/C1"]) == {}
    assert store.delete_key("customer/C1") is False


def test_writers_creating_the_same_key_agree_on_one(store: Store) -> None:
    barrier = threading.Barrier(4)

    def create(i: int) -> bytes:
        barrier.wait()
        return store.add_keys({"customer/C9": f"key-{i}".encode()})["customer/C9"]

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(create, range(4)))
    assert len(set(got)) == 1 and got[0] in {f"key-{i}".encode() for i in range(4)}
    assert store.get_keys(["customer/C9"]) == {"customer/C9": got[0]}


def test_unknown_scheme_suggests() -> None:
    with pytest.raises(StorageError) as info:
        open_store("sqllite:///x.db")
    assert info.value.hint == "did you mean `sqlite`?"


def test_jsonl_ignores_a_torn_last_line(tmp_path: Path) -> None:
    s = open_store(f"jsonl://{tmp_path}")
    s.append([b"kept"])
    with open(tmp_path / "log.jsonl", "ab") as f:
        f.write(b'{"seq": 2, "data": "cut sho')  # a crash mid-write: never acknowledged
    assert list(s.read()) == [(1, b"kept")]
    assert s.append([b"next"]) == [2]
    assert list(s.read()) == [(1, b"kept"), (2, b"next")]
