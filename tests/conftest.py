"""Shared fixtures: real keys on disk, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from custody.keys_tooling.keys import generate_key, write_key_pair

KEY_NAMES = ("owner", "owner2", "alice", "bob", "rb1", "rb2", "mallory", "root", "root2",
             "targets", "online")


@pytest.fixture(scope="session")
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Unencrypted ed25519 key pairs ``<name>`` / ``<name>.pub`` for every role in tests."""
    path = tmp_path_factory.mktemp("keys")
    for name in KEY_NAMES:
        write_key_pair(generate_key("ed25519"), path / name, None)
    return path


@pytest.fixture(scope="session")
def hello_chain(keydir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The hello supply chain recorded once: links, the signed layout, the tarball."""
    from tests.intoto.chain import IMPLS, make_chain

    root = tmp_path_factory.mktemp("hello-chain")
    return make_chain(IMPLS["custody"], IMPLS["custody"], keydir, root)


@pytest.fixture
def hello_repo(tmp_path: Path, keydir: Path, hello_chain):
    """A repository with the hello layout, not served: ``served`` without its server, for
    the tests that publish and read it on disk only (its ``url`` is empty)."""
    from tests.helpers import Served, add_hello_layout, make_repo

    repo_dir = tmp_path / "repo"
    make_repo(repo_dir, keydir, bins=4)
    add_hello_layout(repo_dir, keydir, hello_chain.layout)
    return Served(repo_dir, "", keydir, tmp_path)


@pytest.fixture
def served(hello_repo):
    """A repository with the hello layout, served by gunicorn on 127.0.0.1."""
    from dataclasses import replace

    from tests.helpers import running_server

    with running_server(hello_repo.repo_dir) as url:
        yield replace(hello_repo, url=url)


@pytest.fixture
def home(tmp_path: Path, served) -> Path:
    """A client home initialised (trust on first use of 1.root.json) before any change."""
    from tests.helpers import custody

    path = tmp_path / "home"
    result = custody(path, "init", "--url", served.url, "--root", str(served.root),
                     "--inspections", "run")
    assert result.returncode == 0, result.stderr
    return path
