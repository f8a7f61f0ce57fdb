"""A served repository that tests publish hello versions to, and client homes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from repository.releases import Release, links_from_dir, publish_release
from repository.repo import CustodyRepository
from tests.helpers import BIN, add_hello_layout, make_repo, running_server
from tests.intoto.chain import IMPLS, make_chain


@dataclass
class Served:
    """A repository on disk, served by gunicorn, and the keys that built it."""

    repo_dir: Path
    url: str
    keydir: Path
    work: Path
    chains: dict[str, object] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.repo_dir / "public/metadata/1.root.json"

    def chain(self, message: str):
        if message not in self.chains:
            self.chains[message] = make_chain(IMPLS["custody"], IMPLS["custody"], self.keydir,
                                              self.work / f"chain-{len(self.chains)}",
                                              message=message)
        return self.chains[message]

    def publish(self, version: str, channel: str | None = "stable",
                message: str | None = None) -> str:
        chain = self.chain(message or f"hello {version}")
        repo = CustodyRepository(self.repo_dir)
        with repo.transaction():
            return publish_release(repo, Release(
                "hello", version, chain.verify_dir / "hello.tar.gz", chain.layout.read_bytes(),
                links_from_dir(chain.links), channel))


@pytest.fixture
def served(tmp_path: Path, keydir: Path, hello_chain) -> Iterator[Served]:
    repo_dir = tmp_path / "repo"
    make_repo(repo_dir, keydir, bins=4)
    add_hello_layout(repo_dir, keydir, hello_chain.layout)
    with running_server(repo_dir) as url:
        yield Served(repo_dir, url, keydir, tmp_path)


def custody(home: Path, *args: str, timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "custody"), "--home", str(home), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def home(tmp_path: Path, served: Served) -> Path:
    path = tmp_path / "home"
    result = custody(path, "init", "--url", served.url, "--root", str(served.root),
                     "--inspections", "run")
    assert result.returncode == 0, result.stderr
    return path
