"""The repository server's HTTP faces, one Flask blueprint each (`custody.repository.server`
composes them):

- `custody.repository.web.tree`: the served tree (``/metadata/``, ``/targets/``), ``/healthz``
  and the OpenAPI description;
- `custody.repository.web.releases`: ``POST /api/v1/releases``, the publish API;
- `custody.repository.web.reports`: ``POST /api/v1/reports``, the fleet's health reports;
- `custody.repository.web.rollouts`: ``POST /api/v1/rollouts``;
- `custody.repository.web.telemetry`: ``/metrics`` and the API's request counters;
- ``/ui``: the dashboard (`custody.repository.dashboard`).

What they share lives on the application, not in globals: `Site` (the
repository's paths and configuration, the upload folder, the metrics) is
``app.extensions["custody"]``, read through `site()`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import current_app, g, jsonify, request

from custody.repository.config import RepoConfig
from custody.repository.database import Database, DatabaseError
from custody.repository.storage import RepoPaths
from custody.repository.tokens import check_token

EXTENSION = "custody"


@dataclass(frozen=True)
class Site:
    """The repository a server application serves."""

    paths: RepoPaths
    config: RepoConfig
    uploads: Path
    #: Each worker thread's connection to the configured PostgreSQL server, kept between
    #: requests: a new one costs the server a process (about 9 ms), twice per report.
    _connections: threading.local = field(default_factory=threading.local)

    def database(self) -> Database | None:
        """This thread's server connection, or None: the fleet state is in SQLite."""
        if not self.config.database:
            return None
        kept: Database | None = getattr(self._connections, "database", None)
        if kept is not None and kept.usable:
            if g.get("custody_database_checked"):
                return kept  # checked once per request, not at each use
            try:
                kept.execute("SELECT 1")  # a server restarted since: a new connection
                g.custody_database_checked = True
                return kept
            except DatabaseError:
                kept.close()
        kept = Database.open(self.paths.private, self.config.database)
        self._connections.database = kept
        g.custody_database_checked = True
        return kept


def site() -> Site:
    """The `Site` of the application handling the current request."""
    found: Site = current_app.extensions[EXTENSION]
    return found


def error(status: int, message: str) -> Any:
    """The JSON error every endpoint answers with: ``{"error": "one sentence"}``."""
    return jsonify(error=message), status


def authorized(scope: str) -> str | None:
    """Who the request's bearer token belongs to, if it may act in ``scope``."""
    header = request.headers.get("Authorization", "")
    token = header[len("Bearer "):] if header.startswith("Bearer ") else ""
    here = site()
    return check_token(here.paths, token, scope, here.database(), here.config) if token else None
