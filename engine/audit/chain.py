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
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from engine.errors import CharterError

GENESIS = "0" * 64


def canonical(obj: Any) -> bytes:
    """The one byte form of a JSON value: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


_ORJSON_SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME
_ORJSON_SORTED |= orjson.OPT_PASSTHROUGH_DATACLASS
# where orjson's text may differ from ``canonical``'s: a float below 1e-4 (orjson writes
# `0.00001` and `1e-7` for `1e-05` and `1e-07`), and `null` (orjson writes NaN and the
# infinities as null, which ``canonical`` refuses); a text holding these is merely slower
_SMALL_EXPONENT = re.compile(rb"e-[0-9](?![0-9])")  # (after a digit; a literal first: a fast scan)


def _may_differ(out: bytes) -> bool:
    if b"null" in out or b"0.0000" in out:
        return True
    return b"e-" in out and any(48 <= out[m.start() - 1] <= 57 for m in _SMALL_EXPONENT.finditer(out, 1))


_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19  # (a run of digits, once they are all 0) a number orjson may read as a float


def encode(obj: Any) -> bytes:
    """``canonical(obj)``, byte for byte, faster: orjson's text where it is the same (its
    strings are escaped alike, keys sorted by code point alike, floats written as Python's
    shortest form outside the cases ``_may_differ`` finds), else ``canonical``'s own
    (and its errors: a type JSON lacks, a key that is not text, NaN)."""
    try:
        out = orjson.dumps(obj, option=_ORJSON_SORTED)
    except TypeError:  # a subclass, a key not text, a number past 64 bits, a lone surrogate...
        return canonical(obj)
    return canonical(obj) if _may_differ(out) else out


def decode(text: str | bytes) -> Any:
    """``json.loads(text)``, the same value, faster: orjson's unless the text holds a run of
    19 digits (it may be a whole number past 64 bits, which orjson reads as a float) or
    orjson refuses it (NaN, a lone surrogate, a number too large for a float: ``json`` reads
    them)."""
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    if _LONG_RUN not in data.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def same_json(a: Any, b: Any) -> bool:
    """``canonical(a) == canonical(b)``, without encoding either when they are the same JSON
    values of the same types (text, whole number, float, boolean, null, list, object with
    text keys): a float is the same float when its text is (``0.0`` is not ``-0.0``); ``1``,
    ``1.0`` and ``true`` differ. Anything else (a tuple, a key that is not text, a value
    that is not finite) is compared as canonical JSON, as before, errors included."""
    return _same(a, b) or canonical(a) == canonical(b)


def _same(a: Any, b: Any) -> bool:
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is dict:
        if len(a) != len(b):
            return False
        for k, v in a.items():
            w = b.get(k, _ABSENT)
            leaf = type(v)
            if leaf is not type(w) or type(k) is not str:
                return False
            if leaf is str or leaf is int or leaf is bool or v is None:  # a leaf, compared here
                if v != w:
                    return False
            elif not _same(v, w):
                return False
        return True
    if kind is list:
        if len(a) != len(b):
            return False
        for v, w in zip(a, b, strict=True):  # (of one length: checked above)
            leaf = type(v)
            if leaf is not type(w):
                return False
            if leaf is str or leaf is int or leaf is bool or v is None:
                if v != w:
                    return False
            elif not _same(v, w):
                return False
        return True
    if kind is str or kind is int or kind is bool or a is None:
        return bool(a == b)
    if kind is float:
        return bool(a == b) and repr(a) == repr(b) and a - a == 0.0  # (inf - inf is nan: canonical refuses it)
    return False


_ABSENT = object()


def record_hash(prev: str, n: int, body: str) -> str:
    return hashlib.sha256(f"{prev}\n{n}\n{body}".encode()).hexdigest()


def head_of(prev: bytes | None) -> tuple[str, int]:
    """(hash, n) of a stored record; (genesis, 0) before the first."""
    if prev is None:
        return GENESIS, 0
    last = decode(prev)
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
            rec = decode(data)
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
