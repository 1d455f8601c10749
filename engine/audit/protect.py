"""Sensitive values in the decision log: sealed with per-customer keys, erasable for good.

A value is sealed as ``{"$sealed": base64(nonce + AES-256-GCM ciphertext)}`` with the
customer's data key; the field's path is the authenticated data, so a sealed value moved
to another field does not open. Each customer's data key is random, stored in the log's
store wrapped twice: with the host's master key (AES-GCM, the key's name authenticated),
then with a key-encryption key (KEK) kept in a **keyring**, a file outside the store
(owner-only, beside the master key file or the store's own files). The store names its
keyring in one row (``charter:keyring``: the path and the store's id, nothing secret).

Erasing a customer (``Protector.erase``) wraps every other customer's key anew under a fresh
KEK, deletes the customer's key, and then destroys the old KEK (the keyring file replaced
and the old file overwritten). Every copy of the deleted key that the store may still keep —
PostgreSQL's old row versions and WAL, SQLite's WAL frames, a backup — is wrapped under a
KEK that exists nowhere any more: the master key alone does not open it. On SQLite the
erase also checkpoints the WAL into the database and truncates it, with ``secure_delete``
on, so not even those copies stay. The decision records — outcomes, rules, reasons,
hashes — stay intact and verifiable.

A log written before keyrings holds data keys wrapped with the master key only: they
still open, and the first erase wraps them all under a keyring KEK (copies made before
that, in WAL or backups, open with the master key: see docs/audit.md). A ``Protector``
without a keyring (``keyring=False``, or a PostgreSQL store with a master key from the
environment and no ``CHARTER_LOG_KEYRING``) keeps the old scheme: erasing deletes the key
row only (``Erasure.lasting`` is False, and ``charter log erase`` says so).

The master key is 32 bytes the host supplies (``load_key``: a file of 64 hex digits, or
the ``CHARTER_LOG_KEY`` environment variable). It is never stored.
"""

from __future__ import annotations

import binascii
import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
import threading
import time
from binascii import a2b_base64, b2a_base64
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engine.audit.chain import canonical
from engine.errors import CharterError
from engine.storage import Store, fsync_dir

SEALED = "$sealed"
_TRUE, _FALSE = b"true", b"false"
_FLOAT = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _scalar(value: Any) -> bytes | None:
    """``canonical(value)`` for a text, a number or a boolean, faster; None for any other value."""
    kind = type(value)
    if kind is str:
        return encode_basestring(value).encode()
    if kind is int:
        return str(value).encode()
    if kind is bool:
        return _TRUE if value else _FALSE
    if kind is float and value == value and value not in (float("inf"), float("-inf")):
        return repr(value).encode()
    return None


def _plain(data: bytes, loads: Any) -> Any:
    """A sealed value's plaintext read back: what ``json.loads`` gives, without it for what
    ``seal_into`` writes most (a text with nothing escaped, a whole number, a boolean)."""
    first = data[:1]
    if first == b'"':
        if len(data) >= 2 and data[-1:] == b'"' and b"\\" not in data:
            return data[1:-1].decode("utf-8")  # encode_basestring escapes only `"`, `\` and controls
    elif data == _TRUE:
        return True
    elif data == _FALSE:
        return False
    elif data.isdigit() or (first == b"-" and data[1:].isdigit()):
        return int(data)
    elif (first.isdigit() or first == b"-") and _FLOAT.fullmatch(data):
        return float(data)  # a float's repr (seal_into writes no other number with `.` or `e`)
    return loads(data)


ERASURE_KIND = "erasure"


def _erasure_mark(subject: str) -> bytes:
    # content-addressed like every blob, and computable from the customer id alone
    return canonical({"erased": f"customer:{subject}"})


