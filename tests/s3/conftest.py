"""A real object store for the bucket tests: OpenStack Swift's S3 API on 127.0.0.1.

Started once per test session by the project's own ``swift-s3.sh`` (which
installs Debian's packages when they are missing); the tests are skipped,
saying why, only where that cannot be done (not root, no apt).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import free_port

SCRIPT = Path(__file__).with_name("swift-s3.sh")
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test:tester", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class ObjectStore:
    endpoint: str

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="test:tester", aws_secret_access_key="testing",
                            config=Config(s3={"addressing_style": "path"},
                                          retries={"max_attempts": 10, "mode": "standard"}))

    def public_bucket(self) -> tuple[str, str]:
        """A new public-read bucket: (its s3:// URL with a prefix, its anonymous HTTP URL)."""
        name = f"custody-{uuid.uuid4().hex[:10]}"
        self.client().create_bucket(Bucket=name, ACL="public-read")
        return f"s3://{name}/tree", f"{self.endpoint}/v1/AUTH_test/{name}/tree"


@pytest.fixture(scope="session")
def object_store(tmp_path_factory) -> Iterator[ObjectStore]:
    if os.geteuid() != 0:
        pytest.skip("Swift is installed and run as root (apt); not root here")
    directory = tmp_path_factory.mktemp("swift")
    port = free_port()
    started = subprocess.run(["bash", str(SCRIPT), "start", str(directory), str(port)],
                             capture_output=True, text=True, timeout=900, check=False)
    if started.returncode != 0:
        pytest.skip(f"no object store: {started.stderr.strip()[-300:]}")
    os.environ.update(CREDENTIALS)  # boto3's default chain, as an operator's shell has it
    try:
        yield ObjectStore(f"http://127.0.0.1:{port}")
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(directory)], check=False,
                       timeout=60)


def repo_cli(*args: object) -> subprocess.CompletedProcess[str]:
    from tests.helpers import BIN

    return subprocess.run([str(BIN / "custody-repo"), *[str(a) for a in args]],
                          capture_output=True, text=True, timeout=120, check=False)


def bucket_repository(object_store: ObjectStore, repo: Path, keydir: Path, chain
                      ) -> tuple[str, str]:
    """A repository whose tree is also in a fresh public bucket, with the hello layout;
    the bucket's (s3://, http://) URLs."""
    s3_url, http_url = object_store.public_bucket()
    r = repo_cli("init", repo, "--bins", "4", "--public", s3_url, "--endpoint-url",
                 object_store.endpoint, "--layout-key", keydir / "owner", "--no-password")
    assert r.returncode == 0, r.stderr
    r = repo_cli("layout", "add", repo, chain.layout, "--key", keydir / "owner", "--name",
                 "hello", "--new")
    assert r.returncode == 0, r.stderr
    return s3_url, http_url


@contextlib.contextmanager
def read_only_endpoint(object_store: ObjectStore) -> Iterator[str]:
    """The store as credentials that may read but not write see it: a relay on 127.0.0.1 that
    passes reads to Swift and answers every write with S3's AccessDenied; its endpoint URL."""
    import http.client
    import http.server
    from urllib.parse import urlsplit

    from tests.helpers import serve_in_thread

    upstream = urlsplit(object_store.endpoint)

    class Relay(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _refuse(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            body = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
                    b"<Message>Access Denied.</Message></Error>")
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_PUT = do_POST = do_DELETE = _refuse

        def _relay(self) -> None:
            # The Host header goes through unchanged: the request's signature covers it.
            connection = http.client.HTTPConnection(upstream.hostname, upstream.port,
                                                    timeout=60)
            connection.request(self.command, self.path, headers=dict(self.headers))
            response = connection.getresponse()
            body = response.read() if self.command != "HEAD" else b""
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(name, value)
            self.send_header("Content-Length", response.getheader("Content-Length") or
                             str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            connection.close()

        do_GET = do_HEAD = _relay

    server, url = serve_in_thread(Relay)
    try:
        yield url
    finally:
        server.shutdown()


@contextlib.contextmanager
def endpoint_of(repo: Path, endpoint: str) -> Iterator[None]:
    """The repository's bucket reached at ``endpoint`` for the block (private/config.json)."""
    import json

    config = repo / "private/config.json"
    saved = config.read_text()
    config.write_text(json.dumps({**json.loads(saved), "endpoint_url": endpoint}))
    try:
        yield
    finally:
        config.write_text(saved)
