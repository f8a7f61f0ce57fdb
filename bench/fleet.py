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

``--compare`` measures ``custody-repo serve`` only, as it is and as it was before
issue 25 (the tree served through Flask, gunicorn's own access logger: `_baseline`),
the two alternating in rounds under the same load, so that a machine busy with other
work weighs on both alike; ``--raw N`` adds N raw HTTP clients, each a kept-alive
connection asking for metadata and targets back to back (one event loop per process,
`_raw`), whose per-request latency has its own columns:

    python bench/fleet.py --compare --raw 60 --pollers 4 --seconds 60
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import random
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import requests

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
    serving,
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


def _raw(port: int, paths: list[str], connections: int, deadline: float) -> dict:
    """``connections`` kept-alive HTTP/1.1 connections, each with one GET outstanding at a
    time, served by one event loop: a client costs no thread, so the latency measured is
    the server's and the machine's, not a client process's GIL."""
    poller = selectors.DefaultSelector()
    pick = random.Random(0)
    latencies: list[float] = []
    errors = 0

    class Conn:
        def __init__(self) -> None:
            self.sock = socket.create_connection(("127.0.0.1", port))
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.setblocking(False)

        def ask(self) -> None:
            self.buf, self.need, self.close, self.status = b"", 0, False, 0
            self.start = time.perf_counter()
            path = pick.choice(paths)
            self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: fleet\r\n\r\n".encode())
            poller.register(self.sock, selectors.EVENT_READ, self)

    for _ in range(connections):
        Conn().ask()
    while time.time() < deadline:
        for key, _ in poller.select(0.5):
            conn: Conn = key.data
            try:
                data = conn.sock.recv(1 << 18)
            except OSError:
                data = b""
            if not data:  # closed by the server: counted, and a new connection
                errors += 1
                poller.unregister(conn.sock)
                conn.sock.close()
                Conn().ask()
                continue
            conn.buf += data
            if not conn.need:
                end = conn.buf.find(b"\r\n\r\n")
                if end < 0:
                    continue
                head = conn.buf[:end].decode("latin-1").lower().split("\r\n")
                conn.status = int(head[0].split()[1])
                fields = dict(line.split(":", 1) for line in head[1:])
                conn.need = end + 4 + int(fields.get("content-length", "0"))
                conn.close = "close" in fields.get("connection", "")
            if len(conn.buf) >= conn.need:
                latencies.append(time.perf_counter() - conn.start)
                errors += conn.status != 200
                poller.unregister(conn.sock)
                if conn.close:
                    conn.sock.close()
                    conn = Conn()
                conn.ask()
    return {"latencies": latencies, "errors": errors, "inconsistent": 0}


def _raw_paths(repo_dir: Path) -> list[str]:
    """What a fleet asks for most: timestamp.json, versioned metadata, the targets."""
    public = repo_dir / "public"
    versioned = sorted(p.name for p in (public / "metadata").iterdir() if p.name[0].isdigit())
    targets = sorted(str(p.relative_to(public)) for p in (public / "targets").rglob("*")
                     if p.is_file())
    return (["/metadata/timestamp.json"] * 4 + [f"/metadata/{m}" for m in versioned[:20]]
            + [f"/{t}" for t in targets[:6]])


def _worker(args: tuple) -> dict:
    if args[0] == "raw":
        _, port, paths, connections, deadline = args
        result = _raw(port, paths, connections, deadline)
        result["raw"] = True
        return result
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
            first_version: int, raw: int = 0) -> tuple[dict, int, int]:
    root = (repo_dir / "public/metadata/1.root.json").read_bytes()
    deadline = time.time() + seconds
    stop = threading.Event()
    landed: list[int] = []
    thread = threading.Thread(target=lambda: landed.extend(
        _publisher(repo_dir, chain, stop, first_version)))
    thread.start()
    processes = min(PROCESSES, pollers)
    per = [pollers // processes + (i < pollers % processes) for i in range(processes)]
    jobs: list[tuple] = []
    if raw:
        port, paths, split = int(url.rsplit(":", 1)[1]), _raw_paths(repo_dir), min(2, raw)
        jobs += [("raw", port, paths, raw // split + (i < raw % split), deadline)
                 for i in range(split)]
    with tempfile.TemporaryDirectory() as work, \
            multiprocessing.get_context("fork").Pool(processes + len(jobs)) as pool:
        parts = pool.map(_worker, jobs + [(url, root, n, deadline, f"{work}/p{i}")
                                          for i, n in enumerate(per)])
    stop.set()
    thread.join()
    polls = [p for p in parts if not p.get("raw")]
    merged = {"latencies": sorted(x for p in polls for x in p["latencies"]),
              "errors": sum(p["errors"] for p in polls),
              "inconsistent": sum(p["inconsistent"] for p in polls),
              "raw": sorted(x for p in parts if p.get("raw") for x in p["latencies"]),
              "raw_errors": sum(p["errors"] for p in parts if p.get("raw"))}
    return merged, landed[0] if landed else 0, first_version + (landed[0] if landed else 0)


@contextlib.contextmanager
def _baseline(repo_dir: Path) -> Iterator[str]:
    """``custody-repo serve`` as it was before issue 25: the same gunicorn settings, the
    tree served through Flask (`StaticTree` taken off) and gunicorn's own access logger."""
    port = free_port()
    script = (
        "import sys\n"
        "from custody.repository import server\n"
        "create = server.create_app\n"
        "def plain(*args, **kwargs):\n"
        "    app = create(*args, **kwargs)\n"
        "    app.wsgi_app = app.wsgi_app.app  # StaticTree -> Flask\n"
        "    return app\n"
        "server.create_app = plain\n"
        "server.AccessLog = __import__('gunicorn.glogging').glogging.Logger\n"
        "server.serve(sys.argv[1], '127.0.0.1', int(sys.argv[2]), 2)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(repo_dir), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    with serving(proc, f"http://127.0.0.1:{port}", "baseline server") as url:
        # Flask's send_from_directory, not StaticTree, answers (it names the file)
        assert "Content-Disposition" in requests.get(f"{url}/metadata/1.root.json").headers
        yield url


def compare(repo_dir: Path, chain, counts: list[int], seconds: float, raw: int,
            rounds: int = 4) -> list[list]:
    """The baseline and today's serve, alternating in ``rounds`` rounds of
    ``seconds / rounds`` each per poller count, merged per configuration."""
    rows: list[list] = []
    version = 0
    labels = ("before issue 25 (Flask tree, gunicorn's logger)", "custody-repo serve")
    with _baseline(repo_dir) as before, running_server(repo_dir, workers=2) as after:
        for n in counts:
            merged = {label: {"latencies": [], "errors": 0, "inconsistent": 0, "raw": [],
                              "raw_errors": 0, "landed": 0} for label in labels}
            for r in range(rounds):
                order = list(zip(labels, (before, after), strict=True))
                for label, url in order if r % 2 == 0 else order[::-1]:
                    result, landed, version = measure(url, repo_dir, chain, n,
                                                      seconds / rounds, version, raw)
                    total = merged[label]
                    for key in ("latencies", "raw"):
                        total[key] += result[key]
                    for key in ("errors", "inconsistent", "raw_errors"):
                        total[key] += result[key]
                    total["landed"] += landed
            for label in labels:
                total = merged[label]
                total["latencies"].sort()
                total["raw"].sort()
                rows.append(_row(f"{label}, 2 workers x 8 threads", n, total, total["landed"],
                                 seconds) + _raw_columns(raw, total, seconds))
                print(rows[-1], flush=True)
    return rows


def _raw_columns(raw: int, result: dict, seconds: float) -> list:
    latencies = result["raw"]
    if not latencies:
        return [raw, "-", "-", "-", result["raw_errors"]]
    return [raw, f"{len(latencies) / seconds:.0f}", _ms(_quantile(latencies, 0.5)),
            _ms(_quantile(latencies, 0.99)), result["raw_errors"]]


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


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
    parser.add_argument("--raw", type=int, default=0,
                        help="raw HTTP clients (kept-alive connections) beside the pollers")
    parser.add_argument("--compare", action="store_true",
                        help="serve only: before issue 25 and now, alternating")
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
    if args.compare:
        try:
            repo_dir = work / "repo"
            make_repo(repo_dir, keydir, bins=64)
            add_hello_layout(repo_dir, keydir, chain.layout)
            _first_release(repo_dir, chain)
            rows = compare(repo_dir, chain, counts, args.seconds, args.raw)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        write_result("fleet-serve-raw" if args.raw else "fleet-serve", table(
            ["served by", "pollers", "polls/s", "p50", "p99", "errors", "inconsistent",
             "releases landed", "raw clients", "raw req/s", "raw p50", "raw p99",
             "raw errors"], rows))
        return
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
