"""The repository server: `create_app` composes the blueprints; `serve` runs gunicorn.

- ``GET /metadata/<file>``, ``GET /targets/<path>``, ``GET /healthz``,
  ``GET /api/v1/openapi.json``: `custody.repository.web.tree`;
- ``POST /api/v1/releases``: `custody.repository.web.releases`, the publish API;
- ``POST /api/v1/reports``, ``POST /api/v1/rollouts``: `custody.repository.web.reports`,
  `custody.repository.web.rollouts`;
- ``GET /metrics``: `custody.repository.web.telemetry`; ``/ui``: `custody.repository.dashboard`.

Every error is a JSON ``{"error": "one sentence"}``, never a stack trace.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from flask import Flask, request
from gunicorn.glogging import Logger
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from custody.repository import maintenance
from custody.repository.config import RepoConfig
from custody.repository.errors import (
    RepositoryError,
)
from custody.repository.repo import CustodyRepository
from custody.repository.storage import RepoPaths

log = logging.getLogger(__name__)


def create_app(repo_dir: str | Path, bump_interval: float | None = None) -> Flask:
    """The Flask application for the repository in ``repo_dir``: the blueprints of
    `custody.repository.web` and the dashboard, over one `custody.repository.web.Site`.

    ``bump_interval`` (seconds) starts a thread that re-signs online roles
    nearing expiry; each gunicorn worker runs one, and the writers' lock
    keeps them from colliding.
    """
    from custody.repository.dashboard import install as install_dashboard
    from custody.repository.web import EXTENSION, Site, error
    from custody.repository.web.releases import releases
    from custody.repository.web.reports import reports
    from custody.repository.web.rollouts import rollouts
    from custody.repository.web.telemetry import telemetry
    from custody.repository.web.tree import StaticTree, tree

    paths = RepoPaths(Path(repo_dir).resolve())
    config = RepoConfig.load(paths)
    app = Flask("custody-repository")
    app.config["MAX_CONTENT_LENGTH"] = config.max_upload_mib * 1024 * 1024
    uploads = paths.private / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    app.extensions[EXTENSION] = Site(paths, config, uploads)
    for blueprint in (tree, releases, reports, rollouts, telemetry):
        app.register_blueprint(blueprint)
    install_dashboard(app, paths)
    app.wsgi_app = StaticTree(app.wsgi_app, paths)  # type: ignore[method-assign]

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_: RequestEntityTooLarge) -> Any:
        return error(413, f"uploads are limited to {config.max_upload_mib} MiB")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        return error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def bug(exc: Exception) -> Any:  # never a stack trace to a client; always in the log
        log.exception("internal error serving %s %s", request.method, request.path)
        return error(500, "internal error; the server's log has the details")

    if bump_interval:
        app.extensions["custody-bumper"] = _start_bumper(paths, bump_interval)
    return app


def _start_bumper(paths: RepoPaths, interval: float) -> threading.Event:
    """Re-sign due online roles every ``interval`` seconds until the returned event is set."""
    def loop() -> None:
        while not stop.wait(interval):
            try:
                repo = CustodyRepository(paths.root)
                with repo.transaction():
                    bumped = maintenance.bump_online(repo)
                if bumped:
                    log.info("re-signed %s", ", ".join(bumped))
            except RepositoryError as exc:
                log.error("re-signing online roles failed: %s", exc)

    stop = threading.Event()
    threading.Thread(target=loop, name="custody-bump", daemon=True).start()
    return stop


class AccessLog(Logger):  # type: ignore[misc]
    """gunicorn's logger, whose access line (gunicorn's default format, Apache's combined
    one) is formatted here and written with one ``os.write``.

    gunicorn's own goes through `logging`: a dict of every header and environ variable
    per request, a LogRecord, the handler's lock and a flush. Under gthread workers that
    lock was where the threads of a worker queued behind one another (about 15% of the
    server's CPU per request of the served tree, and a third of its p99, measured with
    the fleet's load). A line under ``PIPE_BUF`` (4 KiB) written at once is never
    interleaved with another thread's or worker's on a pipe, so no lock is needed.
    """

    access_fd: int | None = None  # standard output unless set (tests)

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) \
            else resp.status
        sent = getattr(resp, "sent", None)
        fields = (environ.get("REMOTE_ADDR", "-"), self._get_user(environ) or "-",
                  f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} "
                  f"{environ['SERVER_PROTOCOL']}", environ.get("HTTP_REFERER", "-"),
                  environ.get("HTTP_USER_AGENT", "-"))
        host, user, line, referer, agent = (str(f).replace('"', '\\"') for f in fields)
        text = (f'{host} - {user} {self.now()} "{line}" {status} '
                f'{"-" if sent is None else sent} "{referer}" "{agent}"\n')
        data = text.encode("utf-8", "backslashreplace")
        fd = sys.stdout.fileno() if self.access_fd is None else self.access_fd
        try:
            while data:
                data = data[os.write(fd, data):]
        except OSError:
            self.error("could not write the access log: %s", traceback.format_exc())


def serve(repo_dir: str | Path, host: str, port: int, workers: int = 2,
          bump_interval: float | None = 3600.0) -> None:
    """Run the application under gunicorn (production mode) until stopped."""
    from gunicorn.app.base import BaseApplication

    class _Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("accesslog", "-")
            self.cfg.set("logger_class", AccessLog)
            self.cfg.set("timeout", 120)
            self.cfg.set("worker_class", "gthread")  # threads: a slow client holds one
            self.cfg.set("threads", 8)  # thread, not a whole worker
            # gunicorn's control socket defaults to one path per user, which every serve
            # on the machine would share; custody does not use gunicornc.
            self.cfg.set("control_socket_disable", True)

        def load(self) -> Flask:
            return create_app(repo_dir, bump_interval)

    paths = RepoPaths(Path(repo_dir))
    RepoConfig.load(paths)  # refuse a non-repository before forking
    # Counters shared by the workers (prometheus-client's multiprocess mode), set up
    # before they fork; a fresh start begins at zero.
    metrics_dir = paths.private / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)  # before prometheus_client loads
    _Gunicorn().run()


__all__ = ["AccessLog", "create_app", "serve"]
