"""ATTACKS.md, delivery (TUF): a hostile mirror or network path between client and server."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, Root, Snapshot, Timestamp
from tuf.api.serialization.json import JSONSerializer

from custody.keys_tooling.keys import generate_key, load_signer, write_key_pair
from custody.repository.keyops import rotate
from custody.repository.repo import CustodyRepository
from tests.helpers import signer

pytestmark = pytest.mark.slow


def metadata_file(scene, role: str, version: int | None = None) -> Path:
    folder = scene.repo_dir / "public/metadata"
    if version is None:
        version = max(int(p.name.split(".")[0]) for p in folder.glob(f"*.{role}.json"))
    return folder / f"{version}.{role}.json"


def resign(data: bytes, key_path: Path, **changes: object) -> bytes:
    md = Metadata.from_bytes(data)
    for name, value in changes.items():
        setattr(md.signed, name, value)
    md.signatures.clear()
    md.sign(load_signer(str(key_path)))
    return md.to_bytes(JSONSerializer())


def test_arbitrary_artifact_replaced_on_a_mirror(scene):
    scene.served.publish("1.1.0")
    # The mirror's attacker replaces the artifact and its patch from 1.0.0 alike (the
    # patch alone refused, the host would download the artifact whole: still refused).
    scene.mirror.overrides["hello.tar.gz"] = b"\x1f\x8b arbitrary bytes"
    scene.mirror.overrides[".zst"] = b"\x28\xb5\x2f\xfd arbitrary bytes"
    scene.refused("update", words="TUF refused the download of packages/hello/1.1.0/")


def test_rollback_of_timestamp(scene):
    old = (scene.repo_dir / "public/metadata/timestamp.json").read_bytes()
    scene.served.publish("1.1.0")
    assert scene.refused  # the client follows 1.1.0 first ...
    from tests.helpers import custody

    assert custody(scene.home, "update").returncode == 0
    scene.remember()
    scene.mirror.overrides["timestamp.json"] = old  # ... then the old timestamp is replayed
    scene.refused("update", words="BadVersionNumberError")


def test_indefinite_freeze_with_expired_metadata(scene):
    past = datetime.now(UTC) - timedelta(days=3)
    repo = CustodyRepository(scene.repo_dir, now=lambda: past)
    with repo.transaction():  # a timestamp that expired two days ago, served forever
        repo.do_timestamp(force=True)
    scene.refused("update", words="ExpiredMetadataError")


def test_endless_data(scene):
    scene.mirror.endless.add("timestamp.json")
    start = time.monotonic()
    scene.refused("update", words="DownloadLengthMismatchError")
    assert time.monotonic() - start < 10


def test_slow_retrieval(scene):
    scene.configure(min_rate=500.0, slow_grace=1.0)
    scene.mirror.trickle.add("timestamp.json")
    start = time.monotonic()
    scene.refused("update", words="SlowRetrievalError")
    assert time.monotonic() - start < 15


def test_mix_and_match_snapshots(scene):
    old_snapshot = metadata_file(scene, "snapshot").read_bytes()
    scene.served.publish("1.1.0")
    new_name = metadata_file(scene, "snapshot").name
    scene.mirror.overrides[new_name] = old_snapshot  # an older snapshot under the new name
    scene.refused("update", words="BadVersionNumberError")


def test_malicious_mirror_signs_metadata_itself(scene):
    scene.served.publish("1.1.0")
    path = metadata_file(scene, "snapshot")
    scene.mirror.overrides[path.name] = resign(path.read_bytes(),
                                               scene.served.keydir / "mallory")
    scene.refused("update", words="UnsignedMetadataError")


def test_wrong_target_delivered_for_a_path(scene):
    scene.served.publish("1.1.0")
    index = next((scene.repo_dir / "public/targets/packages/hello").glob("*.index.json"))
    scene.mirror.overrides["hello.tar.gz"] = index.read_bytes()  # a genuine file, wrong path
    scene.mirror.overrides[".zst"] = index.read_bytes()  # the patch from 1.0.0 too
    scene.refused("update", words="TUF refused the download of packages/hello/1.1.0/")


def _root_threshold_two(scene, tmp_path: Path) -> Path:
    """Rotate to root keys {root, root2} with threshold 2; the client follows."""
    from tests.helpers import custody

    write_key_pair(generate_key(), tmp_path / "root2", None)
    keydir = scene.served.keydir
    repo = CustodyRepository(scene.repo_dir, pool=[signer(keydir, "root"),
                                                   load_signer(str(tmp_path / "root2"))])
    with repo.transaction():
        rotate(repo, "root", add=[load_signer(str(tmp_path / "root2")).public_key],
               threshold=2)
    assert custody(scene.home, "update").returncode == 0
    return tmp_path / "root2"


def _forge_root(scene, key_paths: list[Path]) -> None:
    current = metadata_file(scene, "root")
    md = Metadata[Root].from_bytes(current.read_bytes())
    md.signed.version += 1
    mallory = load_signer(str(scene.served.keydir / "mallory"))
    for role in ("root", "timestamp"):
        md.signed.add_key(mallory.public_key, role)
    md.signatures.clear()
    for path in key_paths:
        md.sign(load_signer(str(path)), append=True)
    name = f"{md.signed.version}.root.json"
    scene.mirror.overrides[name] = md.to_bytes(JSONSerializer())


def test_key_compromise_below_threshold(scene, tmp_path):
    _root_threshold_two(scene, tmp_path)
    scene.remember()
    _forge_root(scene, [scene.served.keydir / "root"])  # one stolen root key of two
    scene.refused("update", words="UnsignedMetadataError")


def test_fast_forward_then_recovery_by_rotation(scene, tmp_path):
    from tests.helpers import custody

    keydir = scene.served.keydir
    timestamp = (scene.repo_dir / "public/metadata/timestamp.json").read_bytes()
    scene.mirror.overrides["timestamp.json"] = resign(timestamp, keydir / "online",
                                                      version=99_999)
    assert custody(scene.home, "update").returncode == 0  # pushed to v99999
    scene.mirror.overrides.clear()
    scene.served.publish("1.1.0")
    scene.remember()
    scene.refused("update", words="BadVersionNumberError")
    write_key_pair(generate_key(), tmp_path / "ts2", None)
    from custody.repository.config import KeySpec

    ts2 = load_signer(str(tmp_path / "ts2"))
    repo = CustodyRepository(scene.repo_dir, pool=[signer(keydir, "root")])
    with repo.transaction():
        rotate(repo, Timestamp.type, add=[ts2.public_key],
               remove=[signer(keydir, "online").public_key.keyid],
               online_signers=[(ts2, KeySpec(path=str(tmp_path / "ts2")))])
    result = custody(scene.home, "update")
    assert result.returncode == 0, result.stderr
    state = json.loads((scene.home / "state.json").read_text())
    assert state["packages"]["hello"]["current"] == "1.1.0"
    assert Snapshot.type  # (snapshot keys were not part of the attack)
