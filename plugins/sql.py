"""The SQL storage backends, ``sqlite`` and ``postgresql``, through SQLAlchemy Core.

Kept apart from ``charter_plugins.storage`` so that SQLAlchemy (a large import) is loaded only
when a SQL store is opened, not whenever the plugins are registered.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from engine.storage import Link, StorageError, check_digest

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
_KEYS = sa.Table(
    "charter_keys",
    _META,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)


class SqlStore:
    """SQLite (WAL mode, synchronous FULL) or PostgreSQL through SQLAlchemy Core."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
            if self.engine.dialect.name == "sqlite":
                event.listen(self.engine, "connect", _sqlite_pragmas)
                # transactions begin here; `append_linked` takes SQLite's write lock at once
                # (BEGIN IMMEDIATE) so the last record it reads is still the last when it inserts
                event.listen(self.engine, "begin", _sqlite_begin)
            with self.engine.begin() as conn:
                if self.engine.dialect.name == "postgresql":  # writers starting together create once
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(7405001)"))
                _META.create_all(conn)
        except exc.SQLAlchemyError as err:
            raise StorageError(
                f"cannot open the store `{_safe(url)}`: {err.__class__.__name__}",
                code="D003",
                hint="check the URL, and that the database is running and writable",
            ) from None

    def put_blob(self, kind: str, digest: str, data: bytes) -> None:
        check_digest(digest, data)
        try:
            with self.engine.begin() as conn:
                if (
                    conn.execute(
                        sa.select(_BLOBS.c.digest).where(_BLOBS.c.kind == kind, _BLOBS.c.digest == digest)
                    ).first()
                    is None
                ):
                    conn.execute(_BLOBS.insert().values(kind=kind, digest=digest, data=data))
        except exc.IntegrityError:
            pass  # another writer stored the same content first
        except exc.SQLAlchemyError as err:
            raise _wrap(err, "store a blob") from None

    def get_blob(self, kind: str, digest: str) -> bytes | None:
        try:
            with self.engine.connect() as conn:
                row = conn.execute(
                    sa.select(_BLOBS.c.data).where(_BLOBS.c.kind == kind, _BLOBS.c.digest == digest)
                ).first()
        except exc.SQLAlchemyError as err:
            raise _wrap(err, "read a blob") from None
        return bytes(row[0]) if row is not None else None

    def append(self, records: Sequence[bytes]) -> list[int]:
        try:
            with self.engine.begin() as conn:  # one transaction: all or nothing, durable at commit
                if not records:
                    return []
                insert = _RECORDS.insert().returning(_RECORDS.c.seq, sort_by_parameter_order=True)
                return [int(r[0]) for r in conn.execute(insert, [{"data": r} for r in records])]
        except exc.SQLAlchemyError as err:
            raise _wrap(err, "append records") from None

    def append_linked(self, bodies: Sequence[bytes], link: Link) -> list[int]:
        try:
            with self.engine.execution_options(immediate=True).begin() as conn:
                if self.engine.dialect.name == "postgresql":  # one writer at a time; readers go on
                    conn.execute(sa.text("LOCK TABLE charter_records IN EXCLUSIVE MODE"))
                row = conn.execute(sa.select(_RECORDS.c.data).order_by(_RECORDS.c.seq.desc()).limit(1)).first()
                prev = bytes(row[0]) if row is not None else None
                rows = []
                for body in bodies:
                    prev = link(prev, body)
                    rows.append({"data": prev})
                if not rows:
                    return []
                insert = _RECORDS.insert().returning(_RECORDS.c.seq, sort_by_parameter_order=True)
                return [int(r[0]) for r in conn.execute(insert, rows)]  # one batched statement
        except exc.SQLAlchemyError as err:
            raise _wrap(err, "append records") from None

    def add_keys(self, keys: Mapping[str, bytes]) -> dict[str, bytes]:
        if not keys:
            return {}
        insert = (sqlite_insert if self.engine.dialect.name == "sqlite" else postgresql_insert)(_KEYS)
        try:
            with self.engine.begin() as conn:  # a stored key stays: the first writer's key wins
                conn.execute(insert.on_conflict_do_nothing(), [{"name": n, "data": d} for n, d in keys.items()])
                return self._select_keys(conn, list(keys))
        except exc.SQLAlchemyError as err:
            raise _wrap(err, "store keys") from None

    def get_keys(self, names: Sequence[str]) -> dict[str, bytes]:
        try:
            with self.engine.connect() as conn:
                return self._select_keys(conn, names)
        except exc.SQLAlchemyError as err:
            raise _wrap(err, "read keys") from None

    @staticmethod
    def _select_keys(conn: sa.Connection, names: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for i in range(0, len(names), 500):
            query = sa.select(_KEYS.c.name, _KEYS.c.data).where(_KEYS.c.name.in_(names[i : i + 500]))
            found.update((str(n), bytes(d)) for n, d in conn.execute(query))
        return found

    def delete_key(self, name: str) -> bool:
        try:
            with self.engine.begin() as conn:
                return bool(conn.execute(_KEYS.delete().where(_KEYS.c.name == name)).rowcount)
        except exc.SQLAlchemyError as err:
            raise _wrap(err, "delete a key") from None

    def read(self, after: int = 0, limit: int | None = None) -> Iterator[tuple[int, bytes]]:
        query = sa.select(_RECORDS.c.seq, _RECORDS.c.data).where(_RECORDS.c.seq > after).order_by(_RECORDS.c.seq)
        if limit is not None:
            query = query.limit(limit)
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
        except exc.SQLAlchemyError as err:
            raise _wrap(err, "read records") from None
        for seq, data in rows:
            yield int(seq), bytes(data)

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("immediate") else "BEGIN")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's `begin` event issues BEGIN IMMEDIATE itself
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


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
