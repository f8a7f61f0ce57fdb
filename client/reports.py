"""Health reports to the repository: opt-in, queued on disk, never in the update's way.

After an install, update, health check, rollback or refusal, a client whose
configuration has a report URL and token (``custody init --report-url URL
--report-token T``) sends one report per package: package, from, to, result,
exit code, reason and its random client id; nothing else. Reports go to a
bounded queue (``<home>/reports.jsonl``, the newest ``MAX_QUEUED`` kept) and
are sent after the operation has finished and printed its outcome, with a
short timeout; what the server does not take stays queued for the next
command. Nothing here can change an update or its exit code.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from custody.client.config import ClientConfig
from custody.client.errors import (
    ClientError,
    HealthCheckError,
    Interrupted,
    PackageNotFoundError,
    RepositoryUnreachable,
)
from custody.intoto.files import file_lock, write_atomic

log = logging.getLogger(__name__)
MAX_QUEUED = 500
BATCH = 100
TIMEOUT = 2.0


def queue_path(home: Path) -> Path:
    return home / "reports.jsonl"


def report(config: ClientConfig, package: str, result: str, exit_code: int = 0,
           from_version: str | None = None, to_version: str | None = None,
           reason: str = "") -> dict[str, Any]:
    return {"package": package, "from": from_version, "to": to_version, "result": result,
            "exit_code": exit_code, "reason": reason[:300], "client_id": config.client_id}


def for_outcome(config: ClientConfig, outcome: Any, verb: str) -> dict[str, Any] | None:
    """The report of a finished operation (None for a poll that changed nothing)."""
    if outcome.changed:
        return report(config, outcome.name, verb, 0, outcome.previous, outcome.version)
    if "known bad" in outcome.note:
        return report(config, outcome.name, "skipped", 0, outcome.version, None,
                      outcome.note)
    return None


def for_error(config: ClientConfig, package: str, error: BaseException,
              installed: str | None = None) -> dict[str, Any]:
    """The report of an operation that failed (one sentence, as printed)."""
    if isinstance(error, HealthCheckError):
        return report(config, package, "unhealthy", error.exit_code, error.previous,
                      error.version, error.reason)
    if isinstance(error, Interrupted):
        return report(config, package, "interrupted", error.exit_code, installed, None)
    kind = ("unreachable" if isinstance(error, RepositoryUnreachable) else
            "not-found" if isinstance(error, PackageNotFoundError) else
            "failed" if isinstance(error, ClientError) and error.exit_code != 1 else "refused")
    return report(config, package, kind, getattr(error, "exit_code", 1), installed, None,
                  str(error))


def record(home: Path, config: ClientConfig, reports: Sequence[dict[str, Any] | None]) -> None:
    """Queue ``reports`` and send what is queued; any failure is logged, never raised."""
    if not config.report_url or not config.report_token:
        return
    try:
        _enqueue(home, [r for r in reports if r is not None])
        _flush(home, config)
    except Exception as exc:  # reporting must never change what the update did
        log.info("reports kept for later: %s", exc)


def _enqueue(home: Path, reports: list[dict[str, Any]]) -> None:
    if not reports:
        return
    with file_lock(home / "reports.lock", 10.0):
        path = queue_path(home)
        lines = path.read_text().splitlines() if path.exists() else []
        lines += [json.dumps(r, sort_keys=True) for r in reports]
        write_atomic(path, ("\n".join(lines[-MAX_QUEUED:]) + "\n").encode())


def _flush(home: Path, config: ClientConfig) -> int:
    """Send the queue in batches; keep what was not taken. Reports sent."""
    import urllib3

    from custody.client.network import Connections

    assert config.report_url is not None
    url = config.report_url.rstrip("/") + "/api/v1/reports"
    # Reports take the route updates take: the same proxy, CA bundle and client certificate.
    pool = Connections(config.network(), retries=False,
                       timeout=urllib3.Timeout(connect=TIMEOUT, read=TIMEOUT)).pool(url)
    sent = 0
    with file_lock(home / "reports.lock", 10.0):
        path = queue_path(home)
        lines = path.read_text().splitlines() if path.exists() else []
        while lines:
            batch = [json.loads(line) for line in lines[:BATCH]]
            response = pool.request("POST", url, body=json.dumps(batch).encode(), headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {config.report_token}"})
            if response.status == 400:  # the server refuses these for good: drop them
                log.info("the server refused reports: %s", response.data[:200])
            elif response.status != 202:
                break
            sent += len(batch)
            lines = lines[BATCH:]
            write_atomic(path, ("\n".join(lines) + "\n").encode() if lines else b"")
    return sent
