"""The repository server for real: gunicorn on 127.0.0.1, the publish API, the CLI."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import pytest
import requests

from custody.repository.config import RepoConfig
from custody.repository.releases import load_index
from custody.repository.repo import CustodyRepository
from custody.repository.server import create_app
from custody.repository.storage import RepoPaths
from custody.repository.tokens import create_token
from tests.helpers import BIN, add_hello_layout, make_repo, running_server


@pytest.fixture
def repo_dir(tmp_path, keydir, hello_chain):
    path = tmp_path / "repo"
    make_repo(path, keydir, bins=8)
    add_hello_layout(path, keydir, hello_chain.layout)
    return path


def _files(chain):
    files = [("links", (p.name, p.read_bytes())) for p in sorted(chain.links.glob("*.link"))]
    files.append(("artifact", ("hello.tar.gz", (chain.verify_dir / "hello.tar.gz").read_bytes())))
    files.append(("layout", ("root.layout", chain.layout.read_bytes())))
    return files


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes()
            for p in sorted((path / "public").rglob("*")) if p.is_file()}


# -- unit tests of the API with Flask's test client ----------------------------

def test_api_refusals_change_nothing(repo_dir, hello_chain):
    _, token = create_token(RepoPaths(repo_dir), "ci")
    client = create_app(repo_dir).test_client()
    before = _tree(repo_dir)
    data = {"name": "hello", "version": "1.0.0"}

    def post(headers=None, **overrides):
        form = {**data, **overrides.pop("form", {})}
        files = overrides.pop("files", _files(hello_chain))
        body = dict(form)
        for field, (name, content) in files:
            body.setdefault(field, [])
            from io import BytesIO
            body[field].append((BytesIO(content), name))
        return client.post("/api/v1/releases", data=body, headers=headers or {})

    assert post().status_code == 401
    assert post({"Authorization": "Bearer cst_wrong"}).status_code == 401
    auth = {"Authorization": f"Bearer {token}"}
    traversal = [("links", ("../../etc/passwd.link", b"{}")), *_files(hello_chain)]
    response = post(auth, files=traversal)
    assert response.status_code == 400 and "without '..'" in response.json["error"]
    response = post(auth, form={"version": "not a version"})
    assert response.status_code == 400 and "PEP 440" in response.json["error"]
    assert _tree(repo_dir) == before
    response = post(auth)
    assert response.status_code == 201, response.json
    assert post(auth).status_code == 409
    after_first = _tree(repo_dir)
    for same in ("1.0.0.0", "1.0"):  # PEP 440-equal spellings are one version
        response = post(auth, form={"version": same})
        assert response.status_code == 409, response.json
        assert "already published (as 1.0.0; PEP 440 equal)" in response.json["error"]
    response = post(auth, form={"version": "1" * 300})
    assert response.status_code == 400 and "longer than 64" in response.json["error"]
    response = post(auth, form={"version": "9" * 5000})
    assert response.status_code == 400 and "longer than 64" in response.json["error"]
    deep = [("links", ("build.abcdef01.link", b"[" * 100_000 + b"]" * 100_000)),
            *_files(hello_chain)]
    response = post(auth, form={"version": "2.0.0"}, files=deep)
    assert response.status_code == 400, response.json
    assert "link build.abcdef01.link refused" in response.json["error"]
    assert _tree(repo_dir) == after_first


def test_channels_never_move_backwards_unless_asked(repo_dir, hello_chain):
    _, token = create_token(RepoPaths(repo_dir), "ci")
    client = create_app(repo_dir).test_client()
    auth = {"Authorization": f"Bearer {token}"}

    def post(version: str, **form: str):
        from io import BytesIO

        body: dict = {"name": "hello", "version": version, **form}
        for field, (name, content) in _files(hello_chain):
            body.setdefault(field, []).append((BytesIO(content), name))
        return client.post("/api/v1/releases", data=body, headers=auth)

    def channels() -> dict:
        return load_index(CustodyRepository(repo_dir), "hello").channels

    assert post("2.5.0", channel="stable").status_code == 201
    before = _tree(repo_dir)
    response = post("0.9.0", channel="stable")  # a backport, sent to stable by mistake
    assert response.status_code == 409
    assert "hello stable is at 2.5.0, newer than 0.9.0" in response.json["error"]
    assert _tree(repo_dir) == before and channels() == {"stable": "2.5.0"}
    assert post("0.9.0", channel="").status_code == 201  # --no-channel
    assert post("0.9.1", channel="lts").status_code == 201  # another channel
    assert channels() == {"stable": "2.5.0", "lts": "0.9.1"}
    assert post("0.9.2", channel="stable", allow_channel_downgrade="1").status_code == 201
    assert channels()["stable"] == "0.9.2"


def test_upload_limit(repo_dir, hello_chain):
    paths = RepoPaths(repo_dir)
    config = RepoConfig.load(paths)
    config.max_upload_mib = 1
    config.save(paths)
    _, token = create_token(paths, "ci")
    client = create_app(repo_dir).test_client()
    from io import BytesIO

    response = client.post("/api/v1/releases", headers={"Authorization": f"Bearer {token}"},
                           data={"name": "hello", "version": "1.0.0",
                                 "artifact": (BytesIO(b"x" * (2 << 20)), "hello.tar.gz")})
    assert response.status_code == 413
    assert "limited to 1 MiB" in response.json["error"]


def test_served_paths_cannot_escape(repo_dir):
    client = create_app(repo_dir).test_client()
    assert client.get("/metadata/../private/config.json").status_code == 404
    assert client.get("/targets/..%2f..%2fprivate/config.json").status_code == 404
    response = client.get("/metadata/1.root.json")
    assert response.status_code == 200 and "immutable" in response.headers["Cache-Control"]
    assert client.get("/metadata/timestamp.json").headers["Cache-Control"] == "no-cache"
    assert client.get("/metadata/").status_code == 404
    assert client.get("/targets/packages").status_code == 404  # a folder


def test_served_tree_answers_as_flask_did(repo_dir):
    """The tree is served without Flask (`StaticTree`): same bytes, types, cache headers
    and validators as ``send_from_directory`` gave, 304 to a revalidation, HEAD without a
    body; a Range request and other methods still get Flask's answers."""
    from flask import Flask, send_from_directory

    client = create_app(repo_dir).test_client()
    paths = RepoPaths(repo_dir)
    target = next(p for p in paths.targets.rglob("*") if p.is_file())
    plain = Flask("plain")
    with plain.test_request_context():
        flask_etag = send_from_directory(paths.metadata, "timestamp.json").headers["ETag"]
    for url, file, kind in (
            ("/metadata/timestamp.json", paths.metadata / "timestamp.json", "application/json"),
            ("/metadata/1.root.json", paths.metadata / "1.root.json", "application/json"),
            (f"/targets/{target.relative_to(paths.targets)}", target,
             "application/octet-stream")):
        response = client.get(url)
        assert response.status_code == 200 and response.data == file.read_bytes()
        assert response.headers["Content-Type"] == kind
        assert response.headers["Content-Length"] == str(file.stat().st_size)
        etag = response.headers["ETag"]
        assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
        assert client.get(url, headers={"If-None-Match": f'W/{etag}, "other"'}).status_code == 304
        assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
        since = response.headers["Last-Modified"]
        assert client.get(url, headers={"If-Modified-Since": since}).status_code == 304
        head = client.head(url)
        assert head.status_code == 200 and head.data == b""
        assert head.headers["Content-Length"] == str(file.stat().st_size)
    big = paths.targets / "big.bin"  # past StaticTree's read-at-once size: a file wrapper
    big.write_bytes(bytes(range(256)) * 1200)
    response = client.get("/targets/big.bin")
    assert response.status_code == 200 and response.data == big.read_bytes()
    assert client.head("/targets/big.bin").headers["Content-Length"] == str(256 * 1200)
    assert client.get("/metadata/timestamp.json").headers["ETag"] == flask_etag
    ranged = client.get("/metadata/timestamp.json", headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206 and len(ranged.data) == 10
    assert client.post("/metadata/timestamp.json").status_code == 405
    assert client.get("/metadata/nope.json").json["error"]


# -- the real server -------------------------------------------------------------

@pytest.mark.slow
def test_push_through_the_api_and_concurrent_publishes(repo_dir, hello_chain, tmp_path):
    _, token = create_token(RepoPaths(repo_dir), "ci")
    with running_server(repo_dir, workers=3) as url:
        results: dict[str, subprocess.CompletedProcess[str]] = {}

        def push(version: str) -> None:
            results[version] = subprocess.run(
                [BIN / "custody-repo", "push", str(hello_chain.verify_dir / "hello.tar.gz"),
                 "--server", url, "--token", token, "--name", "hello", "--version", version,
                 "--layout", str(hello_chain.layout), "--links", str(hello_chain.links),
                 "--channel", f"c{version[2]}"],  # the order they land in is arbitrary
                capture_output=True, text=True, timeout=120, check=False)

        threads = [threading.Thread(target=push, args=(f"1.{i}.0",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(r.returncode == 0 for r in results.values()), {
            v: r.stderr for v, r in results.items()}
        index = load_index(CustodyRepository(repo_dir), "hello")
        assert set(index.versions) == {"1.0.0", "1.1.0", "1.2.0", "1.3.0"}
        assert requests.get(url + "/healthz", timeout=5).json()["timestamp_version"] >= 5
        bad = subprocess.run(
            [BIN / "custody-repo", "push", str(hello_chain.verify_dir / "hello.tar.gz"),
             "--server", url, "--token", "cst_nope", "--name", "hello", "--version", "2.0.0",
             "--layout", str(hello_chain.layout), "--links", str(hello_chain.links)],
            capture_output=True, text=True, timeout=60, check=False)
        assert bad.returncode == 1
        assert "refused the release (401)" in bad.stderr


@pytest.mark.slow
def test_cli_end_to_end(tmp_path, keydir, hello_chain):
    repo = tmp_path / "repo"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([BIN / "custody-repo", *args], capture_output=True, text=True,
                              timeout=120, check=False)

    r = cli("init", str(repo), "--bins", "4", "--layout-key", str(keydir / "owner"),
            "--no-password")
    assert r.returncode == 0, r.stderr
    assert "offline-keys/root" in r.stdout and "private/keys/online" in r.stdout
    assert cli("init", str(repo)).returncode == 1
    r = cli("layout", "add", str(repo), str(hello_chain.layout), "--key", str(keydir / "owner"),
            "--name", "hello", "--new")
    assert r.returncode == 0, r.stderr
    r = cli("publish", str(repo), str(hello_chain.verify_dir / "hello.tar.gz"), "--name", "hello",
            "--version", "1.0.0", "--layout", str(hello_chain.layout), "--links",
            str(hello_chain.links))
    assert r.returncode == 0, r.stderr
    published = {p: p.read_bytes() for p in (repo / "public").rglob("*") if p.is_file()}
    # The same publish again (a release script run twice) publishes nothing and succeeds ...
    r = cli("publish", str(repo), str(hello_chain.verify_dir / "hello.tar.gz"), "--name", "hello",
            "--version", "1.0.0", "--layout", str(hello_chain.layout), "--links",
            str(hello_chain.links))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout == ("kept packages/hello/1.0.0/hello.tar.gz: hello 1.0.0 is published with "
                        "this very file already; nothing published, no channel moved\n")
    assert {p: p.read_bytes() for p in (repo / "public").rglob("*") if p.is_file()} == published
    # ... another file as the same version is refused: versions are immutable.
    (tmp_path / "other").mkdir()
    (tmp_path / "other/hello.tar.gz").write_bytes(b"rebuilt, other bytes")
    r = cli("publish", str(repo), str(tmp_path / "other/hello.tar.gz"), "--name", "hello",
            "--version", "1.0.0", "--layout", str(hello_chain.layout), "--links",
            str(hello_chain.links))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "already published" in r.stderr
    r = cli("status", str(repo), "--json")
    roles = {row["role"]: row for row in json.loads(r.stdout)["roles"]}
    assert roles["layouts"]["version"] == 2 and roles["bins-3"]["signatures"] == 1
    assert cli("channel", str(repo), "hello", "beta", "1.0.0").returncode == 0
    r = cli("publish", str(repo), str(hello_chain.verify_dir / "hello.tar.gz"), "--name",
            "hello", "--version", "0.9.0", "--layout", str(hello_chain.layout), "--links",
            str(hello_chain.links))
    assert r.returncode == 1 and "--no-channel" in r.stderr
    r = cli("publish", str(repo), str(hello_chain.verify_dir / "hello.tar.gz"), "--name",
            "hello", "--version", "0.9.0", "--layout", str(hello_chain.layout), "--links",
            str(hello_chain.links), "--no-channel")
    assert r.returncode == 0, r.stderr
    r = cli("channel", str(repo), "hello", "beta", "0.9.0")
    assert r.returncode == 1 and "newer than 0.9.0" in r.stderr
    r = cli("channel", str(repo), "hello", "beta", "0.9.0", "--allow-channel-downgrade")
    assert r.returncode == 0, r.stderr
    assert cli("bump", str(repo), "--force").returncode == 0
    assert cli("remove", str(repo), "hello", "1.0.0").returncode == 0
    assert cli("gc", str(repo)).returncode == 0
    assert cli("publish", str(repo)).returncode == 2  # usage error


def test_server_resigns_online_roles_on_a_timer(repo_dir):
    import time

    paths = RepoPaths(repo_dir)
    config = RepoConfig.load(paths)
    config.bump_margin_hours = 48  # the 1-day timestamp is always "near expiry"
    config.save(paths)
    before = CustodyRepository(repo_dir).open("timestamp").signed.version
    app = create_app(repo_dir, bump_interval=0.2)
    try:
        deadline = time.monotonic() + 20
        while CustodyRepository(repo_dir).open("timestamp").signed.version == before:
            assert time.monotonic() < deadline, "the timer never re-signed the timestamp"
            time.sleep(0.1)
    finally:
        app.extensions["custody-bumper"].set()


def test_token_revocation(repo_dir, hello_chain):
    from custody.repository.tokens import list_tokens, revoke_token

    paths = RepoPaths(repo_dir)
    token_id, token = create_token(paths, "ci")
    assert list_tokens(paths)[token_id]["name"] == "ci"
    revoke_token(paths, token_id)
    client = create_app(repo_dir).test_client()
    response = client.post("/api/v1/releases", headers={"Authorization": f"Bearer {token}"},
                           data={"name": "hello", "version": "1.0.0"})
    assert response.status_code == 401


def test_rollouts_through_the_api(repo_dir, hello_chain):
    """CI drives a rollout with its publish token; errors name what was wrong."""
    _, token = create_token(RepoPaths(repo_dir), "ci")
    client = create_app(repo_dir).test_client()
    auth = {"Authorization": f"Bearer {token}"}
    from io import BytesIO

    for version, channel in (("1.0.0", "stable"), ("2.0.0", "")):
        body: dict = {"name": "hello", "version": version, "channel": channel}
        for field_name, (name, content) in _files(hello_chain):
            body.setdefault(field_name, []).append((BytesIO(content), name))
        assert client.post("/api/v1/releases", data=body, headers=auth).status_code == 201

    def act(**fields):
        return client.post("/api/v1/rollouts", json={"package": "hello", "channel": "stable",
                                                     **fields}, headers=auth)

    assert act(action="start", version="2.0.0", percent="5").status_code == 400  # a string
    r = act(action="start", version="2.0.0", percent=5, max_failure_rate=0.1)
    assert r.status_code == 200 and r.json["rollout"]["percent"] == 5.0, r.json
    assert act(action="raise", percent=1).status_code == 400  # lowering: pause instead
    assert act(action="raise", percent=50).json["rollout"]["percent"] == 50.0
    assert act(action="pause", reason="watching").json["rollout"]["state"] == "paused"
    assert act(action="resume").json["rollout"]["state"] == "active"
    r = act(action="complete")
    assert r.status_code == 200 and r.json["version"] == "2.0.0"
    assert load_index(CustodyRepository(repo_dir), "hello").channels == {"stable": "2.0.0"}
    assert act(action="pause").status_code == 404  # no rollout any more
    assert act(action="explode").status_code == 400


def test_two_servers_on_one_machine_share_no_control_socket(tmp_path, keydir):
    """gunicorn's control socket defaults to one path per user ($HOME/.gunicorn/gunicorn.ctl):
    serve turns it off, so two repositories served by one user never meet there."""
    import os
    import time

    from tests.helpers import free_port

    env = {**os.environ, "HOME": str(tmp_path / "home"), "XDG_RUNTIME_DIR": ""}
    procs, urls = [], []
    for name in ("a", "b"):
        make_repo(tmp_path / name, keydir)
        port = free_port()
        procs.append(subprocess.Popen(
            [str(BIN / "custody-repo"), "serve", str(tmp_path / name), "--port", str(port),
             "--workers", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True))
        urls.append(f"http://127.0.0.1:{port}/healthz")
    try:
        for url in urls:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if requests.get(url, timeout=1).ok:
                        break
                except requests.ConnectionError:
                    pass
                assert time.monotonic() < deadline, f"{url} never answered"
                time.sleep(0.1)
        assert not (tmp_path / "home/.gunicorn").exists()
    finally:
        for proc in procs:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)


def test_access_log_line_is_gunicorns(tmp_path):
    """`AccessLog` writes the very line gunicorn's own logger writes (its default format),
    quotes escaped, one line per request."""
    import base64
    import datetime
    import os
    from types import SimpleNamespace

    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    from custody.repository.server import AccessLog

    theirs = tmp_path / "gunicorn.log"
    cfg = Config()
    cfg.set("accesslog", str(theirs))
    reference = Logger(cfg)
    read, write = os.pipe()
    ours = AccessLog(cfg)
    ours.access_fd = write
    user = base64.b64encode(b"ops:secret").decode()
    cases = [({"REMOTE_ADDR": "127.0.0.1", "REQUEST_METHOD": "GET",
               "RAW_URI": "/metadata/timestamp.json", "SERVER_PROTOCOL": "HTTP/1.1",
               "HTTP_USER_AGENT": 'python-requests/2 "quoted"'}, "200 OK", 434),
             ({"REMOTE_ADDR": "10.0.0.2", "REQUEST_METHOD": "POST",
               "RAW_URI": "/api/v1/reports?x=1", "SERVER_PROTOCOL": "HTTP/1.0", "HTTP_REFERER": "https://example.org/",
               "HTTP_AUTHORIZATION": f"Basic {user}"}, "404 NOT FOUND", None),
             ({"REMOTE_ADDR": "::1", "REQUEST_METHOD": "HEAD", "RAW_URI": "/healthz",
               "SERVER_PROTOCOL": "HTTP/1.1"}, "304 Not Modified", 0)]
    for environ, status, sent in cases:
        resp = SimpleNamespace(status=status, sent=sent, headers=[])
        req = SimpleNamespace(headers=[])
        took = datetime.timedelta(microseconds=1500)
        reference.access(resp, req, environ, took)
        ours.access(resp, req, environ, took)
    os.close(write)
    with os.fdopen(read) as pipe:
        written = pipe.read()
    for handler in reference.access_log.handlers:
        handler.flush()

    def strip_time(text):  # the two loggers may straddle a second
        return [line.split("[", 1)[0] + line.split("]", 1)[1] for line in text.splitlines()]

    assert strip_time(written) == strip_time(theirs.read_text())
    assert len(written.splitlines()) == 3 and ' - ops [' in written


@pytest.mark.slow
def test_idle_and_slow_clients_do_not_stall_the_others(repo_dir):
    """One worker, and beside every request: 20 kept-alive connections left idle, 3
    connected and silent, 2 sending their headers a byte every 0.3 s (slowloris). Under a
    sync worker the first of them held the worker (for its whole timeout); under gthread an
    idle kept-alive connection waits in the worker's poller, a silent or slow one holds one
    of its threads, and every other request is answered at once."""
    import socket
    import time

    request = b"GET /metadata/timestamp.json HTTP/1.1\r\nHost: custody\r\n\r\n"
    with running_server(repo_dir, workers=1) as url:
        port = int(url.rsplit(":", 1)[1])
        held: list[socket.socket] = []
        try:
            for _ in range(20):
                conn = socket.create_connection(("127.0.0.1", port), timeout=10)
                conn.sendall(request)
                assert conn.recv(65536).startswith(b"HTTP/1.1 200")
                held.append(conn)  # kept alive, and never used again
            held += [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
            slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
            held += slow
            stop = threading.Event()

            def trickle() -> None:
                for i in range(1000):
                    if stop.wait(0.3):
                        return
                    for conn in slow:
                        conn.sendall(request[i:i + 1] if i < len(request) - 4 else b"X")

            threading.Thread(target=trickle, daemon=True).start()
            time.sleep(1.0)
            took = []
            for _ in range(20):
                start = time.monotonic()
                answer = requests.get(f"{url}/metadata/timestamp.json", timeout=30)
                took.append(time.monotonic() - start)
                assert answer.status_code == 200
            stop.set()
            assert max(took) < 3.0, took  # each well under a second on a quiet machine
        finally:
            for conn in held:
                conn.close()