def mark_erased(store: Store, subject: str) -> None:
    """Leave the mark that ``subject``'s key was erased on purpose, so that verify and replay
    tell an erasure from a key deleted behind the log's back (``Protector.shred`` leaves it)."""
    mark = _erasure_mark(subject)
    store.put_blob(ERASURE_KIND, hashlib.sha256(mark).hexdigest(), mark)


def was_erased(store: Store, subject: str) -> bool:
    return store.get_blob(ERASURE_KIND, hashlib.sha256(_erasure_mark(subject)).hexdigest()) is not None


class SealError(CharterError):
    """A sealed value cannot be opened: no key, a wrong key or an erased customer."""

    code = "K000"


class MasterKey(bytes):
    """The master key's 32 bytes, and the file they were read from (None: the environment)."""

    source: Path | None

    def __new__(cls, key: bytes, source: Path | None = None) -> MasterKey:
        made = super().__new__(cls, key)
        made.source = source
        return made


def load_key(path: str | Path | None = None, *, create: bool = False) -> MasterKey:
    """The master key from ``CHARTER_LOG_KEY`` (hex) or a key file (64 hex digits).

    With ``create``, a missing file is made with a new random key (mode 0600): convenient
    for a first run; a production host keeps its key in its own secret store. A key file
    that its group or others may read or write is refused (K007), unless
    ``CHARTER_ALLOW_SHARED_KEY=1``. The key remembers the file it was read from: a new
    keyring is made beside it (``<key file>.keyring``).
    """
    env = os.environ.get("CHARTER_LOG_KEY")
    if env:
        return MasterKey(_parse(env.strip(), "CHARTER_LOG_KEY"))
    if path is None:
        raise SealError("no log key", code="K001", hint="set CHARTER_LOG_KEY or pass a key file")
    p = Path(path)
    if not p.exists():
        if not create:
            raise SealError(f"no key file `{p}`", code="K001", hint="pass the key file the log was written with")
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
    mode = p.stat().st_mode & 0o777
    if mode & 0o077 and os.environ.get("CHARTER_ALLOW_SHARED_KEY") != "1":
        raise SealError(
            f"the key file `{p}` is open to its group or others (mode {mode:04o})",
            code="K007",
            hint=f"make it its owner's only: `chmod 600 {p}` (or set CHARTER_ALLOW_SHARED_KEY=1 to accept it)",
        )
    return MasterKey(_parse(p.read_text().strip(), str(p)), p.absolute())


