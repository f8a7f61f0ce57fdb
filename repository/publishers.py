"""The lock two publishers share: a PostgreSQL advisory lock, held for one transaction.

One machine serializes its writers with ``flock`` (`custody.repository.storage.locked`).
Two machines publishing to one bucket (docs/deploy.md, "Two publishers") also
share the PostgreSQL server that holds their fleet state, and take
``pg_advisory_xact_lock`` there for each transaction: publish, re-sign,
ceremony, gc, sync. The lock belongs to a database transaction on a
connection of its own, so it ends with it: at the commit, or when the
publisher dies and its connection closes (a killed process at once; a lost
machine when TCP keepalives give up on it).

Its key is derived from the repository's first root, which every publisher of
the repository holds and no other repository shares, so one server can
coordinate several repositories.

A lock that lives on a server can be lost while it is held: the server
restarts, or drops a connection it thinks is dead. `SharedLock.check` asks
the server before the one upload that makes a new state visible
(``timestamp.json``), so a publisher that lost the lock stops there rather
than overwrite what another has published since.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any

from custody.repository.database import SCHEMES, DatabaseError, driver, redact
from custody.repository.errors import LockedError
from custody.repository.storage import RepoPaths

#: Seconds of silence after which the server probes a publisher's connection, and gives
#: up on it (with the interval and count): how long a lost machine keeps the lock.
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
             "keepalives_count": 3}
SERVER_KEEPALIVE = ("-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 "
                    "-c tcp_keepalives_count=3")


class LockLostError(LockedError):
    """The shared lock ended while this publisher was writing (module docstring)."""


def lock_key(paths: RepoPaths) -> int:
    """The advisory lock's key: a signed 64-bit number from the repository's first root."""
    first = paths.metadata_file("root", 1)
    identity = first.read_bytes() if first.exists() else str(paths.root.resolve()).encode()
    digest = hashlib.sha256(b"custody-publisher\0" + identity).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class SharedLock:
    """The advisory lock, as held by this process: `check` before making a state visible."""

    def __init__(self, connection: Any, where: str) -> None:
        self._connection = connection
        self.where = where

    def check(self) -> None:
        """Raise `LockLostError` unless the server still holds the lock for us."""
        try:
            self._connection.execute("SELECT 1").fetchone()
        except Exception as exc:  # psycopg's errors, or a closed connection
            raise LockLostError(
                f"the publishers' lock on {self.where} was lost before the new state went up "
                f"({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
                "): nothing new is visible, and the next write here catches up with the bucket"
            ) from exc


@contextlib.contextmanager
def shared_lock(paths: RepoPaths, url: str | None, timeout: float = 120.0
                ) -> Iterator[SharedLock | None]:
    """Hold the publishers' advisory lock on ``url`` for the block (None: no server named).

    Waits up to ``timeout`` seconds for another publisher's transaction,
    then refuses with `LockedError`, as the local lock does.
    """
    if not url or not url.startswith(SCHEMES):
        yield None
        return
    psycopg = driver()
    where = redact(url)
    try:
        from psycopg.conninfo import make_conninfo

        conninfo = make_conninfo(url, connect_timeout=10, options=SERVER_KEEPALIVE,
                                 **KEEPALIVE)
        connection = psycopg.connect(conninfo, autocommit=False)
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot reach the database {where} for the publishers' lock: "
                            f"{str(exc).strip().splitlines()[0]}") from exc
    try:
        try:
            # A server-wide idle-in-transaction limit would end the lock while this
            # publisher uploads; the wait is bounded by lock_timeout instead.
            connection.execute("SET idle_in_transaction_session_timeout = 0")
            connection.execute(f"SET lock_timeout = {max(1, int(timeout * 1000))}")
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(paths),))
        except psycopg.errors.LockNotAvailable as exc:
            raise LockedError(f"another publisher has held the publishers' lock on {where} "
                              f"for more than {timeout:.0f} s; try again") from exc
        except psycopg.Error as exc:
            raise DatabaseError(f"the database {where} refused the publishers' lock: "
                                f"{str(exc).strip().splitlines()[0]}") from exc
        yield SharedLock(connection, where)
    finally:
        with contextlib.suppress(Exception):
            connection.rollback()  # ends the transaction, and with it the lock
        connection.close()
