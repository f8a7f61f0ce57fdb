"""Mirrors: a dead, slow, endless or malicious mirror delays an update, never corrupts it."""

from __future__ import annotations

import json
import time

import pytest

from tests.helpers import Mirror, custody, free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def mirrors(served):
    served.publish("1.0.0")
    hostile, good = Mirror(served.repo_dir / "public"), Mirror(served.repo_dir / "public")
    yield hostile, good
    hostile.close()
    good.close()


def init(home, *urls, **config):
    r = custody(home, "init", *[a for u in urls for a in ("--url", u)], "--root",
                str(home.parent / "repo/public/metadata/1.root.json"), "--inspections", "run")
    assert r.returncode == 0, r.stderr
    path = home / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}))


def test_dead_mirror_first(tmp_path, mirrors):
    _, good = mirrors
    home = tmp_path / "home"
    init(home, f"http://127.0.0.1:{free_port()}", good.url)
    r = custody(home, "install", "hello")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("tamper", ["snapshot", "artifact", "link"])
def test_malicious_mirror_first_then_good(tmp_path, mirrors, tamper):
    hostile, good = mirrors
    public = hostile.public
    if tamper == "snapshot":
        path = max(public.glob("metadata/*.snapshot.json"), key=lambda p: int(p.name.split(".")[0]))
        data = json.loads(path.read_text())
        data["signed"]["expires"] = "2099-01-01T00:00:00Z"  # breaks the signature
        hostile.overrides[path.name] = json.dumps(data).encode()
    elif tamper == "artifact":
        hostile.overrides["hello.tar.gz"] = b"trojan"
    else:
        hostile.overrides[".link"] = b'{"signed": {}, "signatures": []}'
    home = tmp_path / "home"
    init(home, hostile.url, good.url)
    r = custody(home, "install", "hello")
    assert r.returncode == 0, r.stderr
    assert (home / "packages/hello/current/src/hello.py").exists()


def test_only_a_malicious_mirror_is_refused(tmp_path, mirrors):
    hostile, _ = mirrors
    hostile.overrides["hello.tar.gz"] = b"trojan"
    home = tmp_path / "home"
    init(home, hostile.url)
    r = custody(home, "install", "hello")
    assert r.returncode == 1
    assert "TUF refused the download of packages/hello/1.0.0/hello.tar.gz" in r.stderr
    assert not (home / "packages").exists() and not (home / "state.json").exists()


def test_slow_mirror_is_abandoned(tmp_path, mirrors):
    hostile, good = mirrors
    hostile.trickle.add("timestamp.json")
    home = tmp_path / "home"
    init(home, hostile.url, good.url, min_rate=200.0, slow_grace=1.0)
    start = time.monotonic()
    r = custody(home, "install", "hello")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - start < 15
    only_slow = tmp_path / "home2"
    init(only_slow, hostile.url, min_rate=200.0, slow_grace=1.0)
    r = custody(only_slow, "install", "hello")
    assert r.returncode == 1 and "SlowRetrievalError" in r.stderr


def test_endless_metadata_hits_the_length_limit(tmp_path, mirrors):
    hostile, _ = mirrors
    hostile.endless.add("timestamp.json")
    home = tmp_path / "home"
    init(home, hostile.url)
    start = time.monotonic()
    r = custody(home, "install", "hello")
    assert r.returncode == 1
    assert "DownloadLengthMismatchError" in r.stderr or "exceeding" in r.stderr
    assert time.monotonic() - start < 10