def _parse(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise SealError(f"`{where}` is not a 32-byte key in hex", code="K002", hint="write 64 hex digits")
    return key


# ---------------------------------------------------------------- keyrings: KEKs outside the store

KEYRING_MARK = "charter:keyring"  # the key row naming the store's keyring: its path and the store's id
_MARK = b"charter-keyring:"  # how that row's bytes begin
_LEGACY = 60  # bytes of a data key wrapped with the master key alone: nonce, key, tag
_V1 = b"\x01"  # the first byte of a data key wrapped again under a keyring KEK: then its id (8 bytes)
_RING_LIMIT = 1 << 22  # bytes of a keyring file read at most


@dataclass(frozen=True)
class Erasure:
    """What erasing a customer did."""

    erased: bool  # the customer had a data key: it is deleted
    lasting: bool  # the store's keys are under a keyring whose old KEK is destroyed: no copy opens
    rewrapped: int  # the other data keys, wrapped anew under the fresh KEK


@dataclass(frozen=True)
class _Ring:
    """One store's entry of a keyring file: its KEKs by id, ``current`` the one new keys use."""

    path: Path
    store: str
    keks: dict[bytes, AESGCM]
    current: bytes
    stamp: tuple[int, int, int]  # the file's inode, mtime and size when read


def _ring_error(path: Path, why: str) -> SealError:
    return SealError(
        f"the keyring `{path}` {why}",
        code="K009",
        hint="it holds the keys this log's data keys are wrapped under: keep it whole, its owner's only",
    )


def _stamp(path: Path) -> tuple[int, int, int]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return (0, 0, 0)
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _read_ring(path: Path) -> tuple[dict[str, list[list[str]]], tuple[int, int, int]]:
    """A keyring file's stores (store id -> [[KEK id, KEK] in hex, ...], the current first) and
    its stamp; no stores when there is no file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return {}, (0, 0, 0)
    except OSError as err:
        raise _ring_error(path, f"cannot be read: {err.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if st.st_mode & 0o077 and os.environ.get("CHARTER_ALLOW_SHARED_KEY") != "1":
            raise _ring_error(path, f"is open to its group or others (mode {st.st_mode & 0o777:04o})")
        data = f.read(_RING_LIMIT + 1)
    try:
        doc = json.loads(data) if len(data) <= _RING_LIMIT else None
        stores = doc["stores"] if isinstance(doc, dict) and doc.get("charter_keyring") == 1 else None
        whole = isinstance(stores, dict) and all(
            isinstance(pairs, list)
            and pairs
            and all(len(bytes.fromhex(i)) == 8 and len(bytes.fromhex(k)) == 32 for i, k in pairs)
            for pairs in stores.values()
        )
    except (ValueError, TypeError):
        whole = False
    if not whole:
        raise _ring_error(path, "is not a keyring, or is damaged")
    assert isinstance(stores, dict)  # for the type checker: `whole` says so
    return stores, (st.st_ino, st.st_mtime_ns, st.st_size)


def _write_ring(path: Path, stores: dict[str, list[list[str]]]) -> None:
    """Replace the keyring file whole (mode 0600, durable), then overwrite the file it replaced
    with zeros: a KEK left out is in no file any more."""
    text = json.dumps({"charter_keyring": 1, "stores": stores}, indent=1).encode() + b"\n"
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            try:
                old: int | None = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
            except FileNotFoundError:
                old = None
            try:
                os.replace(tmp, path)
                fsync_dir(path.parent)
                if old is not None:
                    os.pwrite(old, bytes(os.fstat(old).st_size), 0)
                    os.fsync(old)
            finally:
                if old is not None:
                    os.close(old)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    except OSError as err:
        raise _ring_error(path, f"cannot be written: {err.strerror}") from None


@contextlib.contextmanager
def _locked(path: Path, *, exclusive: bool) -> Iterator[None]:
    """The keyring's lock (``<keyring>.lock``): an erase holds it alone while it changes KEKs;
    writers making data keys share it, so none wraps a key under a KEK about to go."""
    try:
        fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise _ring_error(path, f"cannot be locked: {err.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # which releases the lock


def _mark(path: Path, store: str) -> bytes:
    return _MARK + json.dumps({"keyring": str(path), "store": store}, sort_keys=True).encode()


def _parse_mark(mark: bytes) -> tuple[Path, str]:
    try:
        doc = json.loads(mark.removeprefix(_MARK)) if mark.startswith(_MARK) else {}
        return Path(str(doc["keyring"])), str(doc["store"])
    except (ValueError, KeyError, TypeError):
        raise SealError(
            f"the store's `{KEYRING_MARK}` row is damaged", code="K009", hint="it names the log's keyring"
        ) from None


class Protector:
    """Seals and opens values with per-customer data keys kept (wrapped) in ``store``.

    ``keyring``: where a new keyring is made when the store has none — a path; True (the
    default) for ``CHARTER_LOG_KEYRING``, else beside the master key's file (``load_key``),
    else beside the store's files; False to make none (data keys under the master key alone,
    erasure not lasting). A path (or ``CHARTER_LOG_KEYRING``) also overrides the path the
    store names, for a keyring moved since."""

    def __init__(self, store: Store, master: bytes, *, keyring: str | Path | bool = True) -> None:
        self.store = store
        self.master = AESGCM(master)
        self._source = master.source if isinstance(master, MasterKey) else None
        self._choice = keyring
        self._mark: bytes | None = None  # the store's keyring row, once seen (it never changes)
        self._ring: _Ring | None = None
        self._keys_cache: OrderedDict[str, AESGCM | None] = OrderedDict()
        self._lock = threading.Lock()
        self._cached_under: tuple[Path, tuple[int, int, int]] | None = None  # the keyring as the cache saw it
        self._mark_asked = 0.0  # when the store was last asked for its keyring row (none known yet)
        self._watched: dict[bytes, Path] = {}  # the keyring file a keyring row names (read once)
        self._stamp_checked = 0.0  # when the keyring file was last looked at

    def _fresh(self) -> None:
        """Forget the cached data keys when the keyring's file changed since they were read:
        an erasure (by this process or another: ``charter log erase`` beside a running
        service) rewrites it, and the erased customer's key must not open here either. The
        file is looked at (one ``stat``) at most every 50 ms. A log without a keyring yet is
        asked for its keyring row at most once a second (its first erasure makes one)."""
        if self._mark is None:
            if not self._keys_cache or time.monotonic() - self._mark_asked < 1.0:
                return
            self._mark_asked = time.monotonic()
            self._mark = self.store.get_keys([KEYRING_MARK]).get(KEYRING_MARK)
            if self._mark is None:
                return
        moment = time.monotonic()
        if moment - self._stamp_checked < 0.05:  # at most 20 stats a second, however many records
            return
        self._stamp_checked = moment
        path = self._watched.get(self._mark)
        if path is None:
            try:
                named, _ = _parse_mark(self._mark)
            except SealError:
                return
            path = self._watched[self._mark] = self._given() or named
        seen = (path, _stamp(path))
        if seen != self._cached_under:
            with self._lock:
                self._keys_cache.clear()
                self._cached_under = seen

    def _keys(self, subjects: Iterable[str], *, create: bool) -> dict[str, AESGCM | None]:
        """The data key of each subject (None: none stored); with ``create``, a missing one is
        made. One read and at most one write for all the subjects not cached."""
        out: dict[str, AESGCM | None] = {}
        todo: dict[str, str] = {}  # key name -> subject
        self._fresh()
        with self._lock:
            for subject in subjects:
                if subject in out:
                    continue
                hit = self._keys_cache.get(subject)
                if hit is not None or (subject in self._keys_cache and not create):
                    self._keys_cache.move_to_end(subject)
                    out[subject] = hit
                else:
                    todo[f"customer:{subject}"] = subject
        if not todo:
            return out
        stored = self.store.get_keys([*todo, KEYRING_MARK] if self._mark is None else list(todo))
        self._mark = stored.pop(KEYRING_MARK, None) or self._mark
        made: dict[str, tuple[bytes, AESGCM | None]] = {}
        if create and len(stored) < len(todo):
            made = self._make([name for name in todo if name not in stored])
            stored.update((name, wrapped) for name, (wrapped, _) in made.items())
        for name, subject in todo.items():
            wrapped = stored.get(name)
            ours = made.get(name)
            if ours is not None and ours[1] is not None:  # the key just made is the one stored: no unwrap
                out[subject] = ours[1]
            else:  # stored before, or by another writer first (the first writer's key wins)
                out[subject] = None if wrapped is None else self._unwrap(name, subject, wrapped)
        with self._lock:
            for subject in todo.values():
                self._keys_cache[subject] = out[subject]
            while len(self._keys_cache) > 4096:
                self._keys_cache.popitem(last=False)
        return out

    def _make(self, names: list[str]) -> dict[str, tuple[bytes, AESGCM | None]]:
        """New data keys for ``names``, stored durably before any value is sealed with them;
        under the store's keyring, made first when the store has none and may have one. For
        each name: the key as stored, and the key itself when it is the one just made (None:
        another writer stored one first, which wins)."""
        if self._mark is None:
            self._mark = self._establish()
        if self._mark is None:  # no keyring: the master key alone, as logs were before keyrings
            made = self._new_keys(names, None)
            stored = self.store.add_keys({name: wrapped for name, (wrapped, _) in made.items()})
        else:
            path = self._ring_of(self._mark).path
            with _locked(path, exclusive=False):  # an erase waits: the KEK it destroys wraps none of these
                made = self._new_keys(names, self._ring_of(self._mark))  # read again if an erase changed it
                stored = self.store.add_keys({name: wrapped for name, (wrapped, _) in made.items()})
        out: dict[str, tuple[bytes, AESGCM | None]] = {}
        for name, (wrapped, key) in made.items():
            kept = stored.get(name)
            if kept is not None:
                out[name] = (kept, key if kept == wrapped else None)
        return out

    def _new_keys(self, names: list[str], ring: _Ring | None) -> dict[str, tuple[bytes, AESGCM]]:
        """Random data keys, wrapped with the master key (the key's name authenticated), then
        under ``ring``'s current KEK; the random bytes for all of them in one system call."""
        random = os.urandom(56 * len(names))  # per key: 32 bytes of key, 12 of nonce and 12 of nonce
        master = self.master
        out = {}
        for i, name in enumerate(names):
            at = 56 * i
            key, nonce, outer = random[at : at + 32], random[at + 32 : at + 44], random[at + 44 : at + 56]
            wrapped = nonce + master.encrypt(nonce, key, name.encode())
            if ring is not None:
                head = _V1 + ring.current
                wrapped = head + outer + ring.keks[ring.current].encrypt(outer, wrapped, head)
            out[name] = (wrapped, AESGCM(key))
        return out

    def _home(self) -> Path | None:
        """Where a new keyring goes: the path given or ``CHARTER_LOG_KEYRING``; else the first
        of beside the master key's file and beside the store's files in a directory this
        process may write (a key file mounted read-only: beside the store); None: nowhere."""
        if self._choice is False or self._given() is not None:
            return None if self._choice is False else self._given()
        beside = getattr(self.store, "keyring_path", None)  # a store kept in local files
        found = beside() if callable(beside) else None
        places = [self._source.with_name(self._source.name + ".keyring")] if self._source is not None else []
        places += [Path(found).absolute()] if isinstance(found, str | Path) else []
        return next((place for place in places if os.access(place.parent, os.W_OK)), None)

    def _given(self) -> Path | None:
        """The keyring path given (``keyring=``, or ``CHARTER_LOG_KEYRING``): it wins over the
        path the store names, for a keyring moved since."""
        if not isinstance(self._choice, bool):
            return Path(self._choice).absolute()
        env = os.environ.get("CHARTER_LOG_KEYRING")
        return Path(env).absolute() if env else None

    def _establish(self) -> bytes | None:
        """Make the store's keyring (its first KEK) and the row naming it; None: no place for one.
        Under the keyring's lock: two writers starting together make one."""
        home = self._home()
        if home is None:
            return None
        with _locked(home, exclusive=True):
            mark = self.store.get_keys([KEYRING_MARK]).get(KEYRING_MARK)
            if mark is not None:  # another writer made it meanwhile
                return mark
            stores, _ = _read_ring(home)
            store = os.urandom(16).hex()
            stores[store] = [[os.urandom(8).hex(), os.urandom(32).hex()]]
            _write_ring(home, stores)  # durable before the store names it
            return self.store.add_keys({KEYRING_MARK: _mark(home, store)})[KEYRING_MARK]

    def _ring_of(self, mark: bytes, *, fresh: bool = False) -> _Ring:
        """The store's keyring entry, read again when its file changed (or ``fresh``)."""
        named, store = _parse_mark(mark)
        path = self._given() or named
        ring = self._ring
        if ring is not None and not fresh and (ring.path, ring.store) == (path, store) and _stamp(path) == ring.stamp:
            return ring
        stores, stamp = _read_ring(path)
        pairs = stores.get(store)
        if not pairs:
            raise SealError(
                f"the keyring `{path}` does not hold this log's keys",
                code="K008",
                hint="this log's data keys are wrapped under it: restore it, or point CHARTER_LOG_KEYRING at it",
            )
        keks = {bytes.fromhex(i): AESGCM(bytes.fromhex(k)) for i, k in pairs}
        self._ring = _Ring(path, store, keks, bytes.fromhex(pairs[0][0]), stamp)
        return self._ring

    def _unwrap(self, name: str, subject: str, wrapped: bytes) -> AESGCM:
        inner = wrapped if len(wrapped) == _LEGACY else self._unring(subject, wrapped)
        try:
            return AESGCM(self.master.decrypt(inner[:12], inner[12:], name.encode()))
        except InvalidTag:
            raise SealError(
                f"the log key does not open the data key of `{subject}`",
                code="K003",
                hint="use the key the log was written with",
            ) from None

    def _unring(self, subject: str, wrapped: bytes) -> bytes:
        """A data key as wrapped with the master key, from under its keyring KEK."""
        kek = None
        if wrapped.startswith(_V1) and self._mark is not None:
            ring = self._ring or self._ring_of(self._mark)  # the keyring as read (no look at its file)
            kek = ring.keks.get(wrapped[1:9])
            if kek is None:  # wrapped under a KEK an erase made since the keyring was read
                kek = self._ring_of(self._mark, fresh=True).keks.get(wrapped[1:9])
        try:
            if kek is not None:
                return kek.decrypt(wrapped[9:21], wrapped[21:], wrapped[:9])
        except InvalidTag:
            pass
        raise SealError(
            f"no key of the log's keyring opens the data key of `{subject}`",
            code="K008",
            hint="the keyring is not the one the log was written with, or the stored key was altered",
        )

    def seal_many(self, items: Sequence[tuple[str, str, Any]]) -> list[dict[str, str]]:
        """Seal each (subject, path, value); the subjects' keys are fetched or made in one go."""
        slots: list[dict[str, str]] = [{} for _ in items]
        self.seal_into(
            [(subject, path, value, slot) for (subject, path, value), slot in zip(items, slots, strict=True)]
        )
        return slots

    def seal_into(self, items: Sequence[tuple[str, str, Any, dict[str, str]]]) -> None:
        """Seal each (subject, path, value) into its slot (``{"$sealed": ...}``): the subjects'
        keys fetched or made in one go (one read, at most one write), one system call for the
        nonces; what ``seal_many`` does, without building its list."""
        keys = self._keys((item[0] for item in items), create=True)
        nonces = os.urandom(12 * len(items))  # one system call for the batch's random nonces
        last, key = None, None
        at = 0
        for subject, path, value, slot in items:
            if subject is not last:
                last, key = subject, keys[subject]
                assert key is not None
            nonce = nonces[at : at + 12]
            at += 12
            kind = type(value)
            if kind is str:
                data = encode_basestring(value).encode()
            elif kind is int:
                data = str(value).encode()
            else:
                scalar = _scalar(value)
                data = canonical(value) if scalar is None else scalar
            assert key is not None
            slot[SEALED] = b2a_base64(nonce + key.encrypt(nonce, data, path.encode()), newline=False).decode("ascii")

    def preload(self, subjects: Iterable[str]) -> None:
        """Fetch the data keys of ``subjects`` in one read (replay: before opening their values)."""
        self._keys(subjects, create=False)

    def open(self, subject: str, path: str, sealed: dict[str, str]) -> Any:
        return self.opener(subject)(path, sealed)

    def opener(self, subject: str) -> Callable[[str, dict[str, str]], Any]:
        """``open`` for the values of one subject (a record's): its key looked up once, when
        the first value is opened (a record without sealed values needs none)."""
        self._fresh()
        key: AESGCM | None = None
        loads = json.loads

        def open_one(path: str, sealed: dict[str, str]) -> Any:
            nonlocal key
            if key is None:
                key = self._key_of(subject)
            try:
                raw = a2b_base64(sealed[SEALED], strict_mode=True)
                return _plain(key.decrypt(raw[:12], raw[12:], path.encode()), loads)
            except (InvalidTag, ValueError, TypeError, binascii.Error):  # altered, or not a sealed value at all
                raise SealError(f"the sealed value at `{path}` does not open", code="K005") from None

        return open_one

    def _key_of(self, subject: str) -> AESGCM:
        key = self._keys_cache.get(subject)  # a cached key: no lock, no read (an erased one is re-read)
        if key is None:
            key = self._keys([subject], create=False)[subject]
        if key is None:
            raise SealError(
                f"the values of `{subject}` were erased", code="K004", hint="the decision's reasons remain in the log"
            )
        return key

    def erase(self, subject: str) -> bool:
        """Delete the customer's data key for good (``shred``); whether they had one."""
        return self.shred(subject).erased

    def shred(self, subject: str) -> Erasure:
        """Delete the customer's data key so that no copy of it opens: under the keyring's lock,
        a fresh KEK is added to the keyring, every other data key is wrapped anew under it and
        the customer's deleted in one store transaction, then every older KEK is destroyed. A
        log from before keyrings gets one now. Without a keyring, only the key row is deleted."""
        with self._lock:
            self._keys_cache.pop(subject, None)
        name = f"customer:{subject}"
        mark = self._mark or self.store.get_keys([KEYRING_MARK]).get(KEYRING_MARK) or self._establish()
        if mark is None:
            done = Erasure(self.store.delete_key(name), lasting=False, rewrapped=0)
            if done.erased:
                mark_erased(self.store, subject)
            return done
        self._mark = mark
        path = self._ring_of(mark).path
        with _locked(path, exclusive=True):
            ring = self._ring_of(mark, fresh=True)
            stores, _ = _read_ring(path)
            fresh = [os.urandom(8).hex(), os.urandom(32).hex()]
            _write_ring(path, {**stores, ring.store: [fresh, *stores[ring.store]]})  # before any key uses it
            kek = bytes.fromhex(fresh[0])
            new = _Ring(path, ring.store, {kek: AESGCM(bytes.fromhex(fresh[1]))}, kek, (0, 0, 0))
            deleted, rewrapped = self.store.rewrap_keys(lambda blob: _rewrap(ring, new, blob), delete=[name])
            stores, _ = _read_ring(path)
            _write_ring(path, {**stores, ring.store: [fresh]})  # the old KEKs: gone
        self._ring = None
        if deleted > 0:
            mark_erased(self.store, subject)  # erased on purpose: verify and replay tell it from a key lost
        return Erasure(deleted > 0, lasting=True, rewrapped=rewrapped)


def _enring(ring: _Ring, inner: bytes) -> bytes:
    """A data key wrapped with the master key (``inner``), wrapped again under the current KEK."""
    nonce = os.urandom(12)
    head = _V1 + ring.current
    return head + nonce + ring.keks[ring.current].encrypt(nonce, inner, head)


def _rewrap(old: _Ring, new: _Ring, blob: bytes) -> bytes | None:
    """A stored data key wrapped anew under ``new``'s KEK; None (left as it is) for the
    keyring row and for a key no KEK of ``old`` opens (altered: it opens under none)."""
    if blob.startswith(_MARK):
        return None
    inner: bytes | None = blob if len(blob) == _LEGACY else None
    kek = old.keks.get(blob[1:9]) if inner is None and blob.startswith(_V1) else None
    if kek is not None:
        with contextlib.suppress(InvalidTag):
            inner = kek.decrypt(blob[9:21], blob[21:], blob[:9])
    return None if inner is None else _enring(new, inner)
