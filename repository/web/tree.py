"""The served tree, the health check and the API's description.

Versioned metadata and hash-prefixed targets never change, so caches may keep
them forever (``immutable``); ``timestamp.json`` and ``root.json`` must be
revalidated every time.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import Any
from zlib import adler32

from flask import Blueprint, Response, jsonify, send_from_directory
from werkzeug.http import http_date, parse_date
from werkzeug.wsgi import FileWrapper

from custody.repository.pending import is_draft
from custody.repository.repo import CustodyRepository
from custody.repository.storage import RepoPaths, cache_control
from custody.repository.web import site

tree = Blueprint("tree", __name__)


@tree.get("/metadata/<path:name>")
def metadata(name: str) -> Response:
    response = send_from_directory(site().paths.metadata, name, max_age=0,
                                   mimetype="application/json")
    response.headers["Cache-Control"] = cache_control(f"metadata/{name}")
    return response


@tree.get("/targets/<path:name>")
def targets(name: str) -> Response:
    # Opaque bytes: never let a guessed Content-Encoding (".gz") make a
    # client decompress what TUF must hash exactly as published.
    response = send_from_directory(site().paths.targets, name, max_age=0,
                                   mimetype="application/octet-stream")
    response.headers["Cache-Control"] = cache_control(f"targets/{name}")
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


class StaticTree:
    """The WSGI application in front of Flask that serves ``GET``/``HEAD`` of a file under
    ``/metadata/`` and ``/targets/`` itself: ``open``, ``fstat``, the headers `metadata`
    and `targets` set, and the file's bytes (up to `SMALL`: one ``read``) or the file
    handed to the server's ``wsgi.file_wrapper`` (gunicorn sends it with ``sendfile``).

    Every poll of every host is a handful of these requests. Through Flask each cost about
    220 us of CPU (the request context, the session, URL matching, ``send_file``'s header
    handling), which under gthread workers is time every other request of the worker waits
    for the GIL. Anything unusual (a ``Range`` header, a name with ``..`` or an empty part,
    a missing file or a folder, another method) goes on to Flask, whose answer is the one it
    always gave: a JSON 404, a 206, a 405.

    The validators are the ones Flask sent (``ETag`` from mtime, size and the path's adler32;
    ``Last-Modified``), so a cache revalidating what it stored before gets its 304.
    """

    def __init__(self, app: Callable[..., Any], paths: RepoPaths) -> None:
        self.app = app
        self.folders = {"/metadata/": str(paths.metadata), "/targets/": str(paths.targets)}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        served = self._serve(environ, start_response)
        return self.app(environ, start_response) if served is None else served

    def _serve(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        method = environ.get("REQUEST_METHOD")
        if method not in ("GET", "HEAD") or "HTTP_RANGE" in environ:
            return None
        path: str = environ.get("PATH_INFO", "")
        prefix = path[:path.find("/", 1) + 1]
        folder = self.folders.get(prefix)
        if folder is None:
            return None
        name = path[len(prefix):]
        if not name or "\\" in name or "\0" in name or any(
                part in ("", ".", "..") for part in name.split("/")):
            return None
        full = f"{folder}/{name}"
        try:
            fd = os.open(full, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                os.close(fd)
                return None
        except OSError:
            os.close(fd)
            return None
        content_type = "application/json" if prefix == "/metadata/" else \
            "application/octet-stream"
        cache = cache_control(path[1:])
        etag = f'"{info.st_mtime}-{info.st_size}-{adler32(full.encode()) & 0xFFFFFFFF}"'
        headers = [("Cache-Control", cache), ("ETag", etag),
                   ("Last-Modified", http_date(int(info.st_mtime))),
                   ("Accept-Ranges", "bytes")]
        if _not_modified(environ, etag, int(info.st_mtime)):
            os.close(fd)
            start_response("304 Not Modified", headers)
            return []
        headers += [("Content-Type", content_type), ("Content-Length", str(info.st_size))]
        if method == "HEAD" or info.st_size <= SMALL:
            # Metadata, nearly always: one read, no sendfile (gunicorn's costs an lseek
            # and an fstat before and an lseek after, each a GIL release to wait back from)
            try:
                body = _read(fd, info.st_size) if method == "GET" else b""
            except OSError:
                return None  # Flask's answer, whatever it is
            finally:
                os.close(fd)
            start_response("200 OK", headers)
            return [body]
        start_response("200 OK", headers)
        wrapper = environ.get("wsgi.file_wrapper", FileWrapper)
        return wrapper(os.fdopen(fd, "rb", buffering=0), 256 * 1024)


#: Files up to this size are read and sent as bytes; larger ones go to sendfile.
SMALL = 256 * 1024


def _read(fd: int, size: int) -> bytes:
    """``size`` bytes of ``fd``: the tree's files are replaced by rename, never rewritten,
    so a short read means a broken disk: it raises rather than answer with fewer bytes
    than the Content-Length."""
    parts, left = [], size
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            raise OSError(f"{size - left} of {size} bytes read")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _not_modified(environ: dict[str, Any], etag: str, mtime: int) -> bool:
    """RFC 9110 13.1.2-3: If-None-Match (weak comparison) decides; else If-Modified-Since."""
    match = environ.get("HTTP_IF_NONE_MATCH")
    if match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in match.split(",")}
        return "*" in tags or etag in tags
    since = environ.get("HTTP_IF_MODIFIED_SINCE")
    if since is None:
        return False
    when = parse_date(since)
    return when is not None and mtime <= when.timestamp()
