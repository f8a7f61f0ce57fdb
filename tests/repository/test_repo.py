"""The repository library: roles, publishing, refusals, maintenance; read by tuf.ngclient."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tuf.ngclient import Updater

from custody.repository.errors import (
    InvalidReleaseError,
    NotFoundError,
    SigningError,
    SupplyChainError,
)
from custody.repository.maintenance import bump_online, gc, status
from custody.repository.releases import (
    Release,
    links_from_dir,
    load_index,
    publish_release,
    remove_release,
    set_channel,
)
from custody.repository.repo import CustodyRepository
from tests.helpers import BIN, add_hello_layout, make_repo, running_server, signer


def hello_release(chain, version="1.0.0", **kw) -> Release:
    return Release("hello", version, chain.verify_dir / "hello.tar.gz",
                   chain.layout.read_bytes(), links_from_dir(chain.links), **kw)


def publish(path: Path, release: Release) -> str:
    repo = CustodyRepository(path)
    with repo.transaction():
        return publish_release(repo, release)


@pytest.fixture
def repo_dir(tmp_path, keydir, hello_chain):
    path = tmp_path / "repo"
    make_repo(path, keydir)
    add_hello_layout(path, keydir, hello_chain.layout)
    return path


def updater(repo_dir: Path, url: str, tmp: Path) -> Updater:
    (tmp / "md").mkdir(parents=True, exist_ok=True)
    (tmp / "dl").mkdir(exist_ok=True)
    shutil.copy(repo_dir / "public/metadata/1.root.json", tmp / "md/root.json")
    return Updater(str(tmp / "md"), url + "/metadata/", str(tmp / "dl"), url + "/targets/",
                   bootstrap=None)


@pytest.mark.slow
@pytest.mark.parametrize("bins", [0, 16])
def test_ngclient_accepts_the_published_tree(tmp_path, keydir, hello_chain, bins):
    path = tmp_path / "repo"
    make_repo(path, keydir, bins=bins)
    layout_path = add_hello_layout(path, keydir, hello_chain.layout)
    artifact_path = publish(path, hello_release(hello_chain))
    with running_server(path) as url:
        client = updater(path, url, tmp_path / "client")
        client.refresh()
        info = client.get_targetinfo(artifact_path)
        assert info is not None
        custom = info.custom["in-toto"]
        assert custom["layout"] == layout_path
        assert len(custom["links"]) == 4
        for link in custom["links"]:
            assert link.startswith(f"in-toto/links/{info.hashes['sha256']}/")
            assert client.get_targetinfo(link) is not None
        downloaded = Path(client.download_target(info))
        assert downloaded.read_bytes() == (hello_chain.verify_dir / "hello.tar.gz").read_bytes()
        index = client.get_targetinfo("packages/hello/index.json")
        data = json.loads(Path(client.download_target(index)).read_bytes())
        assert data["channels"] == {"stable": "1.0.0"}
        assert client.get_targetinfo(layout_path) is not None
        assert client.get_targetinfo("packages/nothing/index.json") is None


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes()
            for p in sorted((path / "public").rglob("*")) if p.is_file()}


def test_refused_releases_change_nothing(repo_dir, hello_chain, keydir, tmp_path):
    publish(repo_dir, hello_release(hello_chain))
    before = _tree(repo_dir)
    with pytest.raises(InvalidReleaseError, match="already published"):
        publish(repo_dir, hello_release(hello_chain))
    with pytest.raises(InvalidReleaseError, match="PEP 440"):
        publish(repo_dir, hello_release(hello_chain, version="one"))
    bad_name = hello_release(hello_chain, version="1.0.1")
    bad_name.name = "Hello/../x"
    with pytest.raises(InvalidReleaseError, match="package name"):
        publish(repo_dir, bad_name)
    # a layout the owners did not publish
    other = tmp_path / "other.layout"
    data = json.loads(hello_chain.layout.read_text())
    data["signed"]["readme"] = "changed"
    other.write_text(json.dumps(data))
    unpublished = hello_release(hello_chain, version="1.0.2")
    unpublished.layout = other.read_bytes()
    with pytest.raises(InvalidReleaseError, match="not one published"):
        publish(repo_dir, unpublished)
    # a link for a step the layout does not have
    stray = hello_release(hello_chain, version="1.0.3")
    stray.links = {**stray.links, "deploy.abcdef12.link": next(iter(stray.links.values()))}
    with pytest.raises(InvalidReleaseError, match="names no step"):
        publish(repo_dir, stray)
    # a missing link: in-toto refuses before anything is published
    short = hello_release(hello_chain, version="1.0.4")
    short.links = {k: v for k, v in short.links.items() if not k.startswith("package.")}
    with pytest.raises(SupplyChainError, match="package"):
        publish(repo_dir, short)
    # an artifact that is not the final product
    fake = tmp_path / "hello.tar.gz"
    fake.write_bytes(b"trojan")
    counterfeit = hello_release(hello_chain, version="1.0.5")
    counterfeit.artifact = fake
    with pytest.raises(SupplyChainError, match=r"hello\.tar\.gz"):
        publish(repo_dir, counterfeit)
    assert _tree(repo_dir) == before


def test_layouts_need_the_owners_keys(repo_dir, keydir, hello_chain):
    from custody.repository.releases import add_layout

    repo = CustodyRepository(repo_dir, {"layouts": [signer(keydir, "mallory")]})
    with pytest.raises(SigningError, match="layouts"), repo.transaction():
        add_layout(repo, "hello", hello_chain.layout.read_bytes())
    # a layout signed by a key that is not the layouts role's is refused too
    from custody.intoto.metadata import load_metadata

    forged = load_metadata(hello_chain.layout)
    forged.signatures = []
    forged.sign(signer(keydir, "mallory"))
    repo = CustodyRepository(repo_dir, {"layouts": [signer(keydir, "owner")]})
    with pytest.raises(InvalidReleaseError, match="layout refused"), repo.transaction():
        add_layout(repo, "hello", forged.to_bytes())


def test_channels_and_removal(repo_dir, hello_chain):
    publish(repo_dir, hello_release(hello_chain, "1.0.0"))
    publish(repo_dir, hello_release(hello_chain, "1.1.0", channel="beta"))
    repo = CustodyRepository(repo_dir)
    index = load_index(repo, "hello")
    assert index.channels == {"stable": "1.0.0", "beta": "1.1.0"}
    with repo.transaction():
        set_channel(repo, "hello", "stable", "1.1.0")
    with repo.transaction():
        remove_release(repo, "hello", "1.1.0")
    index = load_index(CustodyRepository(repo_dir), "hello")
    assert set(index.versions) == {"1.0.0"}
    assert index.channels == {"stable": "1.0.0", "beta": "1.0.0"}
    with pytest.raises(NotFoundError), repo.transaction():
        set_channel(repo, "hello", "stable", "9.9")
    assert CustodyRepository(repo_dir).find_target("packages/hello/1.1.0/hello.tar.gz") is None


def test_bump_resigns_only_what_is_due(repo_dir):
    repo = CustodyRepository(repo_dir)
    with repo.transaction():
        assert bump_online(repo) == []
    later = datetime.now(UTC) + timedelta(days=1)
    repo = CustodyRepository(repo_dir, now=lambda: later)
    before = {r["role"]: r["version"] for r in status(repo)}
    with repo.transaction():
        assert bump_online(repo) == ["timestamp"]
    after = {r["role"]: r["version"] for r in status(CustodyRepository(repo_dir))}
    assert after["timestamp"] == before["timestamp"] + 1
    assert after["snapshot"] == before["snapshot"]
    much_later = datetime.now(UTC) + timedelta(days=29, hours=20)
    repo = CustodyRepository(repo_dir, now=lambda: much_later)
    with repo.transaction():
        assert set(bump_online(repo)) == {"releases", "snapshot", "timestamp"}


def test_gc_keeps_what_recent_snapshots_reach(repo_dir, hello_chain):
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        publish(repo_dir, hello_release(hello_chain, version))
    repo = CustodyRepository(repo_dir)
    with repo.transaction():
        remove_release(repo, "hello", "1.0.0")
    for _ in range(3):
        with repo.transaction():
            bump_online(repo, force=True)
    with repo.transaction():
        assert not any(p.name.endswith(".snapshot.json") for p in gc(repo, keep_snapshots=1))
    with repo.transaction():  # within the retention window nothing recent goes
        removed = gc(repo, keep_snapshots=1, retention=timedelta(0))
    assert any(p.name.endswith(".snapshot.json") for p in removed)
    assert repo.read_target("packages/hello/1.2.0/hello.tar.gz")
    snapshot_files = list((repo_dir / "public/metadata").glob("*.snapshot.json"))
    assert len(snapshot_files) == 1


@pytest.mark.parametrize("keep", [0, -1])
def test_gc_never_deletes_what_the_timestamp_reaches(repo_dir, hello_chain, tmp_path, keep):
    publish(repo_dir, hello_release(hello_chain, "1.0.0"))
    metadata = repo_dir / "public/metadata"
    leftover = metadata / ".7.snapshot.json.4242.tmp"  # a publisher killed mid-write
    leftover.write_bytes(b"{")
    repo = CustodyRepository(repo_dir)
    with repo.transaction():
        removed = gc(repo, keep_snapshots=keep)
    assert leftover in removed and not leftover.exists()
    with running_server(repo_dir) as url:  # an unmodified ngclient still refreshes
        client = updater(repo_dir, url, tmp_path / "client")
        client.refresh()
        assert client.get_targetinfo("packages/hello/1.0.0/hello.tar.gz") is not None
    r = subprocess.run([str(BIN / "custody-repo"), "gc", str(repo_dir), "--keep", "0"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 2 and "--keep" in r.stderr


def test_transaction_is_all_or_nothing(repo_dir, hello_chain):
    before = _tree(repo_dir)
    repo = CustodyRepository(repo_dir)
    with pytest.raises(RuntimeError), repo.transaction():
        publish_release(repo, hello_release(hello_chain))
        raise RuntimeError("the operator's script failed half way")
    assert _tree(repo_dir) == before


def test_removing_a_version_keeps_links_another_version_shares(repo_dir, hello_chain):
    """Two versions of the same bytes share links (filed by the artifact's hash)."""
    publish(repo_dir, hello_release(hello_chain, "1.0.0"))
    publish(repo_dir, hello_release(hello_chain, "1.1.0"))
    repo = CustodyRepository(repo_dir)
    with repo.transaction():
        remove_release(repo, "hello", "1.0.0")
    info = CustodyRepository(repo_dir).find_target("packages/hello/1.1.0/hello.tar.gz")
    links = info.custom["in-toto"]["links"]
    assert links and all(CustodyRepository(repo_dir).find_target(p) for p in links)
