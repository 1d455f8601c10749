"""Sensitive values in the decision log: sealed with per-customer keys, erasable.

A value is sealed as ``{"$sealed": base64(nonce + AES-256-GCM ciphertext)}`` with the
customer's data key; the field's path is the authenticated data, so a sealed value moved
to another field does not open. Each customer's data key is random, stored in the log's
store wrapped (AES-GCM) with the host's master key. Erasing a customer deletes that key:
their sealed values can never be opened again, while the decision records — outcomes,
rules, reasons, hashes — stay intact and verifiable.

The master key is 32 bytes the host supplies (``load_key``: a file of 64 hex digits, or
the ``CHARTER_LOG_KEY`` environment variable). It is never stored.
"""

from __future__ import annotations

import base64
import os
import threading
from binascii import b2a_base64
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engine.audit.chain import canonical
from engine.errors import CharterError
from engine.storage import Store

SEALED = "$sealed"
_TRUE, _FALSE = b"true", b"false"


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


class SealError(CharterError):
    """A sealed value cannot be opened: no key, a wrong key or an erased customer."""

    code = "K000"


def load_key(path: str | Path | None = None, *, create: bool = False) -> bytes:
    """The master key from ``CHARTER_LOG_KEY`` (hex) or a key file (64 hex digits).

    With ``create``, a missing file is made with a new random key (mode 0600): convenient
    for a first run; a production host keeps its key in its own secret store. A key file
    that its group or others may read or write is refused (K007), unless
    ``CHARTER_ALLOW_SHARED_KEY=1``.
    """
    env = os.environ.get("CHARTER_LOG_KEY")
    if env:
        return _parse(env.strip(), "CHARTER_LOG_KEY")
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
    return _parse(p.read_text().strip(), str(p))


def _parse(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise SealError(f"`{where}` is not a 32-byte key in hex", code="K002", hint="write 64 hex digits")
    return key


class Protector:
    """Seals and opens values with per-customer data keys kept (wrapped) in ``store``."""

    def __init__(self, store: Store, master: bytes) -> None:
        self.store = store
        self.master = AESGCM(master)
        self._keys_cache: OrderedDict[str, AESGCM | None] = OrderedDict()
        self._lock = threading.Lock()

    def _keys(self, subjects: Iterable[str], *, create: bool) -> dict[str, AESGCM | None]:
        """The data key of each subject (None: none stored); with ``create``, a missing one is
        made. One read and at most one write for all the subjects not cached."""
        out: dict[str, AESGCM | None] = {}
        todo: dict[str, str] = {}  # key name -> subject
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
        stored = self.store.get_keys(list(todo))
        if create and len(stored) < len(todo):
            made = {name: self._wrap(name, os.urandom(32)) for name in todo if name not in stored}
            stored.update(self.store.add_keys(made))  # durable before any value is sealed with them
        for name, subject in todo.items():
            wrapped = stored.get(name)
            out[subject] = None if wrapped is None else self._unwrap(name, subject, wrapped)
        with self._lock:
            for subject in todo.values():
                self._keys_cache[subject] = out[subject]
            while len(self._keys_cache) > 4096:
                self._keys_cache.popitem(last=False)
        return out

    def _wrap(self, name: str, key: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self.master.encrypt(nonce, key, name.encode())

    def _unwrap(self, name: str, subject: str, wrapped: bytes) -> AESGCM:
        try:
            return AESGCM(self.master.decrypt(wrapped[:12], wrapped[12:], name.encode()))
        except InvalidTag:
            raise SealError(
                f"the log key does not open the data key of `{subject}`",
                code="K003",
                hint="use the key the log was written with",
            ) from None

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
        import json

        key = self._keys_cache.get(subject)  # a cached key: no lock, no read (an erased one is re-read)
        if key is None:
            key = self._keys([subject], create=False)[subject]
        if key is None:
            raise SealError(
                f"the values of `{subject}` were erased", code="K004", hint="the decision's reasons remain in the log"
            )
        try:
            raw = base64.b64decode(sealed[SEALED], validate=True)
            return json.loads(key.decrypt(raw[:12], raw[12:], path.encode()))
        except (InvalidTag, ValueError, TypeError):  # altered, or not a sealed value at all
            raise SealError(f"the sealed value at `{path}` does not open", code="K005") from None

    def erase(self, subject: str) -> bool:
        """Delete the customer's data key; their sealed values become unreadable for good."""
        with self._lock:
            self._keys_cache.pop(subject, None)
        return self.store.delete_key(f"customer:{subject}")
