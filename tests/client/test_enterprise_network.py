"""Enterprise networks, with real parts: tinyproxy, and nginx serving the tree over TLS.

- tinyproxy (Debian's) in front of a mirror that refuses every request not
  forwarded by a proxy (no ``Via`` header): an install that succeeds went
  through the proxy for every request, and the proxy's log lists each of them;
- ``NO_PROXY`` and the configuration's ``http_proxy: ""`` reach the mirror directly;
- nginx over TLS with a certificate from a CA this test makes (cryptography):
  trusted through ``ca_bundle`` or ``SSL_CERT_FILE``, refused (exit 3, one
  sentence) without it; and a second nginx server with ``ssl_verify_client on``
  that refuses a client without its certificate and serves one with it;
- an ``https://`` mirror through the proxy: a CONNECT tunnel, TLS end to end.
"""

from __future__ import annotations

import contextlib
import datetime
import http.server
import ipaddress
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.helpers import BIN, _nginx, debian_tool, free_port, serve_in_thread

pytestmark = pytest.mark.slow

PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                   "ALL_PROXY", "no_proxy", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR")


def run(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``custody --home home ...`` with no proxy or CA variables but ``env``'s."""
    clean = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    return subprocess.run([str(BIN / "custody"), "--home", str(home), *args],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**clean, **env})


def init(home: Path, served, url: str, **config: object) -> None:
    r = run(home, "init", "--url", url, "--root", str(served.root), "--inspections", "run")
    assert r.returncode == 0, r.stderr
    path = home / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}))


