"""Delta updates as pure transport (issue 24, part 3).

A real repository publishes 2.0.0 with a zstd patch from 1.0.0; a host that
installed 1.0.0 downloads the patch instead of the artifact, from a static
mirror on 127.0.0.1 that records every request. A patch tampered with on the
way, and signed ones that rebuild other bytes, are made from another base or
are truncated all end in the full download, and the host installs exactly
the published bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from custody.formats.delta import make_patch
from custody.formats.patches import patches_from_custom
from custody.repository.releases import (
    Release,
    links_from_dir,
    publish_release,
    remove_release,
)
from custody.repository.repo import CustodyRepository
from tests.helpers import Mirror, add_hello_layout, custody, make_repo
from tests.intoto.chain import IMPLS, make_chain

ARTIFACT = "packages/hello/2.0.0/hello.tar.gz"
PATCH = f"{ARTIFACT}.from-1.0.0.zst"


@pytest.fixture(scope="module")
def chains(keydir, tmp_path_factory):
    """Three releases sharing a 1 MiB payload (1.0.0, 2.0.0) or not (another)."""
    root = tmp_path_factory.mktemp("delta-chains")
    impl = IMPLS["custody"]
    return {name: make_chain(impl, impl, keydir, root / name, message=f"hello {name}",
                             payload_mib=1, payload_seed=seed)
            for name, seed in (("1.0.0", 7), ("2.0.0", 7), ("another", 8))}


def _tarball(chain) -> Path:
    return chain.verify_dir / "hello.tar.gz"


def _publish(repo_dir: Path, chain, version: str) -> None:
    repo = CustodyRepository(repo_dir)
    with repo.transaction():
        publish_release(repo, Release("hello", version, _tarball(chain),
                                      chain.layout.read_bytes(), links_from_dir(chain.links)))


@pytest.fixture
def world(tmp_path, keydir, chains):
    """1.0.0 installed on a host that reads the repository through a recording mirror."""
    repo_dir = tmp_path / "repo"
    make_repo(repo_dir, keydir, bins=4)
    add_hello_layout(repo_dir, keydir, chains["1.0.0"].layout)
    _publish(repo_dir, chains["1.0.0"], "1.0.0")
    mirror = Mirror(repo_dir / "public")
    home = tmp_path / "home"
    for args in (("init", "--url", mirror.url, "--root",
                  str(repo_dir / "public/metadata/1.root.json"), "--inspections", "run"),
                 ("install", "hello")):
        result = custody(home, *args)
        assert result.returncode == 0, result.stderr
    _publish(repo_dir, chains["2.0.0"], "2.0.0")
    mirror.requests.clear()
    yield repo_dir, mirror, home
    mirror.close()


def _fetched(mirror: Mirror, path: str) -> bool:
    """Whether ``path`` was requested (under its hash prefix: consistent snapshots)."""
    folder, name = path.rsplit("/", 1)
    return any(r.startswith(f"/targets/{folder}/") and r.endswith(f".{name}")
               for r in mirror.requests)


def _check_installed(home: Path, chains) -> None:
    assert (home / "packages/hello/current").resolve().name == "2.0.0"
    assert "hello 2.0.0" in (home / "packages/hello/current/src/hello.py").read_text()
    assert (home / f"cache/{ARTIFACT}").read_bytes() == _tarball(chains["2.0.0"]).read_bytes()
    leftovers = [p.name for p in (home / "cache/packages/hello/2.0.0").iterdir()]
    assert leftovers == ["hello.tar.gz"]  # no patch kept, no half-built file left


def test_a_host_holding_the_base_downloads_the_patch_alone(world, chains):
    repo_dir, mirror, home = world
    repo = CustodyRepository(repo_dir)
    info = repo.find_target(ARTIFACT)
    assert info is not None
    [patch] = patches_from_custom(info.custom)
    assert (patch.base, patch.patch) == ("packages/hello/1.0.0/hello.tar.gz", PATCH)
    patch_length = repo.find_target(PATCH).length  # type: ignore[union-attr]
    assert patch_length < info.length / 20  # the payload is shared: a few KiB of 1 MiB

    result = custody(home, "update")
    assert result.returncode == 0, result.stderr
    assert _fetched(mirror, PATCH) and not _fetched(mirror, ARTIFACT)
    _check_installed(home, chains)


def _restage(repo_dir: Path, data: bytes) -> None:
    """Replace the published patch with ``data``, signed by the online keys as a
    compromised repository (or a bug) would."""
    repo = CustodyRepository(repo_dir)
    with repo.transaction():
        repo.add_target(PATCH, data)
        repo.publish_metadata()
    assert CustodyRepository(repo_dir).read_target(PATCH) == data


def _patch_bytes(repo_dir: Path) -> bytes:
    return CustodyRepository(repo_dir).read_target(PATCH)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1:]


@pytest.mark.parametrize("case", ["tampered in transit", "signed, to other bytes",
                                  "against the wrong base", "truncated"])
def test_any_bad_patch_falls_back_to_the_full_download(world, chains, case):
    repo_dir, mirror, home = world
    patch = _patch_bytes(repo_dir)
    if case == "tampered in transit":  # TUF refuses it: its hash is not the signed one
        mirror.overrides[Path(PATCH).name] = _flip(patch, len(patch) // 2)
    elif case == "signed, to other bytes":  # applies cleanly, to what was not published
        _restage(repo_dir, make_patch(_tarball(chains["1.0.0"]).read_bytes(),
                                      _tarball(chains["another"]).read_bytes()))
    elif case == "against the wrong base":
        # Made from an artifact that is not 1.0.0 (a sibling build holding 2.0.0's own
        # bytes): it copies from its base what 1.0.0 does not hold, so applied to
        # 1.0.0 it rebuilds other bytes.
        new = _tarball(chains["2.0.0"]).read_bytes()
        sibling = bytearray(new)
        sibling[-10] ^= 1
        _restage(repo_dir, make_patch(bytes(sibling), new))
    else:
        _restage(repo_dir, patch[:-40])
    result = custody(home, "-v", "update")
    assert result.returncode == 0, result.stderr
    assert _fetched(mirror, PATCH) and _fetched(mirror, ARTIFACT), result.stderr
    assert "downloading it whole" in result.stderr
    _check_installed(home, chains)


def test_a_base_that_is_not_the_one_named_is_never_patched(world, chains):
    """A cached base whose bytes changed (disk corruption, a hand edit) is not used:
    the patch is not even downloaded."""
    _, mirror, home = world
    base = home / "cache/packages/hello/1.0.0/hello.tar.gz"
    base.write_bytes(_flip(base.read_bytes(), 100))
    result = custody(home, "update")
    assert result.returncode == 0, result.stderr
    assert not _fetched(mirror, PATCH) and _fetched(mirror, ARTIFACT)
    _check_installed(home, chains)


def test_patches_are_listed_as_data_only(world):
    """The index and the artifact's in-toto fields are what they were: a patch is a
    target beside the artifact, named in its custom metadata and nowhere else."""
    repo_dir, _, _ = world
    repo = CustodyRepository(repo_dir)
    index = json.loads(repo.read_target("packages/hello/index.json"))
    assert index["versions"]["2.0.0"]["target"] == ARTIFACT
    assert set(repo.find_target(ARTIFACT).custom) == {"in-toto", "patches"}  # type: ignore
    with repo.transaction():
        remove_release(repo, "hello", "2.0.0")  # its patches go with it
    assert CustodyRepository(repo_dir).find_target(PATCH) is None
