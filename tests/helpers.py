"""Real parts for tests: repositories on disk, a gunicorn server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from custody.keys_tooling.keys import load_public_key, load_signer
from custody.repository.config import ONLINE_ROLES, KeySpec, RepoConfig
from custody.repository.releases import Release, links_from_dir, publish_release
from custody.repository.repo import CustodyRepository
from tests.intoto.chain import IMPLS, make_chain

BIN = Path(sys.executable).parent


def signer(keydir: Path, name: str):
    return load_signer(str(keydir / name))


def make_repo(path: Path, keydir: Path, bins: int = 0, public_url: str | None = None,
              endpoint_url: str | None = None) -> CustodyRepository:
    """A repository whose offline keys are keydir's root/targets/owner, online key 'online'."""
    config = RepoConfig(bins=bins, online_keys={
        role: [KeySpec(path=str(keydir / "online"))] for role in ONLINE_ROLES},
        public_url=public_url, endpoint_url=endpoint_url)
    from custody.repository.genesis import create

    return create(
        path, root_signers=[signer(keydir, "root")], root_threshold=1,
        targets_signers=[signer(keydir, "targets")],
        layout_keys=[load_public_key(keydir / "owner.pub")], layout_threshold=1,
        layout_signers=[signer(keydir, "owner")],
        online={role: [signer(keydir, "online")] for role in ONLINE_ROLES}, config=config,
    )


def add_hello_layout(path: Path, keydir: Path, layout: Path) -> str:
    from custody.repository.releases import add_layout

    repo = CustodyRepository(path, {"layouts": [signer(keydir, "owner")]})
    with repo.transaction():
        return add_layout(repo, "hello", layout.read_bytes())


