"""A fleet's load: N pollers refreshing through real ngclient while a release lands every 2 s.

Against (a) ``custody-repo serve`` (gunicorn), (b) nginx with
deploy/nginx-custody.conf in front of it, (c) the tree in a bucket (Swift's
S3 API on 127.0.0.1, read anonymously over HTTP). Each poller is a thread in
one of a few worker processes (so the GIL of one process bounds nothing):
in a loop, an unmodified ``tuf.ngclient.Updater`` refreshes (its own metadata
directory, as a host keeps) and reads the package index. A poll that fails
TUF's checks (a timestamp naming a missing or mismatched file, a version
going backwards) counts as *inconsistent*; it must stay 0. Everything runs
on this one 2-core machine: the pollers compete with the server for CPU, so
the numbers are a floor for a real deployment, and the ratios between the
three are what to read.

    python bench/fleet.py [--seconds 60] [--pollers 8,32,64]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import compile_sources, table, write_result
from custody.keys_tooling.keys import generate_key, write_key_pair
from custody.repository.releases import Release, links_from_dir, publish_release
from custody.repository.repo import CustodyRepository
from tests.helpers import (
    add_hello_layout,
    free_port,
    make_repo,
    running_nginx,
    running_server,
)
from tests.intoto.chain import IMPLS, make_chain

PROCESSES = 4
INDEX = "packages/hello/index.json"


def _poll(url: str, root: bytes, home: Path, deadline: float, out: dict) -> None:
    from tuf.api.exceptions import RepositoryError
    from tuf.ngclient import Updater

    (home / "md").mkdir(parents=True)
    (home / "dl").mkdir()
    (home / "md/root.json").write_bytes(root)
    while time.time() < deadline:
        start = time.perf_counter()
        try:
            updater = Updater(str(home / "md"), f"{url}/metadata/", str(home / "dl"),
                              f"{url}/targets/", bootstrap=None)
            updater.refresh()
            info = updater.get_targetinfo(INDEX)
            if info is None:  # the index is published before polling starts
                raise RepositoryError(f"{INDEX} is not in the metadata")
            if updater.find_cached_target(info) is None:
                updater.download_target(info)
        except RepositoryError as exc:
            out["inconsistent"] += 1
            out.setdefault("kinds", {}).setdefault(f"{type(exc).__name__}: {exc}"[:160], 0)
            out["kinds"][f"{type(exc).__name__}: {exc}"[:160]] += 1
        except Exception:  # connection refused, timeouts, 5xx: the server did not keep up
            out["errors"] += 1
        else:
            out["latencies"].append(time.perf_counter() - start)


def _worker(args: tuple[str, bytes, int, float, str]) -> dict:
    url, root, threads, deadline, work = args
    results = [{"latencies": [], "errors": 0, "inconsistent": 0} for _ in range(threads)]
    pollers = [threading.Thread(target=_poll, args=(url, root, Path(work) / f"t{i}",
                                                      deadline, results[i]))
               for i in range(threads)]
    for t in pollers:
        t.start()
    for t in pollers:
        t.join()
    kinds: dict[str, int] = {}
    for r in results:
        for kind, count in r.get("kinds", {}).items():
            kinds[kind] = kinds.get(kind, 0) + count
    if kinds:
        print(kinds, file=sys.stderr)
    return {"latencies": [x for r in results for x in r["latencies"]],
            "errors": sum(r["errors"] for r in results),
            "inconsistent": sum(r["inconsistent"] for r in results)}


def _publisher(repo_dir: Path, chain, stop: threading.Event, first: int) -> list[int]:
    """A release every 2 s, as CI would push them; returns how many landed."""
    landed = [0]
    version = first
    while not stop.wait(2.0):
        version += 1
        repo = CustodyRepository(repo_dir)
        with repo.transaction():
            publish_release(repo, Release(
                "hello", f"1.{version}.0", chain.verify_dir / "hello.tar.gz",
                chain.layout.read_bytes(), links_from_dir(chain.links)))
        landed[0] += 1
    return landed


def _first_release(repo_dir: Path, chain) -> None:
    repo = CustodyRepository(repo_dir)
    with repo.transaction():
        publish_release(repo, Release("hello", "1.0.0", chain.verify_dir / "hello.tar.gz",
                                      chain.layout.read_bytes(), links_from_dir(chain.links)))


def measure(url: str, repo_dir: Path, chain, pollers: int, seconds: float,
            first_version: int) -> tuple[dict, int, int]:
    root = (repo_dir / "public/metadata/1.root.json").read_bytes()
    deadline = time.time() + seconds
    stop = threading.Event()
    landed: list[int] = []
    thread = threading.Thread(target=lambda: landed.extend(
        _publisher(repo_dir, chain, stop, first_version)))
    thread.start()
    processes = min(PROCESSES, pollers)
    per = [pollers // processes + (i < pollers % processes) for i in range(processes)]
    with tempfile.TemporaryDirectory() as work, \
            multiprocessing.get_context("fork").Pool(processes) as pool:
        parts = pool.map(_worker, [(url, root, n, deadline, f"{work}/p{i}")
                                   for i, n in enumerate(per)])
    stop.set()
    thread.join()
    merged = {"latencies": sorted(x for p in parts for x in p["latencies"]),
              "errors": sum(p["errors"] for p in parts),
              "inconsistent": sum(p["inconsistent"] for p in parts)}
    return merged, landed[0] if landed else 0, first_version + (landed[0] if landed else 0)


def _start_bucket(work: Path) -> tuple[str, str, str]:
    """Swift's S3 API on 127.0.0.1 and a public bucket: (endpoint, s3 URL, HTTP URL)."""
    import boto3
    from botocore.config import Config

    port = free_port()
    script = Path(__file__).resolve().parent.parent / "tests/s3/swift-s3.sh"
    subprocess.run(["bash", str(script), "start", str(work / "swift"), str(port)], check=True,
                   capture_output=True)
    os.environ.update({"AWS_ACCESS_KEY_ID": "test:tester", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"})
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, config=Config(
        s3={"addressing_style": "path"}, retries={"max_attempts": 10, "mode": "standard"}))
    client.create_bucket(Bucket="fleet", ACL="public-read")  # retried while Swift warms up
    return endpoint, "s3://fleet/tree", f"{endpoint}/v1/AUTH_test/fleet/tree"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--pollers", default="8,32,64")
    args = parser.parse_args()
    compile_sources()
    counts = [int(n) for n in args.pollers.split(",")]
    work = Path(tempfile.mkdtemp(prefix="custody-fleet-"))
    keydir = work / "keys"
    keydir.mkdir()
    for name in ("owner", "alice", "bob", "rb1", "rb2", "root", "targets", "online"):
        write_key_pair(generate_key(), keydir / name, None)
    chain = make_chain(IMPLS["custody"], IMPLS["custody"], keydir, work / "chain")
    rows = []
    try:
        repo_dir = work / "repo"
        make_repo(repo_dir, keydir, bins=64)
        add_hello_layout(repo_dir, keydir, chain.layout)
        _first_release(repo_dir, chain)
        version = 0
        with running_server(repo_dir, workers=2) as origin, \
                running_nginx(origin, work / "nginx") as cached:
            for label, url in (("custody-repo serve (gunicorn, 2 workers)", origin),
                               ("nginx cache in front", cached)):
                for n in counts:
                    result, landed, version = measure(url, repo_dir, chain, n, args.seconds,
                                                      version)
                    rows.append(_row(label, n, result, landed, args.seconds))
                    print(rows[-1], flush=True)
        endpoint, s3_url, http_url = _start_bucket(work)
        bucket_repo = work / "bucket-repo"
        make_repo(bucket_repo, keydir, bins=64, public_url=s3_url, endpoint_url=endpoint)
        add_hello_layout(bucket_repo, keydir, chain.layout)
        _first_release(bucket_repo, chain)
        version = 0
        for n in counts:
            result, landed, version = measure(http_url, bucket_repo, chain, n, args.seconds,
                                              version)
            rows.append(_row("bucket (Swift S3 API, anonymous HTTP)", n, result, landed,
                             args.seconds))
            print(rows[-1], flush=True)
    finally:
        script = Path(__file__).resolve().parent.parent / "tests/s3/swift-s3.sh"
        subprocess.run(["bash", str(script), "stop", str(work / "swift")], check=False)
        shutil.rmtree(work, ignore_errors=True)
    write_result("fleet", table(
        ["served by", "pollers", "polls/s", "p50", "p99", "errors", "inconsistent",
         "releases landed"], rows))


def _row(label: str, pollers: int, result: dict, landed: int, seconds: float) -> list:
    latencies = result["latencies"]
    p50 = statistics.median(latencies) if latencies else float("nan")
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies \
        else float("nan")
    return [label, pollers, f"{len(latencies) / seconds:.0f}", f"{p50 * 1000:.0f} ms",
            f"{p99 * 1000:.0f} ms", result["errors"], result["inconsistent"], landed]


if __name__ == "__main__":
    main()
