"""The SQL storage backends, ``sqlite`` and ``postgresql``, through SQLAlchemy Core.

Kept apart from ``charter_plugins.storage`` so that SQLAlchemy (a large import) is loaded only
when a SQL store is opened, not whenever the plugins are registered.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from engine.storage import Link, StorageError, check_digest

T = TypeVar("T")

try:  # the errors of the drivers the bulk paths call directly, past SQLAlchemy
    from psycopg import Error as _PsycopgError

    _DRIVER_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, _PsycopgError)
except ImportError:  # pragma: no cover - PostgreSQL support not installed
    _DRIVER_ERRORS = (sqlite3.Error,)
_CAUGHT: tuple[type[Exception], ...] = (exc.DBAPIError, *_DRIVER_ERRORS)


def _as_dbapi(err: Exception) -> exc.DBAPIError:
    """A driver's own error as SQLAlchemy would have raised it (its class named as the driver's)."""
    kind = getattr(exc, type(err).__name__, exc.DBAPIError)
    cls = kind if isinstance(kind, type) and issubclass(kind, exc.DBAPIError) else exc.DBAPIError
    return cls(None, None, err)


BUSY_TIMEOUT = 30.0  # seconds SQLite waits for another connection's lock before it reports busy
ATTEMPTS = 10  # tries of a transaction that met a busy database (or a PostgreSQL deadlock)

_META = sa.MetaData()
_BLOBS = sa.Table(
    "charter_blobs",
    _META,
    sa.Column("kind", sa.String(64), primary_key=True),
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)
_RECORDS = sa.Table(
    "charter_records",
    _META,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)
_NAME_LENGTH = 200  # characters of a key's name the table holds (tables made before stay as they are)
_KEYS = sa.Table(
    "charter_keys",
    _META,
    sa.Column("name", sa.String(_NAME_LENGTH), primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)
_DIGESTED = "~sha256:"  # a stored name standing for a name the column cannot hold as it is


def _raw(value: object) -> bytes:
    """A stored value as bytes. A row edited by hand through SQL can hold text (SQLite's `||`
    makes text of a BLOB), or a number: it is read as its text's UTF-8 bytes, so verify
    reports it altered rather than failing on it."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode("utf-8", "surrogatepass")


def _stored_name(name: str) -> str:
    """The name a key is stored under: ``name`` itself when the column holds it as it is (at
    most 200 characters, UTF-8, no NUL, not looking like a digest name); otherwise ``~sha256:``
    and the SHA-256 of the name, so any name fits and two names never meet."""
    if len(name) <= _NAME_LENGTH and "\x00" not in name and not name.startswith(_DIGESTED):
        try:
            name.encode()
            return name
        except UnicodeEncodeError:
            pass
    return _DIGESTED + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()


