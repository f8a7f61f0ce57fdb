"""The served tree, the health check and the API's description.

Versioned metadata and hash-prefixed targets never change, so caches may keep
them forever (``immutable``); ``timestamp.json`` and ``root.json`` must be
revalidated every time.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, send_from_directory

from custody.repository.pending import is_draft
from custody.repository.repo import CustodyRepository
from custody.repository.storage import IMMUTABLE, REVALIDATE
from custody.repository.web import site

tree = Blueprint("tree", __name__)


@tree.get("/metadata/<path:name>")
def metadata(name: str) -> Response:
    response = send_from_directory(site().paths.metadata, name, max_age=0,
                                   mimetype="application/json")
    response.headers["Cache-Control"] = IMMUTABLE if name[0].isdigit() else REVALIDATE
    return response


@tree.get("/targets/<path:name>")
def targets(name: str) -> Response:
    # Opaque bytes: never let a guessed Content-Encoding (".gz") make a
    # client decompress what TUF must hash exactly as published.
    response = send_from_directory(site().paths.targets, name, max_age=0,
                                   mimetype="application/octet-stream")
    response.headers["Cache-Control"] = IMMUTABLE
    return response


@tree.get("/healthz")
def healthz() -> Any:
    """ok (200) once the repository is published; 503 while its first ceremony waits."""
    paths = site().paths
    if is_draft(paths):
        return jsonify(status="unpublished", reason="the first signing ceremony is "
                       "pending (custody-repo status)"), 503
    timestamp = CustodyRepository(paths.root).published("timestamp")
    if timestamp is None:
        return jsonify(status="unpublished", reason="no timestamp.json"), 503
    return jsonify(status="ok", timestamp_version=timestamp.signed.version,
                   timestamp_expires=timestamp.signed.expires.strftime("%Y-%m-%dT%H:%M:%SZ"))


@tree.get("/api/v1/openapi.json")
def openapi_description() -> Any:
    from custody.repository.openapi import openapi

    return jsonify(openapi(site().config.max_upload_mib))
