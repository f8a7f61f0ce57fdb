"""The repository server: the served tree, a health check, and the publish API.

``create_app(DIR)`` is a Flask application; ``serve`` runs it under gunicorn.

- ``GET /metadata/<file>``, ``GET /targets/<path>``: the public tree.
  Versioned metadata and hash-prefixed targets never change, so caches may
  keep them forever (``immutable``); ``timestamp.json`` and ``root.json``
  must be revalidated every time.
- ``GET /healthz``: the current timestamp version and its expiry.
- ``GET /metrics``: Prometheus metrics (`repository.metrics`); ``/ui``: the
  operator's dashboard (`repository.dashboard`).
- ``GET /api/v1/openapi.json``: the OpenAPI description of all of this
  (`repository.openapi`).
- ``POST /api/v1/releases`` (bearer token; multipart ``name``, ``version``,
  optional ``channel`` and ``allow_channel_downgrade``, files ``artifact``,
  ``layout``, ``links``): verify the
  release as a client will, then publish it in one transaction. A refused
  upload changes nothing. Uploads over the configured size are refused
  before they are read; accepted ones are streamed to disk, never held whole
  in memory.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from repository import maintenance
from repository.config import RepoConfig
from repository.errors import (
    BucketError,
    ChannelDowngradeError,
    DuplicateReleaseError,
    InvalidReleaseError,
    LockedError,
    NotFoundError,
    RepositoryError,
)
from repository.pending import is_draft
from repository.releases import Release, check_link_path, publish_release
from repository.repo import CustodyRepository
from repository.storage import IMMUTABLE, REVALIDATE, RepoPaths
from repository.tokens import check_token

log = logging.getLogger(__name__)


def create_app(repo_dir: str | Path, bump_interval: float | None = None) -> Flask:
    """The Flask application for the repository in ``repo_dir``.

    ``bump_interval`` (seconds) starts a thread that re-signs online roles
    nearing expiry; each gunicorn worker runs one, and the writers' lock
    keeps them from colliding.
    """
    paths = RepoPaths(Path(repo_dir).resolve())
    config = RepoConfig.load(paths)
    app = Flask("custody-repository")
    app.config["MAX_CONTENT_LENGTH"] = config.max_upload_mib * 1024 * 1024
    uploads = paths.private / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)

    @app.get("/metadata/<path:name>")
    def metadata(name: str) -> Response:
        response = send_from_directory(paths.metadata, name, max_age=0,
                                       mimetype="application/json")
        fixed = name[0].isdigit()
        response.headers["Cache-Control"] = IMMUTABLE if fixed else REVALIDATE
        return response

    @app.get("/targets/<path:name>")
    def targets(name: str) -> Response:
        # Opaque bytes: never let a guessed Content-Encoding (".gz") make a
        # client decompress what TUF must hash exactly as published.
        response = send_from_directory(paths.targets, name, max_age=0,
                                       mimetype="application/octet-stream")
        response.headers["Cache-Control"] = IMMUTABLE
        return response

    @app.get("/healthz")
    def healthz() -> Any:
        """ok (200) once the repository is published; 503 while its first ceremony waits."""
        repo = CustodyRepository(paths.root)
        if is_draft(paths):
            return jsonify(status="unpublished", reason="the first signing ceremony is "
                           "pending (custody-repo status)"), 503
        timestamp = repo.published("timestamp")
        if timestamp is None:
            return jsonify(status="unpublished", reason="no timestamp.json"), 503
        return jsonify(status="ok", timestamp_version=timestamp.signed.version,
                       timestamp_expires=timestamp.signed.expires.strftime(
                           "%Y-%m-%dT%H:%M:%SZ"))

    def _authorized(scope: str) -> str | None:
        """Who the request's bearer token belongs to, if it may act in ``scope``."""
        header = request.headers.get("Authorization", "")
        token = header[len("Bearer "):] if header.startswith("Bearer ") else ""
        return check_token(paths, token, scope) if token else None

    @app.get("/api/v1/openapi.json")
    def openapi_description() -> Any:
        from repository.openapi import openapi

        return jsonify(openapi(config.max_upload_mib))

    @app.post("/api/v1/releases")
    def releases() -> Any:
        who = _authorized("publish")
        if who is None:
            return _error(401, "a valid bearer token is required to publish")
        form = request.form
        for field_name in ("name", "version"):
            if not form.get(field_name):
                return _error(400, f"the form field {field_name!r} is required")
        artifact = request.files.get("artifact")
        layout = request.files.get("layout")
        if artifact is None or not artifact.filename or layout is None:
            return _error(400, "the files 'artifact' and 'layout' are required")
        try:
            links = {check_link_path(f.filename or ""): f.read()
                     for f in request.files.getlist("links")}
            with tempfile.TemporaryDirectory(dir=uploads) as tmp:
                name = Path(artifact.filename).name
                staged = Path(tmp) / "artifact"
                artifact.save(staged)  # streamed from werkzeug's spooled file
                release = Release(
                    name=form["name"], version=form["version"], artifact=staged,
                    layout=layout.read(), links=links, artifact_name=name,
                    channel=form.get("channel") or None,
                    allow_channel_downgrade=form.get("allow_channel_downgrade", "").lower()
                    in ("1", "true", "yes"),
                )
                repo = CustodyRepository(paths.root)
                with repo.transaction():
                    target = publish_release(repo, release)
        except (DuplicateReleaseError, ChannelDowngradeError) as exc:
            return _error(409, str(exc))  # conflicts with what is published
        except InvalidReleaseError as exc:
            return _error(400, str(exc))
        except LockedError as exc:
            return _error(503, str(exc))
        except BucketError as exc:  # committed locally; the bucket (upstream) failed
            return _error(502, str(exc))
        except RepositoryError as exc:
            return _error(500, str(exc))
        log.info("%s published %s %s", who, release.name, release.version)
        return jsonify(target=target, name=release.name, version=release.version), 201

    @app.post("/api/v1/reports")
    def reports() -> Any:
        from repository.reports import Report, ReportStore
        from repository.rollouts import check_halt

        if _authorized("report") is None:
            return _error(401, "a valid report token is required (Authorization: Bearer)")
        body = request.get_json(silent=True)
        items = body if isinstance(body, list) else [body]
        if not 1 <= len(items) <= 100:
            return _error(400, "send 1 to 100 reports, as a JSON object or list")
        try:
            parsed = [Report.from_dict(item) for item in items]
        except InvalidReleaseError as exc:
            return _error(400, str(exc))
        store = ReportStore(paths.private / "reports.sqlite")
        try:
            store.add(parsed)
            halted: list[str] = []
            for package in sorted({r.package for r in parsed}):
                if not (paths.targets / "packages" / package).exists():
                    continue
                repo = CustodyRepository(paths.root)
                with repo.transaction():
                    halted += check_halt(repo, store, package)
        except LockedError as exc:
            return _error(503, str(exc))
        finally:
            store.close()
        for sentence in halted:
            log.warning("rollout %s", sentence)
        return jsonify(accepted=len(parsed), halted=halted), 202

    @app.post("/api/v1/rollouts")
    def rollouts_api() -> Any:
        from repository import rollouts

        if _authorized("publish") is None:
            return _error(401, "a valid publish or operator token is required")
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _error(400, "send a JSON object: package, channel, action, ...")
        action = body.get("action")
        package, channel = body.get("package"), body.get("channel")
        if not isinstance(package, str) or not isinstance(channel, str):
            return _error(400, "the fields 'package' and 'channel' are required strings")
        try:
            repo = CustodyRepository(paths.root)
            with repo.transaction():
                if action == "start":
                    result = rollouts.start(
                        repo, package, channel, str(body.get("version", "")),
                        _number(body, "percent"), _number(body, "max_failure_rate", None),
                        int(_number(body, "min_reports", 20)))
                elif action == "raise":
                    result = rollouts.set_percent(repo, package, channel,
                                                  _number(body, "percent"))
                elif action == "pause":
                    result = rollouts.pause(repo, package, channel,
                                            str(body.get("reason") or "paused by hand"))
                elif action == "resume":
                    result = rollouts.resume(repo, package, channel)
                elif action in ("complete", "abort"):
                    version = getattr(rollouts, action)(repo, package, channel)
                    return jsonify(action=action, version=version), 200
                else:
                    return _error(400, "action must be start, raise, pause, resume, "
                                       "complete or abort")
        except (InvalidReleaseError, NotFoundError, ValueError) as exc:
            return _error(404 if isinstance(exc, NotFoundError) else 400, str(exc))
        except LockedError as exc:
            return _error(503, str(exc))
        return jsonify(action=action, rollout=result.to_dict()), 200

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_: RequestEntityTooLarge) -> Any:
        return _error(413, f"uploads are limited to {config.max_upload_mib} MiB")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        return _error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def bug(exc: Exception) -> Any:  # never a stack trace to a client; always in the log
        log.exception("internal error serving %s %s", request.method, request.path)
        return _error(500, "internal error; the server's log has the details")

    from repository.dashboard import install as install_dashboard
    from repository.metrics import Metrics

    install_dashboard(app, paths)
    metrics = Metrics(paths)

    @app.after_request
    def count(response: Response) -> Response:
        if request.path.startswith("/api/"):
            metrics.requests.labels(request.path, str(response.status_code)).inc()
            if request.path == "/api/v1/releases" and response.status_code == 201:
                metrics.publishes.inc()
        return response

    @app.get("/metrics")
    def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)
    if bump_interval:
        app.extensions["custody-bumper"] = _start_bumper(paths, bump_interval)
    return app


def _error(status: int, message: str) -> Any:
    return jsonify(error=message), status


def _number(body: dict, name: str, default: Any = ...) -> Any:
    """A JSON number field of a request body (``ValueError`` names it)."""
    value = body.get(name, None if default is ... else default)
    if value is None and default is not ...:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"the field {name!r} must be a number")
    return value


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


def serve(repo_dir: str | Path, host: str, port: int, workers: int = 2,
          bump_interval: float | None = 3600.0) -> None:
    """Run the application under gunicorn (production mode) until stopped."""
    from gunicorn.app.base import BaseApplication

    class _Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("accesslog", "-")
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


__all__ = ["create_app", "serve"]
