"""Storage: where decision records and content-addressed snapshots live, chosen by URL scheme.

A store does two things, and every backend does them alike (one shared test suite):

* **blobs**: content-addressed bytes by ``(kind, digest)`` — policy bundles, population
  snapshots. ``put_blob`` checks the digest (SHA-256 of the bytes) and is idempotent.
* **records**: an append-only sequence of opaque byte records (the decision log).
  ``append`` returns each record's sequence number only once the records are durable
  (committed, or written and fsync'ed); ``read`` returns them in sequence order.
  ``append_linked`` builds each record from the one before it while holding the log's
  write lock, so a hash chain stays one chain with several writer processes;
* **keys**: small named secrets that can be deleted (per-customer data keys, wrapped), so
  erasing a customer's key makes their logged values unreadable; ``rewrap_keys`` deletes
  some and replaces all the others' bytes in one go (an erase wrapping them under a fresh
  key-encryption key, ``engine.audit.protect``).

A store kept in local files also has ``keyring_path()``: where a keyring for its keys goes
by default (beside its files, not in them).

Backends are plugins (hook ``charter_storage(url)``): ``sqlite:///path.db`` (the default,
WAL mode) and ``postgresql://...`` through SQLAlchemy, and ``jsonl:///directory`` (an
append-only file). ``engine.plugins.open_store(url)`` asks every plugin and uses the first that answers.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from engine.errors import CharterError


class StorageError(CharterError):
    """A store could not be opened, read or written."""

    code = "D000"


Link = Callable[[bytes | None, bytes], bytes]


class Store(Protocol):
    """What every storage backend provides."""

    url: str

    def put_blob(self, kind: str, digest: str, data: bytes) -> None: ...

    def get_blob(self, kind: str, digest: str) -> bytes | None: ...

    def append(self, records: Sequence[bytes]) -> list[int]: ...

    def append_linked(self, bodies: Sequence[bytes], link: Link) -> list[int]:
        """Append ``link(previous record or None, body)`` for each body, under the write lock.

        A backend that retries a transaction (a busy database) calls ``link`` again for the
        whole batch: ``link`` must be a pure function of its arguments."""
        ...

    def add_keys(self, keys: Mapping[str, bytes]) -> dict[str, bytes]:
        """Store each key whose name is not stored yet, durably; a stored key is never replaced
        (two writers creating the same key agree on the first). Returns the stored key of every
        name given."""
        ...

    def get_keys(self, names: Sequence[str]) -> dict[str, bytes]:
        """The stored keys among ``names``."""
        ...

    def delete_key(self, name: str) -> bool: ...

    def rewrap_keys(self, rewrap: Callable[[bytes], bytes | None], delete: Sequence[str] = ()) -> tuple[int, int]:
        """Delete the keys named in ``delete``, and replace every other stored key's bytes with
        ``rewrap(bytes)`` (None: left as they are): in one transaction, holding off writers of
        keys, on a SQL store (``rewrap`` may be called again if it is retried); key by key,
        each replaced whole, on a file store. Then make what was replaced or deleted as hard
        to recover as the backend allows (SQLite: ``secure_delete``, the WAL checkpointed and
        truncated). Returns (keys deleted, keys replaced)."""
        ...

    def read(self, after: int = 0, limit: int | None = None) -> Iterator[tuple[int, bytes]]: ...

    def close(self) -> None: ...


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_digest(digest: str, data: bytes) -> None:
    if digest_of(data) != digest:
        raise StorageError(
            f"blob content does not match its digest `{digest[:16]}...`",
            code="D001",
            hint="a blob is stored under the SHA-256 of its bytes",
        )


def fsync_dir(path: str | Path) -> None:
    """Make a directory's new entries durable (a file renamed into it, one deleted from it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
