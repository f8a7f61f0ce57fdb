"""Shared fixtures: real keys on disk, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from keys_tooling.keys import generate_key, write_key_pair

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
