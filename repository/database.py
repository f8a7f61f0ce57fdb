"""Where the fleet's state lives: SQLite beside the private state, or a PostgreSQL server.

Health reports and, with PostgreSQL, API tokens are the repository's state
that is not TUF metadata: it grows with the fleet, and a second publisher
(another machine) must share it. SQLite (the standard library's) stays the
default, with nothing to install or run; naming a server in
``private/config.json`` (``"database": "postgresql://..."``, set by
``custody-repo database set``) moves that state there, through psycopg 3
(``pip install 'custody[postgresql]'``).

`Database` is the one place the two dialects differ: placeholders (``?``
for sqlite3, ``%s`` for psycopg), the auto-numbered key and the float type.
The stores above it (`custody.repository.reports`, `custody.repository.tokens`)
write plain SQL with ``?``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from custody.repository.errors import RepositoryError

SQLITE_FILE = "reports.sqlite"
SCHEMES = ("postgresql://", "postgres://")


class DatabaseError(RepositoryError):
    """The configured database cannot be reached or refused a statement."""


class Database:
    """A DB-API connection, and what its dialect spells differently."""

    def __init__(self, connection: Any, kind: str, where: str) -> None:
        self._db = connection
        self.kind = kind
        self.where = where  # for messages: a path, or the server without its password

    # -- opening ----------------------------------------------------------------
    @classmethod
    def sqlite(cls, path: Path) -> Database:
        db = sqlite3.connect(path, timeout=30, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        return cls(db, "sqlite", str(path))

    @classmethod
    def postgresql(cls, url: str) -> Database:
        psycopg = driver()
        where = redact(url)
        try:
            connection = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot reach the database {where}: "
                                f"{str(exc).strip().splitlines()[0]}") from exc
        return cls(connection, "postgresql", where)

    @classmethod
    def open(cls, private: Path, url: str | None) -> Database:
        """The configured server, else the SQLite file in ``private``."""
        if url:
            if not url.startswith(SCHEMES):
                raise DatabaseError(f"database {redact(url)} is not a postgresql:// URL")
            return cls.postgresql(url)
        return cls.sqlite(private / SQLITE_FILE)

    def close(self) -> None:
        self._db.close()

    @property
    def usable(self) -> bool:
        """False once closed, or broken (a server restarted under a kept connection)."""
        return not (self._db.closed or getattr(self._db, "broken", False))

    # -- the dialect ---------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        if self.kind == "sqlite":
            return sql
        return (sql.replace("?", "%s")
                .replace("INTEGER PRIMARY KEY", "BIGSERIAL PRIMARY KEY")
                .replace(" REAL", " DOUBLE PRECISION"))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; its cursor (``fetchone``/``fetchall``)."""
        try:
            return self._db.execute(self._sql(sql), params)
        except Exception as exc:
            if self.kind == "sqlite" and isinstance(exc, sqlite3.Error):
                raise
            raise DatabaseError(f"the database {self.where} refused a statement: "
                                f"{str(exc).strip().splitlines()[0]}") from exc

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if self.kind == "sqlite":
            self._db.executemany(sql, rows)
        else:
            with self._db.cursor() as cursor:
                cursor.executemany(self._sql(sql), rows)

    def has_table(self, name: str) -> bool:
        """Whether the server has the table: DDL on every request would take its locks."""
        return self.execute("SELECT to_regclass(?) IS NOT NULL", (name,)).fetchone()[0]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing, in either dialect."""
        if self.kind == "sqlite":
            with self._db:
                yield
        else:
            with self._db.transaction():
                yield


def driver() -> Any:
    """psycopg, or the one sentence that says how to install it (an optional extra)."""
    try:
        import psycopg
    except ImportError as exc:
        raise DatabaseError("PostgreSQL needs psycopg: pip install 'custody[postgresql]'") \
            from exc
    return psycopg


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))
