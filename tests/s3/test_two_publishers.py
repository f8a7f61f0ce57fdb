"""Two publishers, one bucket, one PostgreSQL (issue 25, docs/deploy.md "Two publishers").

Two repository directories stand for two machines: the second is restored
from a backup of the first, as docs/deploy.md says to make it. They share
the bucket the clients read and the PostgreSQL server holding the fleet
state and the publishers' advisory lock. Whichever writes first brings its
tree up to the bucket, every file checked with TUF; a publisher killed in the
middle of an upload leaves a fork nobody saw, which its next write undoes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import BIN, custody, running_postgres, running_server
from tests.s3.conftest import bucket_repository, endpoint_of, read_only_endpoint, repo_cli

pytestmark = pytest.mark.slow

#: Rounds of the takeover test: each machine is killed once.
ROUNDS = 2


@pytest.fixture(scope="module")
def postgres():
    with running_postgres() as url:
        yield url


def new_database(server: str, name: str) -> str:
    import psycopg

    with psycopg.connect(server, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    return server.rsplit("/", 1)[0] + f"/{name}"


def two_publishers(object_store, tmp_path: Path, keydir: Path, chain, url: str
                   ) -> tuple[Path, Path, str]:
    """The first publisher, on PostgreSQL and a bucket, and a second restored from its backup."""
    first, second = tmp_path / "first", tmp_path / "second"
    _, http_url = bucket_repository(object_store, first, keydir, chain)
    r = repo_cli("database", "set", first, url)
    assert r.returncode == 0, r.stderr
    archive = tmp_path / "first.tar.gz"
    assert repo_cli("backup", first, archive).returncode == 0
    r = repo_cli("restore", archive, second)
    assert r.returncode == 0, r.stderr
    return first, second, http_url


def publish(repo: Path, chain, version: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return repo_cli("publish", repo, chain.verify_dir / "hello.tar.gz", "--name", "hello",
                    "--version", version, "--layout", chain.layout, "--links", chain.links,
                    *extra)


class Reader:
    """An unmodified ngclient reading the bucket, its trusted state kept between reads
    (so it refuses a rollback itself); each read's timestamp version and hello versions."""

    def __init__(self, work: Path, root: Path, http_url: str) -> None:
        self.work, self.http_url = work, http_url
        (work / "md").mkdir(parents=True)
        shutil.copy(root, work / "md/root.json")

    def read(self) -> tuple[int, set[str]]:
        from tuf.api.metadata import Metadata
        from tuf.ngclient import Updater

        downloads = self.work / "dl"
        shutil.rmtree(downloads, ignore_errors=True)
        downloads.mkdir()
        updater = Updater(str(self.work / "md"), f"{self.http_url}/metadata/", str(downloads),
                          f"{self.http_url}/targets/", bootstrap=None)
        updater.refresh()
        info = updater.get_targetinfo("packages/hello/index.json")
        versions: set[str] = set()
        if info is not None:
            path = updater.download_target(info, str(downloads / "index.json"))
            versions = set(json.loads(Path(path).read_text())["versions"])
        timestamp = Metadata.from_file(str(self.work / "md/timestamp.json"))
        return timestamp.signed.version, versions


