"""Built-in storage backends: ``sqlite`` and ``postgresql`` (SQLAlchemy) and ``jsonl`` (a file).

All three keep the ``engine.storage.Store`` contract; the test suite runs one set of tests
over each (PostgreSQL against a real server it starts). The SQL ones live in
``charter_plugins.sql``, imported when a SQL store is first opened (or ``SqlStore`` is first
asked of this module): registering the plugins does not import SQLAlchemy.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.hookspecs import hookimpl
from engine.storage import Link, StorageError, Store, check_digest

if TYPE_CHECKING:
    from charter_plugins.sql import SqlStore


class JsonlStore:
    """An append-only JSON Lines file plus one file per blob, in a directory.

    ``append`` holds an exclusive ``flock`` on the log while it writes, then fsyncs, so
    several processes can append without interleaving and an acknowledged record is on disk.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.root = Path(url.split("://", 1)[1] or ".")
        try:
            (self.root / "blobs").mkdir(parents=True, exist_ok=True)
            self.log = self.root / "log.jsonl"
            self.log.touch(exist_ok=True)
        except OSError as err:
            raise StorageError(
                f"cannot open the store `{url}`: {err.strerror}",
                code="D003",
                hint="check that the directory is writable",
            ) from None

    def put_blob(self, kind: str, digest: str, data: bytes) -> None:
        check_digest(digest, data)
        if not kind.isidentifier():
            raise StorageError(f"bad blob kind `{kind}`", code="D005")
        path = self.root / "blobs" / kind / digest
        if path.exists():
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # written aside under a name no other writer (thread or process) uses, then renamed
            # into place at once: a blob is whole or absent; another writer's copy landing first
            # is the same bytes, so replacing it is harmless
            _publish(path, data, replace=True)
        except OSError as err:
            raise StorageError(
                f"could not store a blob in `{self.root}`: {err.strerror}",
                code="D004",
                hint="check free disk space and permissions",
            ) from None

    def get_blob(self, kind: str, digest: str) -> bytes | None:
        if not (kind.isidentifier() and digest.isalnum()):
            return None
        try:
            return (self.root / "blobs" / kind / digest).read_bytes()
        except FileNotFoundError:
            return None

    def append(self, records: Sequence[bytes]) -> list[int]:
        return self.append_linked(records, lambda prev, body: body)

    def append_linked(self, bodies: Sequence[bytes], link: Link) -> list[int]:
        try:
            with open(self.log, "a+b") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                try:
                    _drop_torn_tail(f)
                    last, prev = _last(f)
                    seqs = list(range(last + 1, last + 1 + len(bodies)))
                    records = []
                    for body in bodies:
                        prev = link(prev, body)
                        records.append(prev)
                    lines = b"".join(
                        json.dumps({"seq": s, "data": base64.b64encode(r).decode()}).encode() + b"\n"
                        for s, r in zip(seqs, records, strict=True)
                    )
                    f.seek(0, os.SEEK_END)
                    f.write(lines)
                    f.flush()
                    os.fsync(f.fileno())
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)
        except OSError as err:
            raise StorageError(
                f"could not append to `{self.log}`: {err.strerror}",
                code="D004",
                hint="check free disk space and permissions",
            ) from None
        return seqs

    def read(self, after: int = 0, limit: int | None = None) -> Iterator[tuple[int, bytes]]:
        count = 0
        with open(self.log, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break  # a write cut short by a crash: never acknowledged, not a record
                item = json.loads(line)
                if item["seq"] > after:
                    yield int(item["seq"]), base64.b64decode(item["data"])
                    count += 1
                    if limit is not None and count >= limit:
                        return

    def add_keys(self, keys: Mapping[str, bytes]) -> dict[str, bytes]:
        if not keys:
            return {}
        try:
            (self.root / "keys").mkdir(exist_ok=True)
            for name, data in keys.items():
                path = self._key(name)
                if not path.exists():  # linked, not renamed, into place: another writer's key stays
                    _publish(path, data, replace=False)
            _fsync_dir(self.root / "keys")
        except OSError as err:
            raise StorageError(
                f"could not store keys in `{self.root}`: {err.strerror}",
                code="D004",
                hint="check free disk space and permissions",
            ) from None
        return self.get_keys(list(keys))

    def get_keys(self, names: Sequence[str]) -> dict[str, bytes]:
        found = {}
        for name in names:
            with contextlib.suppress(FileNotFoundError):  # never stored, or deleted (perhaps just now)
                found[name] = self._key(name).read_bytes()
        return found

    def delete_key(self, name: str) -> bool:
        try:
            self._key(name).unlink()
            _fsync_dir(self.root / "keys")  # an erased key stays erased after a crash
        except FileNotFoundError:  # not stored, or another writer deleted it first
            return False
        except OSError as err:
            raise StorageError(
                f"could not delete a key in `{self.root}`: {err.strerror}",
                code="D004",
                hint="check the directory's permissions",
            ) from None
        return True

    def _key(self, name: str) -> Path:
        return self.root / "keys" / base64.urlsafe_b64encode(name.encode()).decode()

    def close(self) -> None:
        pass


def _publish(path: Path, data: bytes, *, replace: bool) -> None:
    """Write ``data`` durably at ``path``, whole or not at all, by way of a temporary file of
    its own in the same directory. ``replace``: rename over whatever is there; otherwise a
    file already at ``path`` is kept (``FileExistsError`` is swallowed: it is not an error)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:32]}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    if replace:
        _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    """Make a directory's new entries durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _drop_torn_tail(f: Any) -> None:
    """Cut off a last line a crash left half-written: it was never acknowledged."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    if size == 0:
        return
    f.seek(size - 1)
    if f.read(1) == b"\n":
        return
    f.seek(max(size - 65536, 0))
    tail = f.read()
    keep = size - len(tail) + tail.rfind(b"\n") + 1
    f.truncate(keep)


def _last(f: Any) -> tuple[int, bytes | None]:
    """The sequence number and record of the last complete line of the log (0, None when empty)."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    if size == 0:
        return 0, None
    step = 65536
    while True:  # read back far enough to hold the whole last line
        f.seek(max(size - step, 0))
        tail = f.read().split(b"\n")
        complete = [line for line in tail[:-1] if line.strip()]
        if len(complete) > 1 or step >= size:
            break
        step *= 4
    if not complete:
        return 0, None
    item = json.loads(complete[-1])
    return int(item["seq"]), base64.b64decode(item["data"])


@hookimpl
def charter_storage(url: str) -> Store | None:
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme in ("sqlite", "postgresql"):
        from charter_plugins.sql import SqlStore  # SQLAlchemy only when a SQL store is opened

        return SqlStore(url)
    if scheme == "jsonl":
        return JsonlStore(url)
    return None


def __getattr__(name: str) -> Any:
    """``SqlStore``, importable from here as before, imported on first use."""
    if name == "SqlStore":
        from charter_plugins.sql import SqlStore

        return SqlStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["JsonlStore", "SqlStore"]
