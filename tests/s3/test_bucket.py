"""The served tree in a real bucket (Swift's S3 API): every write command, clients reading it."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import BIN, custody
from tests.s3.conftest import bucket_repository, endpoint_of, read_only_endpoint, repo_cli

pytestmark = pytest.mark.slow


def trust(home: Path, url: str, repo: Path) -> None:
    """A client home trusting the repository's first root, reading the bucket at ``url``."""
    r = custody(home, "init", "--url", url, "--root", str(repo / "public/metadata/1.root.json"),
                "--inspections", "run")
    assert r.returncode == 0, r.stderr


def publish(repo: Path, chain, version: str, *extra: str) -> None:
    r = repo_cli("publish", repo, chain.verify_dir / "hello.tar.gz", "--name", "hello",
                 "--version", version, "--layout", chain.layout, "--links", chain.links, *extra)
    assert r.returncode == 0, r.stderr


def head(url: str) -> dict[str, str]:
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD")) as response:
        return dict(response.headers)


def test_every_write_command_keeps_the_bucket_in_step(object_store, tmp_path, keydir,
                                                       hello_chain):
    s3_url, http_url = object_store.public_bucket()
    repo = tmp_path / "repo"
    r = repo_cli("init", repo, "--bins", "8", "--public", s3_url, "--endpoint-url",
                 object_store.endpoint, "--layout-key", keydir / "owner", "--no-password")
    assert r.returncode == 0, r.stderr
    assert f"publishing the served tree to {s3_url}" in r.stdout
    r = repo_cli("layout", "add", repo, hello_chain.layout, "--key", keydir / "owner",
                 "--name", "hello", "--new")
    assert r.returncode == 0, r.stderr
    publish(repo, hello_chain, "1.0.0")

    # what a CDN needs, on every object
    assert head(f"{http_url}/metadata/timestamp.json")["Cache-Control"] == "no-cache"
    assert head(f"{http_url}/metadata/1.root.json")["Cache-Control"].endswith("immutable")
    assert head(f"{http_url}/metadata/1.root.json")["Content-Type"] == "application/json"
    target = next((repo / "public/targets/packages/hello/1.0.0").iterdir()).name
    headers = head(f"{http_url}/targets/packages/hello/1.0.0/{target}")
    assert headers["Cache-Control"].endswith("immutable")
    assert headers["Content-Type"] == "application/octet-stream"

    home = tmp_path / "home"
    trust(home, http_url, repo)
    r = custody(home, "install", "hello")
    assert r.returncode == 0, r.stderr

    publish(repo, hello_chain, "1.1.0")
    r = custody(home, "update")
    assert r.stdout.strip() == "updated hello 1.0.0 -> 1.1.0", r.stderr
    assert repo_cli("channel", repo, "hello", "beta", "1.1.0").returncode == 0
    assert repo_cli("remove", repo, "hello", "1.0.0").returncode == 0
    assert repo_cli("bump", repo, "--force").returncode == 0
    ts2 = tmp_path / "ts2"
    subprocess.run([str(BIN / "custody-keys"), "generate", str(ts2), "--no-password"],
                   check=True, capture_output=True)
    r = subprocess.run([str(BIN / "custody-keys"), "rotate", "--repo", str(repo), "--role",
                        "timestamp", "--add", str(ts2), "--sign-with",
                        str(repo / "offline-keys/root")], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr
    # a push through the publish API (the server writes the bucket too)
    from custody.repository.storage import RepoPaths
    from custody.repository.tokens import create_token
    from tests.helpers import running_server

    _, token = create_token(RepoPaths(repo), "ci")
    with running_server(repo) as url:
        r = repo_cli("push", hello_chain.verify_dir / "hello.tar.gz", "--server", url,
                     "--token", token, "--name", "hello", "--version", "1.2.0", "--layout",
                     hello_chain.layout, "--links", hello_chain.links)
        assert r.returncode == 0, r.stderr
    r = custody(home, "update")
    assert "updated hello 1.1.0 -> 1.2.0" in r.stdout, r.stderr
    # a ceremony: root v2 needs a second key's signature, given offline, then imported
    root2 = tmp_path / "root2"
    subprocess.run([str(BIN / "custody-keys"), "generate", str(root2), "--no-password"],
                   check=True, capture_output=True)
    r = subprocess.run([str(BIN / "custody-keys"), "rotate", "--repo", str(repo), "--role",
                        "root", "--add", f"{root2}.pub", "--threshold", "2", "--sign-with",
                        str(repo / "offline-keys/root")], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 3, r.stderr
    exported = tmp_path / "root.json"
    for args in (["export", "--repo", repo, "--role", "root", "-o", exported],
                 ["sign", exported, "--key", root2], ["import", "--repo", repo, exported]):
        r = subprocess.run([str(BIN / "custody-keys"), *[str(a) for a in args]],
                           capture_output=True, text=True, check=False)
        assert r.returncode == 0, r.stderr
    assert head(f"{http_url}/metadata/2.root.json")["Cache-Control"].endswith("immutable")
    assert repo_cli("gc", repo, "--retention", "0", "--keep", "1").returncode == 0
    r = repo_cli("sync", repo)  # the bucket already holds exactly the local tree
    assert r.returncode == 0 and "deleted 0" in r.stdout, r.stdout

    fresh = tmp_path / "fresh"  # a new client trusts only 1.root.json and reads the bucket
    assert custody(fresh, "init", "--url", http_url, "--root",
                   str(repo / "public/metadata/1.root.json"), "--inspections",
                   "run").returncode == 0
    r = custody(fresh, "install", "hello")
    assert r.returncode == 0 and "installed hello 1.2.0" in r.stdout, r.stderr
    r = custody(home, "update")
    assert r.returncode == 0, r.stderr  # followed the key rotations, from the bucket alone


def test_a_publisher_killed_during_uploads_never_shows_a_partial_state(
        object_store, tmp_path, keydir, hello_repo):
    """12 publishes SIGKILLed, half at random points and half in their uploads: an
    unmodified ngclient reads the bucket at the old state or the new one, every time; the
    next write completes the upload."""
    import json
    import random
    import shutil
    import signal
    import time

    from tuf.ngclient import Updater

    repo = tmp_path / "bucket-repo"
    chain = hello_repo.chain("hello 1.0.0")
    _, http_url = bucket_repository(object_store, repo, keydir, chain)
    publish(repo, chain, "1.0.0")

    def bucket_versions() -> set[str]:
        """What a fresh, unmodified ngclient sees in the bucket (refresh, then the index)."""
        work = tmp_path / "reader"
        shutil.rmtree(work, ignore_errors=True)
        (work / "md").mkdir(parents=True)
        (work / "dl").mkdir()
        shutil.copy(repo / "public/metadata/1.root.json", work / "md/root.json")
        updater = Updater(str(work / "md"), f"{http_url}/metadata/", str(work / "dl"),
                          f"{http_url}/targets/", bootstrap=None)
        updater.refresh()
        info = updater.get_targetinfo("packages/hello/index.json")
        assert info is not None
        path = updater.download_target(info, str(work / "dl/index.json"))
        return set(json.loads(Path(path).read_text())["versions"])

    rng = random.Random(13)
    journal = repo / "private/bucket-journal.json"
    seen = {"1.0.0"}
    interrupted = 0
    for trial in range(12):
        version = f"1.{trial + 1}.0"
        chain = hello_repo.chain(f"hello {version}")
        proc = subprocess.Popen(
            [str(BIN / "custody-repo"), "publish", str(repo), str(chain.verify_dir /
             "hello.tar.gz"), "--name", "hello", "--version", version, "--layout",
             str(chain.layout), "--links", str(chain.links)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if trial % 2:  # anywhere: verifying, writing locally, uploading
            time.sleep(rng.uniform(0.3, 1.2))
        else:  # in the upload: once the journal names its files (however loaded the machine)
            deadline = time.monotonic() + 60
            while not journal.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        interrupted += journal.exists()
        assert bucket_versions() in (seen, seen | {version}), trial  # old or new, whole
        r = repo_cli("publish", repo, chain.verify_dir / "hello.tar.gz", "--name", "hello",
                     "--version", version, "--layout", chain.layout, "--links", chain.links)
        assert r.returncode == 0 or "already published" in r.stderr, r.stderr
        seen.add(version)
        assert bucket_versions() == seen, trial  # the retry completed the bucket
    assert not journal.exists()
    assert interrupted >= 1, "no kill landed during the uploads"
    home = tmp_path / "home"
    trust(home, http_url, repo)
    r = custody(home, "install", "hello")
    assert r.returncode == 0 and "installed hello 1.12.0" in r.stdout, r.stderr


def test_a_bucket_refusing_the_credentials_is_one_sentence_and_sync_finishes_it(
        object_store, tmp_path, keydir, hello_chain):
    """A wrong secret: exit 4, one sentence naming the bucket and the release's state; the
    bucket keeps serving the previous state whole; ``sync`` with the right secret finishes."""
    import json
    import os

    repo = tmp_path / "repo"
    s3_url, http_url = bucket_repository(object_store, repo, keydir, hello_chain)
    publish(repo, hello_chain, "1.0.0")

    def bucket_timestamp() -> int:
        with urllib.request.urlopen(f"{http_url}/metadata/timestamp.json") as response:
            return json.loads(response.read())["signed"]["version"]

    before = bucket_timestamp()
    wrong = {**os.environ, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    args = ["publish", repo, hello_chain.verify_dir / "hello.tar.gz", "--name", "hello",
            "--version", "1.1.0", "--layout", hello_chain.layout, "--links", hello_chain.links]
    tree = sorted((p, p.stat().st_mtime_ns) for p in (repo / "public").rglob("*"))
    r = subprocess.run([str(BIN / "custody-repo"), *map(str, args)], capture_output=True,
                       text=True, timeout=120, check=False, env=wrong)
    assert r.returncode == 4, r.stderr
    sentences = [line for line in r.stderr.splitlines() if line.startswith("custody-repo:")]
    assert len(sentences) == 1 and "internal error" not in r.stderr, r.stderr
    # the bucket is read first (another publisher may have moved it): refused there, whole
    assert sentences[0].startswith(f"custody-repo: {s3_url}: reading "), r.stderr
    assert "the store refused the credentials" in r.stderr, r.stderr
    assert "nothing was changed; run the command again once the bucket answers" in r.stderr
    assert "sync" not in r.stderr  # nothing to finish: the command itself is to be run again
    assert sorted((p, p.stat().st_mtime_ns) for p in (repo / "public").rglob("*")) == tree
    assert not (repo / "private/bucket-journal.json").exists()

    # a bucket that cannot be reached at all: the same, saying so
    from tests.helpers import free_port

    with endpoint_of(repo, f"http://127.0.0.1:{free_port()}"):
        r = repo_cli(*args)
    assert r.returncode == 4 and "internal error" not in r.stderr, r.stderr
    assert "unreachable" in r.stderr and "nothing was changed" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr

    # credentials that may read but not write: the commit is local, the bucket as it was
    with read_only_endpoint(object_store) as endpoint, endpoint_of(repo, endpoint):
        r = repo_cli(*args)
        assert r.returncode == 4, r.stderr
        assert f"custody-repo: {s3_url}: uploading " in r.stderr, r.stderr
        assert "AccessDenied" in r.stderr, r.stderr
        assert f"the change is committed in {repo / 'public'}" in r.stderr
        assert f"'custody-repo sync {repo}' finishes the upload" in r.stderr
        assert bucket_timestamp() == before  # the previous state, whole
        r = repo_cli("bump", repo)
        assert r.returncode == 4
        assert "an earlier change is not in the bucket yet, and nothing was changed now" \
            in r.stderr

    r = repo_cli("sync", repo)  # the right secret again
    assert r.returncode == 0, r.stderr
    local = json.loads((repo / "public/metadata/timestamp.json").read_text())
    assert bucket_timestamp() == local["signed"]["version"] > before
    home = tmp_path / "home"
    trust(home, http_url, repo)
    r = custody(home, "install", "hello")
    assert r.returncode == 0 and "installed hello 1.1.0" in r.stdout, r.stderr


def test_offline_keys_and_a_bucket_ceremonies_reach_the_bucket(object_store, tmp_path, keydir,
                                                                hello_chain):
    """Root, targets and owner keys offline from init on, the tree in a bucket: the first
    ceremony publishes to the bucket, and a layout added with the owner offline arrives there
    with its file once imported; a client installs from the bucket alone."""
    import shutil

    offline = tmp_path / "offline"
    offline.mkdir()
    for name in ("root", "targets", "owner"):
        for suffix in ("", ".pub"):
            shutil.copy(keydir / f"{name}{suffix}", offline / f"{name}{suffix}")
    s3_url, http_url = object_store.public_bucket()
    repo = tmp_path / "repo"
    r = repo_cli("init", repo, "--bins", "4", "--public", s3_url, "--endpoint-url",
                 object_store.endpoint, "--root-key", offline / "root.pub", "--targets-key",
                 offline / "targets.pub", "--layout-key", offline / "owner.pub")
    assert r.returncode == 3, r.stderr

    def ceremony(role: str, key: str) -> subprocess.CompletedProcess[str]:
        exported = tmp_path / f"{role}.json"
        for args in (["export", "--repo", repo, "--role", role, "-o", exported],
                     ["sign", exported, "--key", offline / key]):
            done = subprocess.run([str(BIN / "custody-keys"), *map(str, args)],
                                  capture_output=True, text=True, check=False)
            assert done.returncode == 0, done.stderr
        return subprocess.run([str(BIN / "custody-keys"), "import", "--repo", str(repo),
                               str(exported)], capture_output=True, text=True, check=False)

    for role, key in (("root", "root"), ("targets", "targets"), ("layouts", "owner")):
        r = ceremony(role, key)
    assert r.returncode == 0 and "the repository is published" in r.stdout, r.stderr
    assert head(f"{http_url}/metadata/1.root.json")["Cache-Control"].endswith("immutable")

    r = repo_cli("layout", "add", repo, hello_chain.layout, "--key", offline / "owner.pub",
                 "--name", "hello", "--new")
    assert r.returncode == 3, r.stderr
    r = ceremony("layouts", "owner")
    assert r.returncode == 0 and "layouts published" in r.stdout, r.stderr
    layout = next((repo / "public/targets/in-toto/layouts").glob("*.hello.1.layout")).name
    assert head(f"{http_url}/targets/in-toto/layouts/{layout}")["Cache-Control"].endswith(
        "immutable")
    publish(repo, hello_chain, "1.0.0")
    home = tmp_path / "home"
    trust(home, http_url, repo)
    r = custody(home, "install", "hello")
    assert r.returncode == 0 and "installed hello 1.0.0" in r.stdout, r.stderr
