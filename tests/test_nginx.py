"""The real nginx in front of the repository server, with deploy/nginx-custody.conf."""

from __future__ import annotations

import pytest
import requests

from tests.helpers import custody, running_nginx

pytestmark = pytest.mark.slow


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