class SqlStore:
    """SQLite (WAL mode, synchronous FULL) or PostgreSQL through SQLAlchemy Core.

    Safe to share between threads, and several stores (in several processes) may use one
    database. On SQLite every transaction that writes begins ``BEGIN IMMEDIATE``: it takes
    the write lock before it reads, waiting for it (``busy_timeout``), instead of starting as
    a reader and failing at once when it then writes while another connection holds the lock.
    A transaction that still meets a busy database (SQLite) or a deadlock (PostgreSQL) is
    rolled back and tried again whole, a few times with a growing pause, so ``append_linked``
    may call ``link`` again for a batch (with the record then last).

    An in-memory SQLite database (``sqlite://``, ``sqlite:///:memory:``, ``mode=memory``) is
    refused (D007): what is logged there is gone when the store is closed. ``memory=True``
    allows one, for a caller that wants exactly that. A new SQLite database file is created
    mode 0600 (its ``-wal`` and ``-shm`` files take the same mode).
    """

    def __init__(self, url: str, *, memory: bool = False) -> None:
        self.url = url
        self._file: Path | None = None
        try:
            parsed = sa.engine.make_url(url.replace("postgresql://", "postgresql+psycopg://", 1))
            if parsed.get_backend_name() == "sqlite":  # before the engine: it is refused, or made 0600
                self._file = _sqlite_file(url, parsed, memory=memory)
            self.engine = sa.create_engine(parsed)
        except exc.SQLAlchemyError as err:
            raise _cannot_open(url, err.__class__.__name__) from None
        self.sqlite = self.engine.dialect.name == "sqlite"
        if self.sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # transactions begin here: BEGIN IMMEDIATE for those of `self._writer`
            event.listen(self.engine, "begin", _sqlite_begin)
        self._writer = self.engine.execution_options(immediate=True)
        self._insert = sqlite_insert if self.sqlite else postgresql_insert
        try:
            if not self._transact("read its tables", _has_tables, write=False):
                self._transact("create its tables", self._create_tables)
        except StorageError as err:
            self.engine.dispose()
            if err.code == "D006":  # busy all along: its own message says so
                raise
            raise _cannot_open(url, err.message.split(": ", 1)[-1]) from None  # the database's error

    def _create_tables(self, conn: sa.Connection) -> None:
        """Under the write lock (SQLite) or an advisory lock (PostgreSQL): stores opened at the
        same moment create the tables once."""
        if not self.sqlite:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(7405001)"))
        for table in _META.sorted_tables:
            conn.execute(sa.schema.CreateTable(table, if_not_exists=True))

    def _transact(self, what: str, work: Callable[[sa.Connection], T], *, write: bool = True) -> T:
        """``work`` in one transaction (a writing one: BEGIN IMMEDIATE on SQLite), committed;
        tried again when the database was busy."""
        started, pause = time.monotonic(), 0.005
        for attempt in range(1, ATTEMPTS + 1):
            try:
                if write:
                    with self._writer.begin() as conn:
                        return work(conn)
                with self.engine.connect() as conn:  # reads: no commit needed
                    return work(conn)
            except _CAUGHT as raised:
                err = raised if isinstance(raised, exc.DBAPIError) else _as_dbapi(raised)
                if not _busy(err):
                    raise _wrap(err, what) from None
                if attempt == ATTEMPTS or time.monotonic() - started >= BUSY_TIMEOUT:
                    raise StorageError(
                        f"could not {what}: the store `{_safe(self.url)}` stayed busy"
                        f" ({attempt} attempts in {time.monotonic() - started:.0f} s)",
                        code="D006",
                        hint="another connection held the database's lock too long: look for a stuck "
                        "writer or a long transaction, then try again",
                    ) from None
            except exc.SQLAlchemyError as err:
                raise _wrap(err, what) from None
            time.sleep(pause * random.uniform(0.5, 1.5))  # storage, not evaluation: jitter allowed
            pause = min(pause * 2, 0.5)
        raise AssertionError("unreachable")  # pragma: no cover

    def put_blob(self, kind: str, digest: str, data: bytes) -> None:
        check_digest(digest, data)
        if self._has_blob(kind, digest):  # the usual case: stored already, no write lock taken
            return
        insert = self._insert(_BLOBS).values(kind=kind, digest=digest, data=data).on_conflict_do_nothing()
        self._transact("store a blob", lambda conn: conn.execute(insert))  # another writer's copy: kept

    def _has_blob(self, kind: str, digest: str) -> bool:
        query = sa.select(_BLOBS.c.digest).where(_BLOBS.c.kind == kind, _BLOBS.c.digest == digest)
        return self._transact("read a blob", lambda conn: conn.execute(query).first() is not None, write=False)

    def get_blob(self, kind: str, digest: str) -> bytes | None:
        query = sa.select(_BLOBS.c.data).where(_BLOBS.c.kind == kind, _BLOBS.c.digest == digest)
        row = self._transact("read a blob", lambda conn: conn.execute(query).first(), write=False)
        return _raw(row[0]) if row is not None else None

    def append(self, records: Sequence[bytes]) -> list[int]:
        if not records:
            return []
        insert = _RECORDS.insert().returning(_RECORDS.c.seq, sort_by_parameter_order=True)
        rows = [{"data": r} for r in records]
        # one transaction: all or nothing, durable at commit
        return self._transact("append records", lambda conn: [int(r[0]) for r in conn.execute(insert, rows)])

    def append_linked(self, bodies: Sequence[bytes], link: Link) -> list[int]:
        if not bodies:
            return []

        append = _sqlite_append_linked if self.sqlite else _postgresql_append_linked
        return self._transact("append records", lambda conn: append(conn, bodies, link))

    def add_keys(self, keys: Mapping[str, bytes]) -> dict[str, bytes]:
        if not keys:
            return {}
        # in name order, so two writers adding overlapping keys cannot deadlock (PostgreSQL)
        stored = {_stored_name(n): n for n in keys}
        rows = [(s, keys[stored[s]]) for s in sorted(stored)]
        insert = (
            "INSERT INTO charter_keys (name, data) VALUES (?, ?) ON CONFLICT DO NOTHING"
            if self.sqlite
            else "INSERT INTO charter_keys (name, data) VALUES (%s, %s) ON CONFLICT DO NOTHING"
        )

        def work(conn: sa.Connection) -> dict[str, bytes]:  # a stored key stays: the first writer's wins
            driver = conn.connection.driver_connection
            assert driver is not None  # an open connection's sqlite3 or psycopg connection
            cursor = driver.cursor()
            try:
                cursor.executemany(insert, rows)  # the driver's bulk path
                inserted = cursor.rowcount
            finally:
                cursor.close()
            if inserted == len(rows):  # every key is the one given: nothing to read back
                return dict(keys)
            return self._select_keys(conn, list(keys))

        return self._transact("store keys", work)

    def get_keys(self, names: Sequence[str]) -> dict[str, bytes]:
        return self._transact("read keys", lambda conn: self._select_keys(conn, names), write=False)

    @staticmethod
    def _select_keys(conn: sa.Connection, names: Sequence[str]) -> dict[str, bytes]:
        wanted = {_stored_name(n): n for n in names}  # stored name -> the name asked for
        stored = list(wanted)
        found: dict[str, bytes] = {}
        for i in range(0, len(stored), 500):
            query = sa.select(_KEYS.c.name, _KEYS.c.data).where(_KEYS.c.name.in_(stored[i : i + 500]))
            found.update((wanted[str(n)], _raw(d)) for n, d in conn.execute(query))
        return found

    def delete_key(self, name: str) -> bool:
        delete = _KEYS.delete().where(_KEYS.c.name == _stored_name(name))
        return self._transact("delete a key", lambda conn: bool(conn.execute(delete).rowcount))

    def rewrap_keys(self, rewrap: Callable[[bytes], bytes | None], delete: Sequence[str] = ()) -> tuple[int, int]:
        gone = sorted({_stored_name(n) for n in delete})
        update = _KEYS.update().where(_KEYS.c.name == sa.bindparam("n")).values(data=sa.bindparam("d"))

        def work(conn: sa.Connection) -> tuple[int, int]:
            if not self.sqlite:  # writers of keys wait (SQLite: BEGIN IMMEDIATE holds them off); readers go on
                conn.execute(sa.text("LOCK TABLE charter_keys IN EXCLUSIVE MODE"))
            deleted = 0
            for i in range(0, len(gone), 500):
                deleted += conn.execute(_KEYS.delete().where(_KEYS.c.name.in_(gone[i : i + 500]))).rowcount
            rows = conn.execute(sa.select(_KEYS.c.name, _KEYS.c.data)).all()
            changed = [{"n": n, "d": new} for n, d in rows if (new := rewrap(_raw(d))) is not None]
            if changed:
                conn.execute(update, changed)
            return deleted, len(changed)

        done = self._transact("re-wrap keys", work)
        if self.sqlite:
            self._checkpoint()
        return done

    def _checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it (SQLite), so that the page images
        it held of deleted or replaced rows go; a reader in a transaction holding it keeps
        it as it is (what it holds is then wrapped under a destroyed key)."""
        raw = self.engine.raw_connection()
        try:
            driver = raw.driver_connection
            assert driver is not None
            with contextlib.suppress(sqlite3.Error):
                driver.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            raw.close()

    def keyring_path(self) -> Path | None:
        """Beside a SQLite database file (``<file>.keyring``); None for PostgreSQL."""
        return self._file.with_name(self._file.name + ".keyring") if self._file is not None else None

    def read(self, after: int = 0, limit: int | None = None) -> Iterator[tuple[int, bytes]]:
        query = sa.select(_RECORDS.c.seq, _RECORDS.c.data).where(_RECORDS.c.seq > after).order_by(_RECORDS.c.seq)
        if limit is not None:
            query = query.limit(limit)
        rows = self._transact("read records", lambda conn: conn.execute(query).all(), write=False)
        for seq, data in rows:
            yield int(seq), _raw(data)

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_append_linked(conn: sa.Connection, bodies: Sequence[bytes], link: Link) -> list[int]:
    """``append_linked`` on SQLite, on the driver's own bulk path (``executemany``), inside the
    transaction ``conn`` began (BEGIN IMMEDIATE: the write lock is held, so the rows inserted
    are the ones after the last row read, in order)."""
    driver = conn.connection.driver_connection
    assert driver is not None  # an open connection's sqlite3 connection
    cursor = driver.cursor()
    try:
        row = cursor.execute("SELECT seq, data FROM charter_records ORDER BY seq DESC LIMIT 1").fetchone()
        last, prev = (int(row[0]), _raw(row[1])) if row is not None else (0, None)
        rows = []
        for body in bodies:
            prev = link(prev, body)
            rows.append((prev,))
        cursor.executemany("INSERT INTO charter_records (data) VALUES (?)", rows)
        after = cursor.execute("SELECT seq FROM charter_records WHERE seq > ? ORDER BY seq", (last,))
        seqs = [int(r[0]) for r in after]
    finally:
        cursor.close()
    if len(seqs) != len(bodies):  # pragma: no cover - the write lock makes this impossible
        raise StorageError("the log changed while records were appended", code="D004")
    return seqs


def _postgresql_append_linked(conn: sa.Connection, bodies: Sequence[bytes], link: Link) -> list[int]:
    """``append_linked`` on PostgreSQL, on the driver's bulk path (``COPY``), inside the
    transaction ``conn`` began, holding the table's lock (one writer at a time; readers go on):
    the rows after the last row read are this batch's, numbered in the order they were copied."""
    driver = conn.connection.driver_connection
    assert driver is not None  # an open connection's psycopg connection
    with driver.cursor() as cursor:
        cursor.execute("LOCK TABLE charter_records IN EXCLUSIVE MODE")
        row = cursor.execute("SELECT seq, data FROM charter_records ORDER BY seq DESC LIMIT 1").fetchone()
        last, prev = (int(row[0]), _raw(row[1])) if row is not None else (0, None)
        with cursor.copy("COPY charter_records (data) FROM STDIN") as copy:
            for body in bodies:
                prev = link(prev, body)
                copy.write_row((prev,))
        after = cursor.execute("SELECT seq FROM charter_records WHERE seq > %s ORDER BY seq", (last,))
        seqs = [int(r[0]) for r in after]
    if len(seqs) != len(bodies):  # pragma: no cover - the table's lock makes this impossible
        raise StorageError("the log changed while records were appended", code="D004")
    return seqs


