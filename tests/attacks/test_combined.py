"""ATTACKS.md, where TUF and in-toto meet: the server and its online keys are the attacker's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer

from custody.intoto.models import link_filename
from custody.keys_tooling.keys import generate_key, load_public_key, load_signer, write_key_pair
from custody.repository.keyops import rotate
from custody.repository.releases import links_from_dir, set_channel
from custody.repository.repo import CustodyRepository
from demo.attacker import force_publish
from tests.attacks.test_delivery import _forge_root, _root_threshold_two
from tests.helpers import custody, signer
from tests.intoto.chain import IMPLS, keyid, make_chain

pytestmark = pytest.mark.slow


def test_trojan_with_links_forged_by_the_server(scene, tmp_path):
    """Every link re-recorded and signed by mallory, filed under the functionaries' names."""
    keydir = scene.served.keydir
    fake = tmp_path / "fake-keys"
    fake.mkdir()
    for name in ("alice", "bob", "rb1", "rb2", "owner"):
        for suffix in ("", ".pub"):
            shutil.copy(keydir / f"mallory{suffix}", fake / f"{name}{suffix}")
    chain = make_chain(IMPLS["custody"], IMPLS["custody"], fake, tmp_path / "evil",
                       trojan_rb2=False, message="pwned")
    mallory = keyid(keydir, "mallory")
    links = {}
    for step, who in (("clone", "alice"), ("build", "rb1"), ("build", "rb2"),
                      ("package", "bob")):
        links[link_filename(step, keyid(keydir, who))] = (
            chain.links / link_filename(step, mallory)).read_bytes()
    force_publish(scene.repo_dir, "hello", "6.6.6", chain.verify_dir / "hello.tar.gz", links)
    scene.refused("update", words="not validly signed by authorized functionary")


def test_in_toto_metadata_dropped(scene):
    genuine = scene.served.chain("hello 1.0.0")
    force_publish(scene.repo_dir, "hello", "6.6.6", genuine.verify_dir / "hello.tar.gz", {},
                  with_intoto=False)
    scene.refused("update", words="carries no in-toto metadata")


def test_latest_pointed_at_an_older_genuine_release(scene):
    scene.served.publish("1.1.0")
    assert custody(scene.home, "update").returncode == 0
    scene.remember()
    repo = CustodyRepository(scene.repo_dir)
    with repo.transaction():
        set_channel(repo, "hello", "stable", "1.0.0", allow_downgrade=True)
    scene.refused("update", words="older than the installed 1.1.0; refused")


def test_layout_swapped_by_the_server(scene, tmp_path):
    """A layout signed by mallory, listed by the online 'releases' role, not 'layouts'."""
    from custody.intoto.metadata import Metablock
    from custody.intoto.models import Layout
    from tests.intoto.chain import hello_layout

    layout = Metablock.new(Layout.from_dict(hello_layout(scene.served.keydir)))
    layout.sign(signer(scene.served.keydir, "mallory"))
    forged_path = "in-toto/layouts/hello.9.layout"
    repo = CustodyRepository(scene.repo_dir)
    with repo.transaction():
        with repo.edit_targets("releases") as releases:
            releases.targets[forged_path] = TargetFile.from_data(forged_path, layout.to_bytes())
        repo.publish_metadata()
    genuine = scene.served.chain("hello 1.0.0")
    force_publish(scene.repo_dir, "hello", "6.6.6", genuine.verify_dir / "hello.tar.gz",
                  links_from_dir(genuine.links), layout=forged_path)
    scene.refused("update", words=f"layout {forged_path} is not in the layouts role")


