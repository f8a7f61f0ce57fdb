"""Health reports from the fleet, kept in the repository's database.

After an install, update, health check, rollback or refusal, a client that
opted in sends one report: package, from, to, result, exit code, reason, and
its random client id; nothing else. The server keeps the newest
``MAX_ROWS`` (in ``private/reports.sqlite``, or the PostgreSQL server the
configuration names: `custody.repository.database`) and summarizes them per
package version, which is what halts a rollout whose new version fails its
health checks on too many hosts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from custody.repository.config import RepoConfig
from custody.repository.database import Database
from custody.repository.errors import InvalidReleaseError
from custody.repository.storage import RepoPaths

MAX_ROWS = 200_000
RESULTS = ("installed", "updated", "up-to-date", "skipped", "unhealthy", "rolled-back",
           "refused", "unreachable", "not-found", "failed", "interrupted")
#: Results that count as the new version failing on a host (what halts a rollout).
FAILURES = ("unhealthy",)
_FIELDS = {"package": 64, "from": 64, "to": 64, "result": 16, "reason": 300,
           "client_id": 64}


@dataclass
class Report:
    package: str
    from_version: str | None
    to_version: str | None
    result: str
    exit_code: int
    reason: str
    client_id: str

    @classmethod
    def from_dict(cls, data: Any) -> Report:
        """A report as a client sent it; refused (naming the field) when malformed."""
        if not isinstance(data, dict):
            raise InvalidReleaseError("a report must be a JSON object")
        unknown = set(data) - set(_FIELDS) - {"exit_code"}
        if unknown:
            raise InvalidReleaseError(f"a report has no field {sorted(unknown)[0]!r}")
        for name, limit in _FIELDS.items():
            value = data.get(name)
            if value is not None and (not isinstance(value, str) or len(value) > limit):
                raise InvalidReleaseError(f"report field {name!r} must be a string of at "
                                          f"most {limit} characters")
        for name in ("package", "result", "client_id"):
            if not data.get(name):
                raise InvalidReleaseError(f"report field {name!r} is required")
        if data["result"] not in RESULTS:
            raise InvalidReleaseError(f"report field 'result' must be one of "
                                      f"{', '.join(RESULTS)}")
        code = data.get("exit_code", 0)
        if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= 255:
            raise InvalidReleaseError("report field 'exit_code' must be 0 to 255")
        return cls(data["package"], data.get("from"), data.get("to"), data["result"], code,
                   data.get("reason") or "", data["client_id"])


@dataclass
class Summary:
    """What the hosts reported about one version of a package (latest report per host)."""

    hosts: int
    successes: int
    failures: dict[str, int]

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def failure_rate(self) -> float:
        return self.failed / self.hosts if self.hosts else 0.0


class ReportStore:
    """The ``reports`` table: one table, bounded."""

    def __init__(self, database: Database, owned: bool = True) -> None:
        self._db = database
        self._owned = owned  # a server connection a web worker keeps is not closed here
        if database.kind == "sqlite" or not database.has_table("reports"):
            self.create(database)

    @staticmethod
    def create(database: Database) -> None:
        """The table and its index (a server's are made once, by custody-repo database set)."""
        database.execute(
            "CREATE TABLE IF NOT EXISTS reports (id INTEGER PRIMARY KEY, received REAL, "
            "client_id TEXT, package TEXT, from_version TEXT, to_version TEXT, result TEXT, "
            "exit_code INTEGER, reason TEXT)")
        database.execute("CREATE INDEX IF NOT EXISTS by_version ON reports "
                         "(package, to_version)")

    @classmethod
    def open(cls, paths: RepoPaths, shared: Database | None = None,
             config: RepoConfig | None = None) -> ReportStore:
        """The store of the repository at ``paths``, where its configuration puts it.

        ``shared``: a server connection the caller keeps (a web worker's: opening one
        costs PostgreSQL a process, about 9 ms here, more than the insert); ``config``:
        the configuration it holds, so a request does not read it again.
        """
        if shared is not None:
            return cls(shared, owned=False)
        return cls(Database.open(paths.private, (config or RepoConfig.load(paths)).database))

    def close(self) -> None:
        if self._owned:
            self._db.close()

    def add(self, reports: Iterable[Report]) -> int:
        rows = [(time.time(), r.client_id, r.package, r.from_version, r.to_version, r.result,
                 r.exit_code, r.reason) for r in reports]
        with self._db.transaction():
            self._db.executemany(
                "INSERT INTO reports (received, client_id, package, from_version, to_version,"
                " result, exit_code, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self._db.execute("DELETE FROM reports WHERE id <= (SELECT MAX(id) FROM reports) - ?",
                             (MAX_ROWS,))
        return len(rows)

    def summary(self, package: str, version: str) -> Summary:
        """The latest report of each host that moved (or tried to move) to ``version``."""
        rows = self._db.execute(
            "SELECT result, reason FROM reports r WHERE package = ? AND to_version = ? AND "
            "id = (SELECT MAX(id) FROM reports WHERE client_id = r.client_id AND package = ?"
            " AND to_version = ?)", (package, version, package, version)).fetchall()
        failures: dict[str, int] = {}
        successes = 0
        for result, reason in rows:
            if result in FAILURES:
                key = f"{result}: {reason}"[:120]
                failures[key] = failures.get(key, 0) + 1
            elif result in ("installed", "updated", "up-to-date"):
                successes += 1
        return Summary(successes + sum(failures.values()), successes, failures)

    def recent(self, limit: int = 20, results: tuple[str, ...] = ("refused",)) -> list[dict]:
        marks = ",".join("?" * len(results))
        rows = self._db.execute(
            f"SELECT received, client_id, package, from_version, to_version, result, reason "
            f"FROM reports WHERE result IN ({marks}) ORDER BY id DESC LIMIT ?",
            (*results, limit)).fetchall()
        keys = ("received", "client_id", "package", "from", "to", "result", "reason")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM reports").fetchone()[0]

    def by_result(self) -> dict[str, int]:
        """How many stored reports say each result (for /metrics)."""
        rows = self._db.execute("SELECT result, COUNT(*) FROM reports GROUP BY result")
        return {result: count for result, count in rows.fetchall()}

    #: The columns of a stored report, in `rows` and `restore` order.
    COLUMNS = ("received", "client_id", "package", "from_version", "to_version", "result",
               "exit_code", "reason")

    def rows(self) -> list[tuple]:
        """Every stored report, oldest first, with the time it was received."""
        return self._db.execute(f"SELECT {', '.join(self.COLUMNS)} FROM reports "
                                "ORDER BY id").fetchall()

    def restore(self, rows: list[tuple]) -> int:
        """Store reports `rows` gave (another store's), keeping when they were received."""
        if rows:
            marks = ", ".join("?" * len(self.COLUMNS))
            with self._db.transaction():
                self._db.executemany(f"INSERT INTO reports ({', '.join(self.COLUMNS)}) "
                                     f"VALUES ({marks})", rows)
        return len(rows)