def tree_digest(repo: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted((repo / "public").rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(repo).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def test_each_publisher_catches_up_with_the_other_before_it_writes(
        object_store, tmp_path, keydir, served, postgres):
    chain = served.chain("hello 1.0.0")
    first, second, http_url = two_publishers(object_store, tmp_path, keydir, chain,
                                             new_database(postgres, "alternate"))
    reader = Reader(tmp_path / "reader", first / "public/metadata/1.root.json", http_url)
    seen: list[tuple[int, set[str]]] = []
    for i, repo in enumerate([first, second, first, second]):
        version = f"1.{i}.0"
        r = publish(repo, served.chain(f"hello {version}"), version)
        assert r.returncode == 0, r.stderr
        seen.append(reader.read())
        assert seen[-1][1] == {f"1.{j}.0" for j in range(i + 1)}
        # the writer's tree is the bucket's state, byte for byte where it matters
        assert (repo / "public/metadata/timestamp.json").read_bytes() == \
            object_store.client().get_object(Bucket=http_url.split("/")[-2],
                                             Key="tree/metadata/timestamp.json")["Body"].read()
    # the second publisher pulled the first's target files too, checked
    assert len(list((second / "public/targets/packages/hello").rglob("*.tar.gz"))) == 4
    assert [v for v, _ in seen] == sorted({v for v, _ in seen})  # always forward

    # a re-signing on one, then a write on the other: versions only go forward
    assert repo_cli("bump", first, "--force").returncode == 0
    r = publish(second, served.chain("hello 1.4.0"), "1.4.0")
    assert r.returncode == 0, r.stderr
    version, versions = reader.read()
    assert version > seen[-1][0] and "1.4.0" in versions
    # the other publisher knows the release: the same file again is kept (a retried job),
    # another file as 1.4.0 is refused
    r = publish(first, served.chain("hello 1.4.0"), "1.4.0")
    assert r.returncode == 0 and "kept" in r.stdout, r.stdout + r.stderr
    r = publish(first, served.chain("hello 1.3.0"), "1.4.0")
    assert r.returncode == 1 and "already published" in r.stderr, r.stderr
    home = tmp_path / "home"
    assert custody(home, "init", "--url", http_url, "--root",
                   str(first / "public/metadata/1.root.json"), "--inspections",
                   "run").returncode == 0
    r = custody(home, "install", "hello")
    assert r.returncode == 0 and "installed hello 1.4.0" in r.stdout, r.stderr
    # sync from the publisher that is behind pulls first: it deletes nothing of the other's
    r = repo_cli("sync", second)
    assert r.returncode == 0 and "deleted 0" in r.stdout, r.stdout + r.stderr
    assert reader.read()[1] == versions

    # the first rotates the timestamp key; the second, holding the old one, says what to do
    def keys(*args: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "custody-keys"), *map(str, args)],
                              capture_output=True, text=True, check=False, timeout=120)

    ts2 = tmp_path / "ts2"
    assert keys("generate", ts2, "--no-password").returncode == 0
    old = json.loads((first / "public/metadata/root.json").read_text())
    old_id = old["signed"]["roles"]["timestamp"]["keyids"][0]
    r = keys("rotate", "--repo", first, "--role", "timestamp", "--add", ts2, "--remove",
             old_id[:8], "--sign-with", first / "offline-keys/root")
    assert r.returncode == 0, r.stderr
    r = publish(second, served.chain("hello 1.5.0"), "1.5.0")
    assert r.returncode == 1, r.stderr
    assert "which root no longer trusts for it" in r.stderr, r.stderr
    assert f"custody-keys online --repo {second} --role timestamp --key KEY" in r.stderr
    r = keys("online", "--repo", second, "--role", "timestamp", "--key", f"{ts2}.pub")
    assert r.returncode == 1 and "a public key cannot sign" in r.stderr, r.stderr
    r = keys("online", "--repo", second, "--role", "timestamp", "--key", ts2)
    assert r.returncode == 0, r.stderr
    assert publish(second, served.chain("hello 1.5.0"), "1.5.0").returncode == 0
    r = custody(home, "update")
    assert r.returncode == 0 and "1.5.0" in r.stdout, r.stderr  # through the rotation


