"""Built-in storage backends: ``sqlite`` and ``postgresql`` (SQLAlchemy) and ``jsonl`` (a file).

All three keep the ``engine.storage.Store`` contract; the test suite runs one set of tests
over each (PostgreSQL against a real server it starts). The SQL ones live in
``charter_plugins.sql``, imported when a SQL store is first opened (or ``SqlStore`` is first
asked of this module): registering the plugins does not import SQLAlchemy.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.hookspecs import hookimpl
from engine.storage import Link, StorageError, Store, check_digest, fsync_dir

if TYPE_CHECKING:
    from charter_plugins.sql import SqlStore


class JsonlStore:
    """An append-only JSON Lines file plus one file per blob, in a directory.

    ``append`` holds an exclusive ``flock`` on the log while it writes, then fsyncs, so
    several processes can append without interleaving and an acknowledged record is on disk.

    What it creates is its owner's only: the directory, ``blobs/`` and ``keys/`` mode 0700,
    the log and every blob and key file mode 0600 (directories and files already there keep
    their modes). A key file is named by the SHA-256 of the key's name, whatever the name
    (``_key``); one written by an earlier version under the base64 of its name is still read
    and erased.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.root = Path(url.split("://", 1)[1] or ".")
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            (self.root / "blobs").mkdir(mode=0o700, exist_ok=True)
            self.log = self.root / "log.jsonl"
            os.close(os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
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
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
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
                    try:
                        last, prev = _last(f)
                    except (ValueError, KeyError, TypeError):
                        raise StorageError(
                            f"cannot append to `{self.log}`: its last line is not a stored record",
                            code="D008",
                            hint="the file was edited or damaged: `charter log verify` says where",
                        ) from None
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
        """The records after ``after``. A line that is not a stored record (cut short or
        edited) is given as an empty record numbered after the one before it, so the hash
        chain's check reports it there; a last line without its newline was never
        acknowledged and is not given (``partial_tail`` tells whether there is one)."""
        count, seq = 0, 0
        with open(self.log, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break  # a write cut short by a crash: never acknowledged, not a record
                try:
                    item = json.loads(line)
                    seq, data = int(item["seq"]), base64.b64decode(item["data"], validate=True)
                except (ValueError, KeyError, TypeError):
                    seq, data = seq + 1, b""  # not a record: the chain's check says so, at its place
                if seq > after:
                    yield seq, data
                    count += 1
                    if limit is not None and count >= limit:
                        return

    def partial_tail(self) -> int:
        """The length in bytes of a last line without its newline: a write a crash cut short,
        never acknowledged, which ``read`` leaves out and the next append removes (0: none)."""
        try:
            with open(self.log, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                if size == 0:
                    return 0
                f.seek(max(size - 65536, 0))
                tail = f.read()
        except OSError:
            return 0
        if tail.endswith(b"\n"):
            return 0
        return len(tail) - tail.rfind(b"\n") - 1  # (a line longer than what is read back: at least that)

    def add_keys(self, keys: Mapping[str, bytes]) -> dict[str, bytes]:
        if not keys:
            return {}
        try:
            (self.root / "keys").mkdir(mode=0o700, exist_ok=True)
            for name, data in keys.items():
                path = self._key(name)
                # linked, not renamed, into place: another writer's key stays, as does one an
                # earlier version stored under its old file name
                if not path.exists() and self._legacy_key(name) is None:
                    _publish(path, data, replace=False)
            fsync_dir(self.root / "keys")
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
                continue
            legacy = self._legacy_key(name)
            if legacy is not None:
                with contextlib.suppress(FileNotFoundError):
                    found[name] = legacy.read_bytes()
        return found

    def delete_key(self, name: str) -> bool:
        deleted = False
        for path in (self._key(name), self._legacy_key(name)):  # both names: none may stay
            if path is None:
                continue
            try:
                path.unlink()
                deleted = True
            except FileNotFoundError:  # not stored, or another writer deleted it first
                continue
            except OSError as err:
                raise StorageError(
                    f"could not delete a key in `{self.root}`: {err.strerror}",
                    code="D004",
                    hint="check the directory's permissions",
                ) from None
        if deleted:
            fsync_dir(self.root / "keys")  # an erased key stays erased after a crash
        return deleted

    def rewrap_keys(self, rewrap: Callable[[bytes], bytes | None], delete: Sequence[str] = ()) -> tuple[int, int]:
        """Delete the keys named, then replace each other key file whole (written aside, renamed
        into place); a crash midway leaves some replaced and some not, each whole."""
        deleted = sum(self.delete_key(name) for name in delete)
        replaced = 0
        keys = self.root / "keys"
        try:
            for path in sorted(keys.iterdir()) if keys.is_dir() else []:
                if path.name.startswith(".") or not path.is_file():  # another writer's file being written
                    continue
                new = rewrap(path.read_bytes())
                if new is not None:
                    _publish(path, new, replace=True, sync_dir=False)
                    replaced += 1
            if replaced:
                fsync_dir(keys)  # once for all: every file replaced is durable before the old KEK goes
        except OSError as err:
            raise StorageError(
                f"could not re-wrap the keys in `{self.root}`: {err.strerror}",
                code="D004",
                hint="check free disk space and permissions",
            ) from None
        return deleted, replaced

    def keyring_path(self) -> Path:
        """Beside the store's directory (``<directory>.keyring``), not in it."""
        root = self.root.absolute()
        return root.with_name(root.name + ".keyring")

    def _key(self, name: str) -> Path:
        """The key file of ``name``: named by its SHA-256, 64 characters whatever the name."""
        return self.root / "keys" / hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()

    def _legacy_key(self, name: str) -> Path | None:
        """The file an earlier version stored ``name``'s key in (the base64 of the name), when
        there is one."""
        try:
            path = self.root / "keys" / base64.urlsafe_b64encode(name.encode()).decode()
            return path if path.exists() else None
        except UnicodeEncodeError:  # never storable under that scheme
            return None
        except OSError as err:
            if err.errno == errno.ENAMETOOLONG:  # never storable under that scheme either
                return None
            raise

    def close(self) -> None:
        pass


def _publish(path: Path, data: bytes, *, replace: bool, sync_dir: bool = True) -> None:
    """Write ``data`` durably at ``path``, whole or not at all, by way of a temporary file of
    its own in the same directory. ``replace``: rename over whatever is there; otherwise a
    file already at ``path`` is kept (``FileExistsError`` is swallowed: it is not an error).
    ``sync_dir=False``: the caller fsyncs the directory (once, after many)."""
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
    if replace and sync_dir:
        fsync_dir(path.parent)


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
    return int(item["seq"]), base64.b64decode(item["data"], validate=True)


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
