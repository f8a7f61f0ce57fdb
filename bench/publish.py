"""Publish time as the repository grows, with and without hash bins, and client bytes.

For each size (1,000, 10,000, 100,000 targets already published) and each
layout of roles (no bins; 1,024 bins), the repository is filled with synthetic
targets in one transaction, then one real release of the hello chain (an
artifact, four links, the index) is published and timed. Then a fresh
``tuf.ngclient.Updater`` looks the release up and downloads it, through a
fetcher that reads the served tree from disk and counts the metadata bytes.

    python bench/publish.py [--sizes 1000,10000,100000] [--bins 1024]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tuf.api.exceptions import DownloadLengthMismatchError
from tuf.api.metadata import TargetFile
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface

from bench.common import compile_sources, table, write_result
from custody.keys_tooling.keys import generate_key, write_key_pair
from custody.repository.releases import Release, links_from_dir, publish_release
from custody.repository.repo import CustodyRepository
from tests.helpers import add_hello_layout, make_repo
from tests.intoto.chain import IMPLS, make_chain

KEYS = ("owner", "alice", "bob", "rb1", "rb2", "root", "targets", "online")


class DiskFetcher(FetcherInterface):
    """Serves ``http://repo/...`` from the public tree and counts metadata bytes."""

    def __init__(self, public: Path) -> None:
        self.public = public
        self.metadata_bytes = 0

    def _fetch(self, url: str) -> Iterator[bytes]:
        from tuf.api.exceptions import DownloadHTTPError

        path = self.public / url.split("://repo/", 1)[1]
        if not path.is_file():
            raise DownloadHTTPError(f"{url} not found", 404)
        data = path.read_bytes()
        if "/metadata/" in url:
            self.metadata_bytes += len(data)
        return iter([data])


def fill(repo_dir: Path, count: int) -> None:
    repo = CustodyRepository(repo_dir)
    with repo.transaction():
        by_role: dict[str, dict[str, TargetFile]] = defaultdict(dict)
        for i in range(count):
            path = f"packages/filler{i}/1.0.0/filler-{i}.tar.gz"
            digest = hashlib.sha256(path.encode()).hexdigest()
            by_role[repo.role_for_target(path)][path] = TargetFile(1024, {"sha256": digest},
                                                                   path)
        for role, targets in by_role.items():
            with repo.edit_targets(role) as edited:
                edited.targets.update(targets)
        repo.publish_metadata()


def measure(keydir: Path, chain, size: int, bins: int, repeat: int) -> tuple[float, int | str]:
    with tempfile.TemporaryDirectory() as tmp:
        repo_dir = Path(tmp) / "repo"
        make_repo(repo_dir, keydir, bins=bins)
        add_hello_layout(repo_dir, keydir, chain.layout)
        fill(repo_dir, size)
        times = []
        for i in range(repeat):
            release = Release("hello", f"1.{i}.0", chain.verify_dir / "hello.tar.gz",
                              chain.layout.read_bytes(), links_from_dir(chain.links))
            start = time.perf_counter()
            repo = CustodyRepository(repo_dir)
            with repo.transaction():
                publish_release(repo, release)
            times.append(time.perf_counter() - start)
        client = Path(tmp) / "client"
        (client / "dl").mkdir(parents=True)
        shutil.copy(repo_dir / "public/metadata/1.root.json", client / "root.json")
        fetcher = DiskFetcher(repo_dir / "public")
        updater = Updater(str(client), "http://repo/metadata/", str(client / "dl"),
                          "http://repo/targets/", fetcher=fetcher, bootstrap=None)
        updater.refresh()
        try:
            for path in ("packages/hello/index.json", "packages/hello/1.0.0/hello.tar.gz"):
                info = updater.get_targetinfo(path)
                assert info is not None
                for link in (info.custom or {}).get("in-toto", {}).get("links", []):
                    updater.get_targetinfo(link)
                updater.download_target(info)
        except DownloadLengthMismatchError:
            limit = updater.config.targets_max_length / 1e6
            return statistics.median(times), f"refused: a role exceeds ngclient's {limit:.0f} MB"
        return statistics.median(times), fetcher.metadata_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--bins", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    compile_sources()
    with tempfile.TemporaryDirectory() as tmp:
        keydir = Path(tmp)
        for name in KEYS:
            write_key_pair(generate_key(), keydir / name, None)
        chain = make_chain(IMPLS["custody"], IMPLS["custody"], keydir, keydir / "chain")
        sizes = [int(s) for s in args.sizes.split(",")]
        results = {}
        for bins in (0, args.bins):
            for size in sizes:
                results[bins, size] = measure(keydir, chain, size, bins, args.repeat)
                print(bins, size, results[bins, size], flush=True)
    rows = []
    for bins in (0, args.bins):
        base = results[bins, sizes[0]][0]
        for size in sizes:
            seconds, metadata_bytes = results[bins, size]
            rows.append([f"{bins} bins" if bins else "no bins", f"{size:,}",
                         f"{seconds * 1000:.0f} ms", f"{seconds / base:.2f}x",
                         metadata_bytes if isinstance(metadata_bytes, str)
                         else f"{metadata_bytes / 1024:.0f} KiB"])
    write_result("publish", "### One publish as the repository grows\n\n" + table(
        ["roles", "targets already published", "publish time", "vs. smallest",
         "metadata a fresh client downloads to install one package"], rows))


if __name__ == "__main__":
    main()
