"""The real nginx, with deploy/nginx-custody.conf verbatim, in front of the repository
server and in front of a bucket (Swift's S3 API) that holds the served tree."""

from __future__ import annotations

import pytest
import requests

from tests.helpers import custody, running_nginx, running_server
from tests.s3.conftest import (  # noqa: F401 (object_store: the fixture, started on demand)
    bucket_repository,
    object_store,
    repo_cli,
)

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


def test_nginx_in_front_of_a_bucket(object_store, tmp_path, keydir, hello_chain):  # noqa: F811
    """The tree from the bucket (nginx adds the bucket's path to /metadata/...), the API
    from custody-repo serve; a client installs and follows a publish through the cache."""
    repo = tmp_path / "repo"
    _, http_url = bucket_repository(object_store, repo, keydir, hello_chain)
    release = [hello_chain.verify_dir / "hello.tar.gz", "--name", "hello", "--layout",
               hello_chain.layout, "--links", hello_chain.links]
    assert repo_cli("publish", repo, *release, "--version", "1.0.0").returncode == 0
    with running_server(repo) as api, \
            running_nginx(api, tmp_path / "nginx", tree=http_url) as url:
        home = tmp_path / "home"
        r = custody(home, "init", "--url", url, "--root",
                    str(repo / "public/metadata/1.root.json"), "--inspections", "run")
        assert r.returncode == 0, r.stderr
        r = custody(home, "install", "hello")
        assert r.returncode == 0, r.stderr
        versioned = sorted(p.name for p in (repo / "public/metadata").glob("*.snapshot.json"))
        statuses = [requests.get(f"{url}/metadata/{versioned[-1]}", timeout=5).headers[
            "X-Cache-Status"] for _ in range(2)]
        assert statuses[-1] == "HIT"
        answer = requests.get(f"{url}/metadata/timestamp.json", timeout=5)
        assert answer.ok and answer.headers["X-Cache-Status"] != "HIT"
        assert answer.headers["Cache-Control"] == "no-cache"
        assert requests.get(f"{url}/healthz", timeout=5).json()["status"] == "ok"  # the API
        assert repo_cli("publish", repo, *release, "--version", "1.1.0").returncode == 0
        r = custody(home, "update")
        assert r.returncode == 0 and "updated hello 1.0.0 -> 1.1.0" in r.stdout, r.stderr
