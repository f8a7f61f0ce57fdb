"""The real nginx in front of the repository server, with deploy/nginx-custody.conf."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers import custody, free_port

pytestmark = pytest.mark.slow
CONF = Path(__file__).resolve().parent.parent / "deploy/nginx-custody.conf"


def _nginx() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                      else None)
    if found is None and os.geteuid() == 0:
        subprocess.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install "
                       "-y -qq nginx-light", shell=True, check=False, capture_output=True)
        found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                          else None)
    if found is None:
        pytest.skip("nginx is not installed and could not be (apt, as root)")
    return found


@contextlib.contextmanager
def running_nginx(upstream: str, work: Path) -> Iterator[str]:
    binary = _nginx()
    port = free_port()
    (work / "logs").mkdir(parents=True)
    site = CONF.read_text().format(listen=f"127.0.0.1:{port}", upstream=upstream,
                                   cache_dir=work / "cache")
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


def test_nginx_caches_the_immutable_and_revalidates_the_timestamp(served, tmp_path):
    served.publish("1.0.0")
    with running_nginx(served.url, tmp_path / "nginx") as url:
        home = tmp_path / "home"
        r = custody(home, "init", "--url", url, "--root", str(served.root),
                    "--inspections", "run")
        assert r.returncode == 0
        r = custody(home, "install", "hello")
        assert r.returncode == 0, r.stderr

        versioned = sorted(p.name for p in (served.repo_dir / "public/metadata").glob(
            "*.snapshot.json"))[-1]
        statuses = [requests.get(f"{url}/metadata/{versioned}", timeout=5).headers[
            "X-Cache-Status"] for _ in range(2)]
        assert statuses[-1] == "HIT"  # served from the cache
        target = next((served.repo_dir / "public/targets/packages/hello/1.0.0").iterdir())
        artifact = f"{url}/targets/packages/hello/1.0.0/{target.name}"
        assert requests.get(artifact, timeout=5).headers["X-Cache-Status"] == "HIT"
        for _ in range(2):  # never from the cache: each client sees the newest timestamp
            answer = requests.get(f"{url}/metadata/timestamp.json", timeout=5)
            assert answer.headers["X-Cache-Status"] != "HIT"
            assert answer.headers["Cache-Control"] == "no-cache"

        served.publish("1.1.0")  # followed through the cache at the next revalidation
        r = custody(home, "update")
        assert r.returncode == 0 and "updated hello 1.0.0 -> 1.1.0" in r.stdout, r.stderr
