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
from collections import OrderedDict
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engine.audit.chain import canonical
from engine.errors import CharterError
from engine.storage import Store

SEALED = "$sealed"


class SealError(CharterError):
    """A sealed value cannot be opened: no key, a wrong key or an erased customer."""

    code = "K000"


def load_key(path: str | Path | None = None, *, create: bool = False) -> bytes:
    """The master key from ``CHARTER_LOG_KEY`` (hex) or a key file (64 hex digits).

    With ``create``, a missing file is made with a new random key (mode 0600): convenient
    for a first run; a production host keeps its key in its own secret store.
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
        self._keys: OrderedDict[str, AESGCM | None] = OrderedDict()
        self._lock = threading.Lock()

    def _key(self, subject: str, *, create: bool) -> AESGCM | None:
        with self._lock:
            if subject in self._keys:
                self._keys.move_to_end(subject)
                return self._keys[subject]
        name = f"customer:{subject}"
        wrapped = self.store.get_key(name)
        if wrapped is None and create:
            nonce = os.urandom(12)
            wrapped = nonce + self.master.encrypt(nonce, os.urandom(32), name.encode())
            self.store.put_key(name, wrapped)
        key = None
        if wrapped is not None:
            try:
                key = AESGCM(self.master.decrypt(wrapped[:12], wrapped[12:], name.encode()))
            except InvalidTag:
                raise SealError(
                    f"the log key does not open the data key of `{subject}`",
                    code="K003",
                    hint="use the key the log was written with",
                ) from None
        with self._lock:
            self._keys[subject] = key
            if len(self._keys) > 4096:
                self._keys.popitem(last=False)
        return key

    def seal(self, subject: str, path: str, value: Any) -> dict[str, str]:
        key = self._key(subject, create=True)
        assert key is not None
        nonce = os.urandom(12)
        sealed = nonce + key.encrypt(nonce, canonical(value), path.encode())
        return {SEALED: base64.b64encode(sealed).decode()}

    def open(self, subject: str, path: str, sealed: dict[str, str]) -> Any:
        import json

        key = self._key(subject, create=False)
        if key is None:
            raise SealError(
                f"the values of `{subject}` were erased", code="K004", hint="the decision's reasons remain in the log"
            )
        raw = base64.b64decode(sealed[SEALED])
        try:
            return json.loads(key.decrypt(raw[:12], raw[12:], path.encode()))
        except InvalidTag:
            raise SealError(f"the sealed value at `{path}` does not open", code="K005") from None

    def erase(self, subject: str) -> bool:
        """Delete the customer's data key; their sealed values become unreadable for good."""
        with self._lock:
            self._keys.pop(subject, None)
        return self.store.delete_key(f"customer:{subject}")