def test_a_bucket_that_does_not_verify_or_went_back_is_refused_and_nothing_changes(
        object_store, tmp_path, keydir, served, postgres):
    chain = served.chain("hello 1.0.0")
    first, second, http_url = two_publishers(object_store, tmp_path, keydir, chain,
                                             new_database(postgres, "hostile"))
    bucket_name = http_url.split("/")[-2]
    s3 = object_store.client()

    def bucket_timestamp() -> bytes:
        return s3.get_object(Bucket=bucket_name, Key="tree/metadata/timestamp.json")["Body"].read()

    def put_timestamp(data: bytes) -> None:
        s3.put_object(Bucket=bucket_name, Key="tree/metadata/timestamp.json", Body=data)

    old = bucket_timestamp()
    assert publish(first, chain, "1.0.0").returncode == 0
    genuine = bucket_timestamp()
    # a timestamp whose version was raised without the key: the signature no longer holds
    forged = json.loads(genuine)
    forged["signed"]["version"] += 5
    put_timestamp(json.dumps(forged).encode())
    before = tree_digest(second)
    r = publish(second, served.chain("hello 1.1.0"), "1.1.0")
    assert r.returncode == 1, r.stderr
    assert "does not verify against this tree's trusted metadata" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert tree_digest(second) == before
    assert json.loads(bucket_timestamp()) == forged  # the refusing publisher wrote nothing

    # the genuine state back, then the first's tree goes ahead of an older bucket
    put_timestamp(genuine)
    assert publish(second, served.chain("hello 1.1.0"), "1.1.0").returncode == 0
    newest = bucket_timestamp()
    put_timestamp(old)  # a rollback of the bucket to a state both have passed
    before = tree_digest(first)
    r = publish(first, served.chain("hello 1.2.0"), "1.2.0")
    assert r.returncode == 4, r.stderr
    assert "older than this tree's" in r.stderr, r.stderr
    assert tree_digest(first) == before
    put_timestamp(newest)
    assert publish(first, served.chain("hello 1.2.0"), "1.2.0").returncode == 0
    # a new repository over this bucket is refused before it writes anything there
    r = repo_cli("init", tmp_path / "third", "--public", f"s3://{bucket_name}/tree",
                 "--endpoint-url", object_store.endpoint, "--no-password")
    assert r.returncode != 0 and "already holds a repository's metadata" in r.stderr, r.stderr
    assert bucket_timestamp() != newest and json.loads(bucket_timestamp())["signed"][
        "version"] > json.loads(newest)["signed"]["version"]  # first's 1.2.0, untouched
    assert not (tmp_path / "third").exists()


def test_a_commit_that_never_reached_the_bucket_is_undone_when_the_other_moved_on(
        object_store, tmp_path, keydir, served, postgres):
    chain = served.chain("hello 1.0.0")
    first, second, http_url = two_publishers(object_store, tmp_path, keydir, chain,
                                             new_database(postgres, "fork"))
    reader = Reader(tmp_path / "reader", first / "public/metadata/1.root.json", http_url)
    assert publish(first, chain, "1.0.0").returncode == 0
    # the first publisher's credentials lose the right to write: committed locally, exit 4
    fork = served.chain("hello 1.1.0")
    with read_only_endpoint(object_store) as endpoint, endpoint_of(first, endpoint):
        r = publish(first, fork, "1.1.0")
    assert r.returncode == 4, r.stderr
    assert "unless another publisher writes the bucket first" in r.stderr, r.stderr
    assert (first / "private/bucket-journal.json").exists()
    # the second publisher takes over: it never sees 1.1.0, which nobody saw
    assert publish(second, served.chain("hello 1.2.0"), "1.2.0").returncode == 0
    assert reader.read()[1] == {"1.0.0", "1.2.0"}
    # the first's next write undoes its fork instead of uploading it over the second's
    assert publish(first, served.chain("hello 1.3.0"), "1.3.0").returncode == 0
    assert not (first / "private/bucket-journal.json").exists()
    assert reader.read()[1] == {"1.0.0", "1.2.0", "1.3.0"}
    # and 1.1.0 can be published again, now for real: the undone commit left no claim on it
    r = publish(first, fork, "1.1.0", "--no-channel")  # a backport: stable is at 1.3.0
    assert r.returncode == 0, r.stderr
    assert reader.read()[1] == {"1.0.0", "1.1.0", "1.2.0", "1.3.0"}