def _sqlite_file(given: str, url: sa.engine.URL, *, memory: bool) -> Path | None:
    """Refuse an in-memory database (unless ``memory``); create a missing database file mode
    0600 before SQLite opens it, so that it (and its ``-wal`` and ``-shm`` files, which SQLite
    makes with the database's mode) is its owner's only. Returns the file (None: in memory)."""
    database = url.database or ""
    uri = str(url.query.get("uri", "")).lower() in ("true", "1")
    in_memory = database in ("", ":memory:") or (
        uri and (database.startswith("file::memory:") or url.query.get("mode") == "memory")
    )
    if in_memory:
        if memory:
            return None
        raise StorageError(
            f"the store `{given}` is an in-memory database: decisions logged there would be lost when it is closed",
            code="D007",
            hint="give a database file, like `sqlite:///charter.db`",
        )
    path = database.removeprefix("file:") if uri else database
    # a file there already keeps its mode; SQLite reports what else is wrong when it opens it
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return Path(path).absolute()


def _has_tables(conn: sa.Connection) -> bool:
    return set(_META.tables) <= set(sa.inspect(conn).get_table_names())


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("immediate") else "BEGIN")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's `begin` event issues BEGIN (IMMEDIATE) itself
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
        # WAL is kept in the database file: set once, by the first connection. Switching takes an
        # exclusive lock without waiting for it, so connections opening a new database at the same
        # moment may find it busy: try again (a connection that fails is retried by `_transact`)
        pause = 0.005
        for attempt in range(ATTEMPTS):
            try:
                if cursor.execute("PRAGMA journal_mode").fetchone()[0] in ("wal", "memory"):
                    break
                cursor.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as err:
                if not _sqlite_busy(err) or attempt == ATTEMPTS - 1:
                    raise
            time.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(pause * 2, 0.5)
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA secure_delete=ON")  # a deleted or replaced row's bytes are overwritten
    finally:
        cursor.close()


def _sqlite_busy(err: Exception) -> bool:
    code = getattr(err, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (and their extended codes)
    return "locked" in str(err) or "busy" in str(err)


def _busy(err: exc.DBAPIError) -> bool:
    """Whether trying the transaction again may succeed: SQLite was busy, or PostgreSQL found a
    deadlock or a serialization failure."""
    if getattr(err.orig, "sqlstate", None) in ("40001", "40P01"):
        return True
    return isinstance(err.orig, sqlite3.Error) and _sqlite_busy(err.orig)


def _cannot_open(url: str, why: str) -> StorageError:
    return StorageError(
        f"cannot open the store `{_safe(url)}`: {why}",
        code="D003",
        hint="check the URL, and that the database is running and writable",
    )


def _safe(url: str) -> str:
    """The URL without a password."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return url.split("@")[-1]


def _wrap(err: exc.SQLAlchemyError, what: str) -> StorageError:
    return StorageError(
        f"could not {what}: {err.__class__.__name__}: {str(err.orig if hasattr(err, 'orig') else err)[:200]}",
        code="D004",
        hint="check that the database is reachable and not read-only or full",
    )


__all__ = ["SqlStore"]
