"""The decision log's records and their hash chain.

Each stored record is canonical JSON ``{"n", "prev", "hash", "body"}``: ``body`` is the
decision record as canonical JSON text, ``n`` its position in the chain (1, 2, ...),
``prev`` the hash of the record before it (64 zeros for the first) and ``hash`` =
SHA-256 of ``prev``, ``n`` and ``body``. Editing a record changes its hash; deleting,
inserting or reordering records breaks the ``prev`` links or the numbering. Records are
linked by the store under its write lock (``Store.append_linked``), so several writers
still make one chain.

Removing records from the *end* leaves a shorter valid chain: ``verify`` reports the
head (count and last hash) so an auditor can keep it and check it later
(``charter log verify --head HASH``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from engine.errors import CharterError

GENESIS = "0" * 64


def canonical(obj: Any) -> bytes:
    """The one byte form of a JSON value: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def record_hash(prev: str, n: int, body: str) -> str:
    return hashlib.sha256(f"{prev}\n{n}\n{body}".encode()).hexdigest()


def head_of(prev: bytes | None) -> tuple[str, int]:
    """(hash, n) of a stored record; (genesis, 0) before the first."""
    if prev is None:
        return GENESIS, 0
    last = json.loads(prev)
    return str(last["hash"]), int(last["n"])


def link_after(prev_hash: str, prev_n: int, body: bytes) -> tuple[bytes, str, int]:
    """The stored record for ``body`` after the record (``prev_hash``, ``prev_n``): (record, hash, n)."""
    n, text = prev_n + 1, body.decode()
    digest = record_hash(prev_hash, n, text)
    return canonical({"n": n, "prev": prev_hash, "hash": digest, "body": text}), digest, n


def link(prev: bytes | None, body: bytes) -> bytes:
    """The stored record for ``body``, chained to ``prev`` (the last stored record, or None)."""
    return link_after(*head_of(prev), body)[0]


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int
    head: str  # hash of the last good record
    bad_seq: int | None = None
    reason: str = ""


class ChainBroken(CharterError):
    """The first record that does not chain; ``result`` says where and why."""

    code = "H001"

    def __init__(self, result: VerifyResult) -> None:
        super().__init__(
            result.reason, hint="the log was changed after it was written: `charter log verify` says where"
        )
        self.result = result


def checked(records: Iterable[tuple[int, bytes]]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(seq, parsed record) for each record in order, after checking it chains to the one
    before; raises ``ChainBroken`` at the first that does not."""
    prev, n, count = GENESIS, 0, 0
    for seq, data in records:
        try:
            rec = json.loads(data)
            body, stored, rec_prev, rec_n = rec["body"], rec["hash"], rec["prev"], int(rec["n"])
        except (ValueError, KeyError, TypeError):
            raise ChainBroken(VerifyResult(False, count, prev, seq, "the record is not a decision record")) from None
        if rec_prev != prev or rec_n != n + 1:
            what = "deleted or reordered before it" if rec_n > n + 1 else "inserted or reordered"
            if rec_prev != prev and rec_n == n + 1:
                what = "inserted, or the record before it edited"
            raise ChainBroken(VerifyResult(False, count, prev, seq, f"the chain breaks here: a record was {what}"))
        if record_hash(rec_prev, rec_n, body) != stored:
            raise ChainBroken(VerifyResult(False, count, prev, seq, "the record was edited: its hash does not match"))
        prev, n, count = stored, rec_n, count + 1
        yield seq, rec


def verify(
    records: Iterable[tuple[int, bytes]],
    head: str | None = None,
    observe: Callable[[int, dict[str, Any]], None] | None = None,
) -> VerifyResult:
    """Check the chain from the first record; stop at the first bad one. ``observe`` sees each
    good record (its number and the parsed record) as it is read: what else verify checks."""
    prev, count, last_seq = GENESIS, 0, 0
    try:
        for seq, rec in checked(records):
            prev, count, last_seq = rec["hash"], count + 1, seq
            if observe is not None:
                observe(int(rec["n"]), rec)
    except ChainBroken as broken:
        return broken.result
    if head is not None and head != prev:
        return VerifyResult(False, count, prev, last_seq or None, "the log does not end at the expected head")
    return VerifyResult(True, count, prev)
