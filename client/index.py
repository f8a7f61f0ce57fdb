"""A verifying Python package index on 127.0.0.1: pip and uv install only what custody verified.

``custody index serve`` (and ``custody pip``/``custody uv``, which start one
for the installer they run) answers the simple repository API: PEP 503 HTML
and PEP 691 JSON by content negotiation, project names normalized as PEP 503
says. It is a thin view over `SecureUpdater`: a project page lists the files
the TUF-verified package index lists, with ``#sha256=`` from the TUF target
hashes and ``requires-python`` and PEP 658/714 core metadata from the
target's ``custom["python"]``; a file is served only after the full pipeline
(TUF download, in-toto verification, the file bound to the final step) ran
on exactly that file, and a refusal answers 403 with the one-sentence reason,
which pip and uv print. Nothing the repository does not list is proxied, so
there is no second index to confuse a dependency with (never add
``--extra-index-url``: docs/plugins.md says why).
"""

from __future__ import annotations

import contextlib
import errno
import html
import json
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from packaging.utils import canonicalize_name

from custody.client.errors import (
    ClientError,
    InstallError,
    PackageNotFoundError,
    RepositoryUnreachable,
)
from custody.client.updater import SecureUpdater
from custody.formats.errors import FormatError
from custody.formats.python import PythonRelease, describe_distribution, wheel_metadata

log = logging.getLogger(__name__)
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"


class VerifyingIndex:
    """The index's logic, apart from HTTP: listing projects and serving verified files.

    It holds configuration only (the client home): every request is a new
    session, one TUF refresh from the trusted metadata on disk, so an index
    that stays up sees each release as it lands, and an outage or a refusal
    ends with the request that met it.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self._lock = threading.Lock()  # ngclient is not thread-safe: one operation at a time
        self.refusals: list[ClientError] = []

    def updater(self) -> SecureUpdater:
        """A new session for one request (see the class docstring)."""
        return SecureUpdater(self.home)

    def projects(self) -> list[str]:
        """The projects the repository has layouts for (the root page, PEP 503/691)."""
        with self._lock:
            return sorted(self.updater().package_names())

    def files(self, project: str) -> list[dict[str, Any]]:
        """The files of ``project``: filename, url, sha256, requires-python, metadata hash."""
        with self._lock:
            updater = self.updater()
            index = updater.index(project)
            listed = []
            for version, entry in index.versions.items():
                if entry.target is None:
                    continue  # platform builds: never a Python distribution (pip reads tags)
                info = updater.target(entry.target)
                if info is None:
                    continue
                try:
                    python = PythonRelease.from_custom(info.custom)
                except FormatError as exc:
                    raise ClientError(f"TUF refused the metadata of {info.path}: {exc}") \
                        from exc
                if python is None:
                    continue  # not a Python distribution: pip has nothing to do with it
                listed.append({
                    "filename": entry.filename, "version": version,
                    "url": f"/files/{project}/{version}/{entry.filename}",
                    "sha256": info.hashes["sha256"],
                    "requires-python": python.requires_python,
                    "metadata-sha256": python.metadata_sha256,
                })
            return listed

    def verified_file(self, project: str, version: str, filename: str) -> Path:
        """The file, after TUF and in-toto verified exactly it (`ClientError` otherwise)."""
        with self._lock:
            updater = self.updater()
            found, entry = updater.resolve_version(project, version)
            if entry.filename != filename:
                raise PackageNotFoundError(f"{project} {version} has no file {filename}")
            resolved = updater.target_of(project, found, entry)
            path = updater.verify(resolved).path
        if filename.endswith(".whl"):
            # What pip reads is the wheel's own METADATA: it must be this project and
            # version and name no URL to install unverified (a repository that published
            # before the publish-time check, or an online key that lies, is caught here).
            try:
                described = describe_distribution(path, filename)
            except FormatError as exc:
                raise ClientError(f"refused {filename}: {exc}") from exc
            if described is None or described.project != project:
                raise ClientError(f"refused {filename}: it is not a wheel of {project}")
        return path

    def verified_metadata(self, project: str, version: str, filename: str) -> bytes:
        """A wheel's core metadata (PEP 658), taken from the verified wheel itself."""
        wheel = self.verified_file(project, version, filename)
        try:
            data = wheel_metadata(wheel)
        except FormatError as exc:
            raise ClientError(str(exc)) from exc
        if data is None:
            raise PackageNotFoundError(f"{filename} has no core metadata")
        return data


def _project_html(project: str, files: list[dict[str, Any]]) -> bytes:
    links = []
    for f in files:
        attributes = f'href="{html.escape(f["url"])}#sha256={f["sha256"]}"'
        if f["requires-python"]:
            attributes += f' data-requires-python="{html.escape(f["requires-python"])}"'
        if f["metadata-sha256"]:
            attributes += (f' data-dist-info-metadata="sha256={f["metadata-sha256"]}"'
                           f' data-core-metadata="sha256={f["metadata-sha256"]}"')
        links.append(f'    <a {attributes}>{html.escape(f["filename"])}</a><br/>')
    body = "\n".join(links)
    return (f'<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version" content="1.1">'
            f"<title>Links for {html.escape(project)}</title></head><body>\n"
            f"<h1>Links for {html.escape(project)}</h1>\n{body}\n</body></html>\n").encode()