def test_publishes_alternate_one_publisher_is_killed_the_other_takes_over(
        object_store, tmp_path, keydir, served, postgres):
    """Two `custody-repo serve` on the two trees take pushes in turn and at once; one is
    SIGKILLed in the middle of an upload; the other publishes and re-signs; the killed one
    comes back and goes on. An unmodified ngclient polls the bucket the whole time."""
    import random

    from custody.repository.storage import RepoPaths
    from custody.repository.tokens import create_token

    chain = served.chain("hello 1.0.0")
    first, second, http_url = two_publishers(object_store, tmp_path, keydir, chain,
                                             new_database(postgres, "takeover"))
    _, token = create_token(RepoPaths(first), "ci")  # in PostgreSQL: both servers accept it
    reader = Reader(tmp_path / "reader", first / "public/metadata/1.root.json", http_url)
    polls: list[tuple[int, set[str]]] = []
    failures: list[str] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                polls.append(reader.read())
            except Exception as exc:  # any refusal is an inconsistent state seen
                failures.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.05)

    def push(url: str, version: str) -> subprocess.Popen:
        c = served.chain(f"hello {version}")
        # no channel: pushes at once land in either order, and both are releases
        return subprocess.Popen(
            [str(BIN / "custody-repo"), "push", str(c.verify_dir / "hello.tar.gz"),
             "--server", url, "--token", token, "--name", "hello", "--version", version,
             "--layout", str(c.layout), "--links", str(c.links), "--no-channel"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def pushed(url: str, version: str) -> None:
        proc = push(url, version)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        published.add(version)

    def versions(round_: int, what: str) -> str:
        return f"{round_ + 2}.{what}.0"

    for round_ in range(ROUNDS):  # the chains are recorded before the clock starts
        for what in ("1", "2", "3", "4", "9", "5", "6"):
            served.chain(f"hello {versions(round_, what)}")
    rng = random.Random(25)
    published: set[str] = set()
    killed: set[str] = set()
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        kills = 0
        for round_ in range(ROUNDS):
            victim, survivor = (first, second) if round_ % 2 == 0 else (second, first)
            with running_server(survivor) as survivor_url:
                with running_server(victim) as victim_url:
                    # in turn, then at once: the lock serializes the two servers
                    pushed(victim_url, versions(round_, "1"))
                    pushed(survivor_url, versions(round_, "2"))
                    both = [(push(victim_url, versions(round_, "3")), versions(round_, "3")),
                            (push(survivor_url, versions(round_, "4")), versions(round_, "4"))]
                    for proc, version in both:
                        _, err = proc.communicate(timeout=120)
                        assert proc.returncode == 0, err
                        published.add(version)
                    # kill the victim's server while its upload runs
                    journal = victim / "private/bucket-journal.json"
                    doomed = push(victim_url, versions(round_, "9"))
                    killed.add(versions(round_, "9"))
                    deadline = time.monotonic() + 60
                    while not journal.exists() and time.monotonic() < deadline \
                            and doomed.poll() is None:
                        time.sleep(0.002)
                    time.sleep(rng.uniform(0, 0.05))
                    pids = subprocess.run(["pgrep", "-f", f"serve {victim} "],
                                          capture_output=True, text=True).stdout.split()
                    for pid in pids:
                        os.kill(int(pid), signal.SIGKILL)
                    kills += journal.exists()
                    doomed.communicate(timeout=60)
                # the survivor takes over: publishes and re-signs
                pushed(survivor_url, versions(round_, "5"))
                assert repo_cli("bump", survivor, "--force").returncode == 0
            # the victim comes back and goes on, from the bucket's state
            with running_server(victim) as victim_url:
                pushed(victim_url, versions(round_, "6"))
        assert kills >= 1, "no kill landed during an upload"
    finally:
        stop.set()
        poller.join(timeout=60)
    assert not failures, failures[:3]
    assert len(polls) >= 10
    timestamps = [v for v, _ in polls]
    assert timestamps == sorted(timestamps), "a timestamp version went back"
    for (_, before), (_, after) in itertools.pairwise(polls):
        assert before <= after, f"versions disappeared: {sorted(before - after)}"
    final = reader.read()[1]
    assert published <= final
    assert final - published <= killed  # a killed push is there whole or not at all


def test_a_write_waits_for_the_lock_another_publisher_holds(
        object_store, tmp_path, keydir, served, postgres):
    """The advisory lock serializes the machines: held elsewhere, a publish waits on the
    server (a waiter in pg_locks) and the bucket does not change until it is released."""
    import psycopg

    from custody.repository.publishers import lock_key
    from custody.repository.storage import RepoPaths

    chain = served.chain("hello 1.0.0")
    url = new_database(postgres, "waiting")
    first, second, http_url = two_publishers(object_store, tmp_path, keydir, chain, url)
    key = lock_key(RepoPaths(second))
    assert key == lock_key(RepoPaths(first))  # one repository, one lock, wherever it is
    reader = Reader(tmp_path / "reader", first / "public/metadata/1.root.json", http_url)
    before = reader.read()
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (key,))
        proc = subprocess.Popen(
            [str(BIN / "custody-repo"), "publish", str(second), str(chain.verify_dir /
             "hello.tar.gz"), "--name", "hello", "--version", "1.0.0", "--layout",
             str(chain.layout), "--links", str(chain.links)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        waiting = 0
        while not waiting and time.monotonic() < deadline and proc.poll() is None:
            waiting = holder.execute("SELECT COUNT(*) FROM pg_locks WHERE locktype = "
                                     "'advisory' AND NOT granted").fetchone()[0]
            time.sleep(0.05)
        assert waiting == 1 and proc.poll() is None
        assert reader.read() == before
        holder.execute("SELECT pg_advisory_unlock(%s)", (key,))
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert reader.read()[1] == {"1.0.0"}


def test_the_other_publisher_re_signs_a_timestamp_that_expired_while_nobody_could(
        object_store, tmp_path, keydir, served, postgres):
    """The first machine went down and its timestamp expired: clients refuse the bucket. The
    second catches up (expiry is for clients; signatures and versions are still checked)
    and its ordinary bump re-signs, so clients update again."""
    from datetime import UTC, datetime, timedelta

    from custody.repository.maintenance import bump_online
    from custody.repository.repo import CustodyRepository

    chain = served.chain("hello 1.0.0")
    first, second, http_url = two_publishers(object_store, tmp_path, keydir, chain,
                                             new_database(postgres, "expired"))
    assert publish(first, chain, "1.0.0").returncode == 0
    three_days_ago = datetime.now(UTC) - timedelta(days=3)
    stale = CustodyRepository(first, now=lambda: three_days_ago)
    with stale.transaction():  # the last thing the first machine signed, long ago
        bump_online(stale, force=True)
    home = tmp_path / "home"
    assert custody(home, "init", "--url", http_url, "--root",
                   str(first / "public/metadata/1.root.json"), "--inspections",
                   "run").returncode == 0
    r = custody(home, "install", "hello")
    assert r.returncode != 0 and "expired" in (r.stdout + r.stderr).lower(), r.stderr
    r = repo_cli("bump", second)  # not forced: it finds the expiry itself, after catching up
    assert r.returncode == 0, r.stderr
    r = custody(home, "install", "hello")
    assert r.returncode == 0 and "installed hello 1.0.0" in r.stdout, r.stderr


def test_gc_and_sync_on_the_publisher_that_pulled_keep_the_others_recent_files(
        object_store, tmp_path, keydir, served, postgres):
    """A tree that pulled only the newest state lacks the other machine's recent versions:
    gc dates a snapshot's supersession from the bucket when the tree lacks its successor,
    and sync leaves what the tree does not have unless told to delete it."""
    chain = served.chain("hello 1.0.0")
    first, second, http_url = two_publishers(object_store, tmp_path, keydir, chain,
                                             new_database(postgres, "cleanup"))
    bucket_name = http_url.split("/")[-2]
    s3 = object_store.client()

    def in_bucket() -> set[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket_name,
                                                             Prefix="tree/")
        return {o["Key"][len("tree/"):] for p in pages for o in p.get("Contents", [])}

    oldest = json.loads((second / "public/metadata/timestamp.json").read_text())
    old_snapshot = f"metadata/{oldest['signed']['meta']['snapshot.json']['version']}.snapshot.json"
    for version in ("1.0.0", "1.1.0", "1.2.0"):  # three in a row on the first machine
        assert publish(first, served.chain(f"hello {version}"), version).returncode == 0
    assert publish(second, served.chain("hello 1.3.0"), "1.3.0").returncode == 0
    before = in_bucket()
    r = repo_cli("gc", second, "--keep", "1")  # the default retention: a day
    assert r.returncode == 0, r.stderr
    assert old_snapshot in in_bucket()  # superseded minutes ago, by the first machine
    assert in_bucket() == before
    r = repo_cli("sync", second)
    assert r.returncode == 0 and "deleted 0" in r.stdout and "left " in r.stdout, r.stdout
    assert in_bucket() >= before
    r = repo_cli("sync", second, "--delete")  # a bucket that must be exactly this tree
    assert r.returncode == 0 and "deleted 0" not in r.stdout, r.stdout
    reader = Reader(tmp_path / "reader", first / "public/metadata/1.root.json", http_url)
    assert reader.read()[1] == {"1.0.0", "1.1.0", "1.2.0", "1.3.0"}