def _attacker_signs_layouts(repo_dir: Path, owner_key: Path, online_key: Path) -> None:
    """A new 'layouts' version signed by a revoked owner key; snapshot/timestamp by online."""
    serializer = JSONSerializer()
    meta_dir = repo_dir / "public/metadata"
    timestamp = Metadata[Timestamp].from_bytes((meta_dir / "timestamp.json").read_bytes())
    snap_version = timestamp.signed.snapshot_meta.version
    snapshot = Metadata[Snapshot].from_bytes(
        (meta_dir / f"{snap_version}.snapshot.json").read_bytes())
    layouts_version = snapshot.signed.meta["layouts.json"].version
    layouts = Metadata[Targets].from_bytes(
        (meta_dir / f"{layouts_version}.layouts.json").read_bytes())
    layouts.signed.targets["in-toto/layouts/hello.99.layout"] = TargetFile.from_data(
        "in-toto/layouts/hello.99.layout", b"{}")
    layouts.signed.version += 1
    layouts.signatures.clear()
    layouts.sign(load_signer(str(owner_key)))
    (meta_dir / f"{layouts.signed.version}.layouts.json").write_bytes(
        layouts.to_bytes(serializer))
    online = load_signer(str(online_key))
    snapshot.signed.meta["layouts.json"].version = layouts.signed.version
    snapshot.signed.version += 1
    snapshot.signatures.clear()
    snapshot.sign(online)
    (meta_dir / f"{snapshot.signed.version}.snapshot.json").write_bytes(
        snapshot.to_bytes(serializer))
    timestamp.signed.snapshot_meta.version = snapshot.signed.version
    timestamp.signed.version += 1
    timestamp.signatures.clear()
    timestamp.sign(online)
    (meta_dir / "timestamp.json").write_bytes(timestamp.to_bytes(serializer))


def test_stolen_layout_key_revoked_through_tuf(scene, tmp_path):
    keydir = scene.served.keydir
    write_key_pair(generate_key(), tmp_path / "owner-new", None)
    repo = CustodyRepository(scene.repo_dir, pool=[signer(keydir, "targets"),
                                                   load_signer(str(tmp_path / "owner-new"))])
    with repo.transaction():
        rotate(repo, "layouts", add=[load_public_key(tmp_path / "owner-new.pub")],
               remove=[load_public_key(keydir / "owner.pub").keyid])
    _attacker_signs_layouts(scene.repo_dir, keydir / "owner", keydir / "online")
    genuine = scene.served.chain("hello 1.0.0")
    force_publish(scene.repo_dir, "hello", "6.6.6", genuine.verify_dir / "hello.tar.gz",
                  links_from_dir(genuine.links), layout="in-toto/layouts/hello.99.layout")
    scene.refused("update", words="UnsignedMetadataError")


def test_stolen_root_key_below_threshold_then_rotated_out(scene, tmp_path):
    keydir = scene.served.keydir
    root2 = _root_threshold_two(scene, tmp_path)
    scene.remember()
    _forge_root(scene, [keydir / "root"])
    scene.refused("update", words="UnsignedMetadataError")
    scene.mirror.overrides.clear()
    # the owners rotate the stolen key out: old threshold (root, root2), new (root2, root3)
    write_key_pair(generate_key(), tmp_path / "root3", None)
    root3 = load_signer(str(tmp_path / "root3"))
    repo = CustodyRepository(scene.repo_dir, pool=[signer(keydir, "root"),
                                                   load_signer(str(root2)), root3])
    with repo.transaction():
        rotate(repo, "root", add=[root3.public_key],
               remove=[load_public_key(keydir / "root.pub").keyid])
    result = custody(scene.home, "update")
    assert result.returncode == 0, result.stderr
    trusted = Metadata.from_bytes((scene.home / "metadata/root.json").read_bytes())
    assert load_public_key(keydir / "root.pub").keyid not in trusted.signed.roles["root"].keyids


def test_index_passes_an_older_artifact_off_as_a_new_version(scene):
    """The online-signed index maps a new version number to the old, genuine artifact."""
    from custody.formats.index import VersionEntry
    from custody.repository.releases import load_index

    repo = CustodyRepository(scene.repo_dir)
    with repo.transaction():
        index = load_index(repo, "hello")
        index.versions["9.0.0"] = VersionEntry(index.versions["1.0.0"].target)
        index.channels["stable"] = "9.0.0"
        repo.add_target(index.target_path("hello"), index.to_bytes())
        repo.publish_metadata()
    scene.refused("update", words="maps 9.0.0 to packages/hello/1.0.0/hello.tar.gz")