def _project_json(project: str, files: list[dict[str, Any]]) -> bytes:
    return json.dumps({
        "meta": {"api-version": "1.1"}, "name": project,
        "versions": sorted({f["version"] for f in files}),
        "files": [{
            "filename": f["filename"], "url": f["url"], "hashes": {"sha256": f["sha256"]},
            **({"requires-python": f["requires-python"]} if f["requires-python"] else {}),
            **({"core-metadata": {"sha256": f["metadata-sha256"]},
                "dist-info-metadata": {"sha256": f["metadata-sha256"]}}
               if f["metadata-sha256"] else {}),
        } for f in files],
    }).encode()


def _handler(index: VerifyingIndex) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.info("index: " + format, *args)

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _refuse(self, error: ClientError) -> None:
            index.refusals.append(error)
            if isinstance(error, PackageNotFoundError):
                status, said = HTTPStatus.NOT_FOUND, "not found"
            elif isinstance(error, RepositoryUnreachable | InstallError) \
                    and error.exit_code != 1:
                status, said = HTTPStatus.SERVICE_UNAVAILABLE, "unavailable"
            else:
                status, said = HTTPStatus.FORBIDDEN, "refused"
            log.warning("%s: %s", said, error)
            self._send(status, f"custody: {error}\n".encode(), "text/plain; charset=utf-8")

        def do_GET(self) -> None:
            parts = [unquote(p) for p in self.path.split("?", 1)[0].split("/") if p]
            try:
                if parts == ["simple"]:
                    return self._root()
                if len(parts) == 2 and parts[0] == "simple":
                    return self._project(parts[1])
                if len(parts) == 4 and parts[0] == "files":
                    return self._file(*parts[1:])
            except ClientError as exc:
                return self._refuse(exc)
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

        def _wants_json(self) -> bool:
            accept = self.headers.get("Accept", "")
            return JSON_TYPE in accept or ("application/json" in accept and \
                "text/html" not in accept)

        def _root(self) -> None:
            projects = index.projects()
            if self._wants_json():
                self._send(200, json.dumps({
                    "meta": {"api-version": "1.1"},
                    "projects": [{"name": name} for name in projects]}).encode(), JSON_TYPE)
                return
            links = "\n".join(f'    <a href="/simple/{html.escape(name)}/">{html.escape(name)}'
                              "</a><br/>" for name in projects)
            self._send(200, ('<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version"'
                             ' content="1.1"><title>Simple index</title></head><body>\n'
                             f"{links}\n</body></html>\n").encode(), HTML_TYPE)

        def _project(self, name: str) -> None:
            project = canonicalize_name(name)
            if project != name:  # PEP 503: one project, one URL
                self.send_response(HTTPStatus.MOVED_PERMANENTLY)
                self.send_header("Location", f"/simple/{project}/")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            files = index.files(project)
            if self._wants_json():
                self._send(200, _project_json(project, files), JSON_TYPE)
            else:
                self._send(200, _project_html(project, files), HTML_TYPE)

        def _file(self, project: str, version: str, filename: str) -> None:
            if filename.endswith(".metadata"):
                data = index.verified_metadata(project, version, filename[: -len(".metadata")])
                return self._send(200, data, "text/plain; charset=utf-8")
            path = index.verified_file(project, version, filename)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(path.stat().st_size))
            self.end_headers()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    self.wfile.write(chunk)

    return Handler


@contextmanager
def serving(home: Path, port: int = 0) -> Iterator[tuple[str, VerifyingIndex]]:
    """The index on 127.0.0.1 (only), in a thread, for as long as the block runs."""
    index = VerifyingIndex(home)
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), _handler(index))
    except OSError as exc:
        reason = "is in use" if exc.errno == errno.EADDRINUSE else f"failed: {exc.strerror}"
        raise InstallError(f"the index cannot listen on 127.0.0.1:{port}: the port {reason}") \
            from exc
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/simple/", index
    finally:
        _stop(server, thread)


def _stop(server: ThreadingHTTPServer, thread: threading.Thread) -> None:
    """Stop at once: ``shutdown`` alone waits out ``serve_forever``'s 0.5 s poll.

    A connection to the listening socket wakes the poll, which then sees the
    shutdown request; it is repeated until the loop has ended, in case a wake
    came before the request did.
    """
    stopper = threading.Thread(target=server.shutdown, daemon=True)
    stopper.start()
    while stopper.is_alive():
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", server.server_port), timeout=1).close()
        stopper.join(0.02)
    thread.join()
    server.server_close()