def serve_in_thread(handler: type) -> tuple[Any, str]:
    """A threading HTTP server with ``handler`` on a free loopback port, serving; (it, URL)."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(repo_dir: Path, workers: int = 2, extra: tuple[str, ...] = (),
                   port: int | None = None) -> Iterator[str]:
    """``custody-repo serve`` (gunicorn) on a loopback port (a free one by default); its URL.

    A test that stops the server and starts it again passes the first one's port,
    so that clients find it where they were told it is.
    """
    port = port or free_port()
    proc = subprocess.Popen(
        [BIN / "custody-repo", "serve", str(repo_dir), "--port", str(port), "--workers",
         str(workers), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    with serving(proc, f"http://127.0.0.1:{port}", "server") as url:
        yield url


@contextlib.contextmanager
def serving(proc: subprocess.Popen, url: str, what: str) -> Iterator[str]:
    """``url`` once the server ``proc`` (its own session) answers ``/healthz``; stopped after."""
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(url + "/healthz", timeout=1).ok:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or a worker still starting on a loaded machine
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"{what} did not start: {err[-2000:]}")
            time.sleep(0.1)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a graceful stop on a very busy machine: not
            with contextlib.suppress(ProcessLookupError):  # what the test is about
                os.killpg(proc.pid, 9)
            proc.wait(timeout=30)


class Mirror:
    """A static mirror of a public tree on 127.0.0.1 that a test can turn hostile.

    ``overrides`` replaces the bytes of paths ending with a key; ``trickle``
    sends those paths one byte at a time; ``endless`` sends them without end
    (both bounded: at most 20 seconds and 256 MiB, so the server always stops).
    """

    def __init__(self, public: Path) -> None:
        import http.server

        self.public = public
        self.overrides: dict[str, bytes] = {}
        self.trickle: set[str] = set()
        self.endless: set[str] = set()
        self.requests: list[str] = []
        self.bytes_sent = 0
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                mirror.requests.append(path)
                if any(path.endswith(p) for p in mirror.endless):
                    return self._stream(b"\0" * 65536, 0.0)
                data = next((v for k, v in mirror.overrides.items() if path.endswith(k)),
                            None)
                if data is None:
                    file = (mirror.public / path.lstrip("/")).resolve()
                    if not file.is_relative_to(mirror.public.resolve()) or not file.is_file():
                        self.send_error(404)
                        return None
                    data = file.read_bytes()
                if any(path.endswith(p) for p in mirror.trickle):
                    return self._stream(data[:1], 0.5, len(data))
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                mirror.bytes_sent += len(data)
                return None

            def _stream(self, chunk: bytes, pause: float, length: int | None = None) -> None:
                self.send_response(200)
                if length:
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                deadline, sent = time.monotonic() + 20, 0
                try:
                    while time.monotonic() < deadline and sent < 256 << 20:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        sent += len(chunk)
                        time.sleep(pause)
                except OSError:
                    pass  # the client gave up, as it should

        self.server, self.url = serve_in_thread(Handler)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Served:
    """A repository on disk, served by gunicorn, and the keys that built it."""

    repo_dir: Path
    url: str
    keydir: Path
    work: Path
    chains: dict[str, object] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.repo_dir / "public/metadata/1.root.json"

    def chain(self, message: str, payload_mib: int = 0):
        if message not in self.chains:
            self.chains[message] = make_chain(IMPLS["custody"], IMPLS["custody"], self.keydir,
                                              self.work / f"chain-{len(self.chains)}",
                                              message=message, payload_mib=payload_mib)
        return self.chains[message]

    def publish(self, version: str, channel: str | None = "stable",
                message: str | None = None, name: str = "hello", payload_mib: int = 0) -> str:
        """Publish a recorded hello chain as ``name`` (another package needs its layout)."""
        chain = self.chain(message or f"{name} {version}", payload_mib)
        repo = CustodyRepository(self.repo_dir)
        with repo.transaction():
            return publish_release(repo, Release(
                name, version, chain.verify_dir / "hello.tar.gz", chain.layout.read_bytes(),
                links_from_dir(chain.links), channel))

    def add_package(self, name: str) -> None:
        """Let ``name`` be published too, under the hello layout."""
        from custody.repository.releases import add_layout

        repo = CustodyRepository(self.repo_dir, {"layouts": [signer(self.keydir, "owner")]})
        with repo.transaction():
            add_layout(repo, name, self.chain(f"{name} layout").layout.read_bytes())


def custody(home: Path, *args: str, timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "custody"), "--home", str(home), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def installed_state(home: Path) -> dict[str, bytes]:
    """Every file of the installed state (symlinks by their target), for equality checks."""
    out = {}
    for path in sorted(home.rglob("*")):
        if "metadata" in path.parts or "cache" in path.parts or path.name == "lock":
            continue
        if path.is_symlink():
            out[str(path.relative_to(home))] = os.readlink(path).encode()
        elif path.is_file():
            out[str(path.relative_to(home))] = path.read_bytes()
    return out


# -- nginx in front, with the configuration docs/deploy.md describes -------------------

NGINX_CONF = Path(__file__).resolve().parent.parent / "deploy/nginx-custody.conf"


def debian_tool(program: str, package: str | None = None) -> str:
    """The path of ``program``, from Debian's ``package`` (installed now if missing, as root).

    Tests use real parts (nginx, Chromium, a proxy, promtool, systemd-analyze): a fresh
    machine gets them here, so CI needs no set-up of its own. Without apt or root the
    test is skipped, naming what is missing.
    """
    search = f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/bin:/sbin:/bin"
    found = shutil.which(program, path=search)
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install "
                       f"-y -qq --no-install-recommends {package or program}", shell=True,
                       check=False, capture_output=True)
        found = shutil.which(program, path=search)
    if found is None:
        import pytest

        pytest.skip(f"{program} is not installed and could not be (apt, as root)")
    return found


def _nginx() -> str:
    return debian_tool("nginx")


@contextlib.contextmanager
def running_nginx(upstream: str, work: Path, tree: str | None = None) -> Iterator[str]:
    """nginx with deploy/nginx-custody.conf: the API at ``upstream`` (custody-repo serve),
    the tree there too, or at ``tree`` (a bucket's HTTP URL, path included)."""
    from urllib.parse import urlsplit

    binary = _nginx()
    port = free_port()
    (work / "logs").mkdir(parents=True)
    origin = urlsplit(tree or upstream)
    site = NGINX_CONF.read_text().format(
        listen=f"127.0.0.1:{port}", origin=f"{origin.scheme}://{origin.netloc}",
        origin_path=origin.path.rstrip("/"), api=upstream, cache_dir=work / "cache")
    (work / "nginx.conf").write_text(
        f"user root;\nworker_processes 1;\npid {work}/nginx.pid;\n"
        f"error_log {work}/logs/error.log;\n"
        f"events {{ worker_connections 256; }}\nhttp {{\n access_log {work}/logs/access.log;\n"
        f" client_body_temp_path {work}/body;\n proxy_temp_path {work}/proxy;\n{site}\n}}\n")
    proc = subprocess.Popen([binary, "-p", str(work), "-c", str(work / "nginx.conf"), "-g",
                             "daemon off;"], stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(url + "/healthz", timeout=1).ok:
                    break
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "nginx died")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


#: What a build of custody reads: the project file and the packages it maps under custody.
PACKAGED = ("pyproject.toml", "README.md", "custody", "formats", "intoto", "keys_tooling",
            "repository", "client")


def packaged_source(where: Path) -> Path:
    """A copy of what ``pip install <checkout>`` builds from, in ``where/source``.

    Building in place would write ``build/`` and ``*.egg-info`` into the checkout,
    which tests running in parallel would share.
    """
    root = Path(__file__).resolve().parent.parent
    source = where / "source"
    source.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in PACKAGED:
        path = root / name
        if path.is_dir():
            shutil.copytree(path, source / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    return source


# -- PostgreSQL, for the fleet state of a repository (repository.database) ------------

@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (Debian's server); its URL.

    The server refuses to run as root, so the cluster belongs to the
    ``postgres`` user the package creates, in a directory of its own.
    """
    import glob
    import tempfile

    def binary(name: str) -> str | None:
        found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
        return found[-1] if found else None

    if binary("initdb") is None:
        debian_tool("psql", "postgresql")
    initdb, pg_ctl = binary("initdb"), binary("pg_ctl")
    if initdb is None or pg_ctl is None or os.geteuid() != 0:
        import pytest

        pytest.skip("PostgreSQL's server is not installed and could not be (apt, as root)")
    base = Path(tempfile.mkdtemp(prefix="custody-pg-", dir="/tmp"))
    data = base / "data"
    shutil.chown(base, "postgres")
    port = free_port()

    def as_postgres(*args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                       capture_output=True, timeout=120)

    as_postgres(initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
    as_postgres(pg_ctl, "-D", str(data), "-l", str(base / "log"), "-w", "-o",
                f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", pg_ctl, "-D", str(data), "-m",
                        "immediate", "-w", "stop"], capture_output=True, timeout=60,
                       check=False)
        shutil.rmtree(base, ignore_errors=True)