def one_sentence(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


# -- a mirror that only a proxy can reach ---------------------------------------------

class ProxiedOnlyMirror:
    """The public tree over HTTP on 127.0.0.1; without ``direct``, a request without Via is 403.

    A proxy adds ``Via`` to what it forwards (RFC 9110); a client that
    connects directly does not, so it is refused, as a firewall would refuse it.
    """

    def __init__(self, public: Path, direct: bool = False) -> None:
        self.requests: list[tuple[str, str | None]] = []
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                via = self.headers.get("Via")
                mirror.requests.append((self.path, via))
                file = (public / self.path.lstrip("/")).resolve()
                if via is None and not direct:
                    self.send_error(403, "direct connections are blocked")
                elif file.is_relative_to(public.resolve()) and file.is_file():
                    data = file.read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                else:
                    self.send_error(404)

        self.server, self.url = serve_in_thread(Handler)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _tinyproxy() -> str:
    return debian_tool("tinyproxy")


@dataclass
class Proxy:
    url: str
    log: Path

    def requests(self) -> list[str]:
        """What clients asked the proxy for: ``GET http://...`` or ``CONNECT host:port``."""
        marker = "Request (file descriptor "
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [line.split("): ", 1)[1].rsplit(" HTTP/", 1)[0] for line in lines
                if marker in line]


@contextlib.contextmanager
def running_tinyproxy(work: Path, basic_auth: str = "") -> Iterator[Proxy]:
    """tinyproxy on a free loopback port; ``basic_auth`` ("user password") makes it ask for it."""
    binary = _tinyproxy()
    work.mkdir(parents=True)
    port = free_port()
    log = work / "tinyproxy.log"
    # No ConnectPort line: CONNECT to any port (the TLS mirror's is not 443).
    (work / "tinyproxy.conf").write_text(
        f"Port {port}\nListen 127.0.0.1\nTimeout 60\nLogFile \"{log}\"\nLogLevel Info\n"
        "MaxClients 50\nAllow 127.0.0.1\n" + (f"BasicAuth {basic_auth}\n" if basic_auth else ""))
    proc = subprocess.Popen([binary, "-d", "-c", str(work / "tinyproxy.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not (log.exists() and "Accepting connections" in log.read_text()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tinyproxy did not start: {proc.stderr.read().decode()}"
                                   if proc.stderr else "tinyproxy did not start")
            time.sleep(0.05)
        yield Proxy(f"http://127.0.0.1:{port}", log)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def proxy(tmp_path):
    with running_tinyproxy(tmp_path / "tinyproxy") as running:
        yield running


def test_every_request_of_an_install_goes_through_the_proxy(tmp_path, served, proxy):
    served.publish("1.0.0")
    mirror = ProxiedOnlyMirror(served.repo_dir / "public")
    try:
        home = tmp_path / "home"
        init(home, served, mirror.url)
        blocked = run(home, "install", "hello")  # no proxy: the "firewall" refuses
        assert blocked.returncode == 3, blocked.stderr
        assert "HTTP 403" in one_sentence(blocked)
        mirror.requests.clear()

        r = run(home, "install", "hello", http_proxy=proxy.url)
        assert r.returncode == 0, r.stderr
        paths = [path for path, _ in mirror.requests]
        assert any(p.endswith("timestamp.json") for p in paths)
        assert any("/targets/packages/hello/1.0.0/" in p for p in paths)  # the artifact
        assert all(via is not None and "tinyproxy" in via for _, via in mirror.requests)
        assert sorted(proxy.requests()) == sorted(f"GET {mirror.url}{p}" for p in paths)
    finally:
        mirror.close()


def test_proxy_from_the_configuration_and_no_proxy_bypassing_it(tmp_path, served, proxy):
    served.publish("1.0.0")
    mirror = ProxiedOnlyMirror(served.repo_dir / "public", direct=True)
    try:
        through = tmp_path / "through"
        init(through, served, mirror.url, http_proxy=proxy.url)  # config.json, no variables
        r = run(through, "install", "hello")
        assert r.returncode == 0, r.stderr
        assert mirror.requests and all(via for _, via in mirror.requests)
        seen = len(proxy.requests())
        assert seen == len(mirror.requests)

        for name, config, env in [
            ("cidr", {}, {"http_proxy": proxy.url, "NO_PROXY": "example.com,127.0.0.0/8"}),
            ("host", {}, {"http_proxy": proxy.url, "no_proxy": "127.0.0.1"}),
            # "" in the configuration turns the environment's proxy off (a dead one here)
            ("off", {"http_proxy": ""}, {"http_proxy": f"http://127.0.0.1:{free_port()}"}),
        ]:
            mirror.requests.clear()
            home = tmp_path / name
            init(home, served, mirror.url, **config)
            r = run(home, "install", "hello", **env)
            assert r.returncode == 0, (name, r.stderr)
            assert mirror.requests and not any(via for _, via in mirror.requests), name
            assert len(proxy.requests()) == seen, name  # the proxy saw none of them
    finally:
        mirror.close()


def test_proxy_credentials_from_the_proxy_url(tmp_path, served):
    served.publish("1.0.0")
    mirror = ProxiedOnlyMirror(served.repo_dir / "public")
    try:
        with running_tinyproxy(tmp_path / "tinyproxy", "agent s3cret") as proxy:
            home = tmp_path / "home"
            init(home, served, mirror.url)
            address = proxy.url.removeprefix("http://")
            r = run(home, "install", "hello", http_proxy=f"http://agent:wrong@{address}")
            # tinyproxy 1.11 answers a forwarded request's bad credentials with 401
            assert r.returncode == 3 and re.search(r"HTTP 40[17] ", one_sentence(r))
            r = run(home, "install", "hello", http_proxy=f"http://agent:s3cret@{address}")
            assert r.returncode == 0, r.stderr
            assert mirror.requests and all(via for _, via in mirror.requests)
    finally:
        mirror.close()


def test_a_dead_proxy_is_an_outage(tmp_path, served):
    served.publish("1.0.0")
    home = tmp_path / "home"
    init(home, served, served.url)
    r = run(home, "install", "hello", http_proxy=f"http://127.0.0.1:{free_port()}")
    assert r.returncode == 3
    assert "ProxyError" in one_sentence(r)


# -- TLS: a private CA, and mutual TLS ------------------------------------------------

@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _certificate(subject: str, key, issuer: x509.Name | None = None, issuer_key=None,
                 ca: bool = False, server: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    if issuer_key is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    """A test CA, a server certificate for 127.0.0.1 and a client certificate it signed."""
    out = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("custody test CA", ca_key, ca=True)
    files = {}
    for name, server in (("server", True), ("client", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(f"custody test {name}", key, ca.subject, ca_key, server=server)
        files[name] = (out / f"{name}.pem", out / f"{name}.key")
        files[name][0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[name][1].write_bytes(_key_pem(key))
    (out / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    other_key = ec.generate_private_key(ec.SECP256R1())
    (out / "other-ca.pem").write_bytes(_certificate("another CA", other_key, ca=True)
                                       .public_bytes(serialization.Encoding.PEM))
    return Pki(out / "ca.pem", *files["server"], *files["client"], out / "other-ca.pem")


@contextlib.contextmanager
def tls_nginx(public: Path, pki: Pki, work: Path) -> Iterator[tuple[str, str]]:
    """nginx serving ``public`` over TLS twice: (plain TLS URL, mutual TLS URL)."""
    binary = _nginx()
    (work / "logs").mkdir(parents=True)
    tls, mutual = free_port(), free_port()
    common = (f"  ssl_certificate {pki.server_cert};\n  ssl_certificate_key {pki.server_key};\n"
              f"  root {public};\n  location / {{ try_files $uri =404; }}\n")
    (work / "nginx.conf").write_text(
        f"user root;\nworker_processes 1;\npid {work}/nginx.pid;\n"
        f"error_log {work}/logs/error.log;\nevents {{ worker_connections 64; }}\nhttp {{\n"
        f" access_log {work}/logs/access.log;\n client_body_temp_path {work}/body;\n"
        f" server {{\n  listen 127.0.0.1:{tls} ssl;\n{common} }}\n"
        f" server {{\n  listen 127.0.0.1:{mutual} ssl;\n{common}"
        f"  ssl_client_certificate {pki.ca};\n  ssl_verify_client on;\n }}\n}}\n")
    proc = subprocess.Popen([binary, "-p", str(work), "-c", str(work / "nginx.conf"), "-g",
                             "daemon off;"], stderr=subprocess.PIPE)
    try:
        import socket

        for port in (tls, mutual):
            for _ in range(100):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port),
                                                                            timeout=1):
                    break
                if proc.poll() is not None:
                    raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "died")
                time.sleep(0.05)
        yield f"https://127.0.0.1:{tls}", f"https://127.0.0.1:{mutual}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def mirrors(served, pki, tmp_path):
    served.publish("1.0.0")
    with tls_nginx(served.repo_dir / "public", pki, tmp_path / "nginx") as urls:
        yield urls


def test_a_private_ca_from_the_configuration_or_ssl_cert_file(tmp_path, served, pki, mirrors):
    tls, _ = mirrors
    home = tmp_path / "home"
    init(home, served, tls)
    untrusted = run(home, "install", "hello", SSL_CERT_FILE=str(pki.other_ca))
    assert untrusted.returncode == 3
    assert "certificate verify failed" in one_sentence(untrusted)
    system = run(home, "install", "hello")  # the system's CAs never signed the test CA
    assert system.returncode == 3 and "certificate verify failed" in one_sentence(system)

    r = run(home, "install", "hello", SSL_CERT_FILE=str(pki.ca))
    assert r.returncode == 0, r.stderr

    configured = tmp_path / "configured"
    init(configured, served, tls, ca_bundle=str(pki.ca))
    r = run(configured, "install", "hello", SSL_CERT_FILE=str(pki.other_ca))  # config wins
    assert r.returncode == 0, r.stderr


def test_mutual_tls_needs_the_client_certificate(tmp_path, served, pki, mirrors):
    _, mutual = mirrors
    without = tmp_path / "without"
    init(without, served, mutual, ca_bundle=str(pki.ca))
    r = run(without, "install", "hello")
    assert r.returncode == 3, r.stderr
    assert "unreachable" in one_sentence(r) and "HTTP 400" in r.stderr  # nginx: no certificate
    assert "require a client certificate" in r.stderr
    assert not (without / "packages").exists()

    home = tmp_path / "home"
    init(home, served, mutual, ca_bundle=str(pki.ca), client_cert=str(pki.client_cert),
         client_key=str(pki.client_key))
    r = run(home, "install", "hello")
    assert r.returncode == 0, r.stderr
    assert (home / "packages/hello/current").is_symlink()


def test_a_tls_mirror_through_the_proxy_is_a_connect_tunnel(tmp_path, served, pki, mirrors,
                                                           proxy):
    _, mutual = mirrors
    home = tmp_path / "home"
    init(home, served, mutual, ca_bundle=str(pki.ca), client_cert=str(pki.client_cert),
         client_key=str(pki.client_key))
    r = run(home, "install", "hello", HTTPS_PROXY=proxy.url)
    assert r.returncode == 0, r.stderr
    tunnels = proxy.requests()
    assert tunnels and set(tunnels) == {f"CONNECT {mutual.removeprefix('https://')}"}


def test_tls_settings_that_cannot_work_are_usage_errors(tmp_path, served, pki, mirrors):
    tls, _ = mirrors
    home = tmp_path / "home"
    init(home, served, tls, ca_bundle=str(tmp_path / "missing.pem"))
    r = run(home, "install", "hello")
    assert r.returncode == 2
    assert one_sentence(r).endswith("missing.pem, which is not a readable file")
    keyless = tmp_path / "keyless"
    init(keyless, served, tls, ca_bundle=str(pki.ca), client_cert=str(pki.ca))  # no key in it
    r = run(keyless, "install", "hello")
    assert r.returncode == 2 and "cannot be loaded" in one_sentence(r)
