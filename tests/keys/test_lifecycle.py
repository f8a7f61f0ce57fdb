"""Key lifecycle with a real server and clients initialised before every change.

After each rotation the client updates without intervention; metadata signed
by removed keys is refused; roots short of a threshold are refused; a chain
of roots is followed; a fast-forward attack is recovered from; a revoked
functionary's links are refused.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, Root, Timestamp
from tuf.api.serialization.json import JSONSerializer

from custody.keys_tooling.keys import generate_key, load_public_key, load_signer, write_key_pair
from custody.repository.repo import CustodyRepository
from tests.helpers import BIN, custody, signer

pytestmark = pytest.mark.slow


def keys_cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "custody-keys"), *[str(a) for a in args]],
                          capture_output=True, text=True, timeout=120, check=False)


def new_key(tmp: Path, name: str) -> Path:
    write_key_pair(generate_key(), tmp / name, None)
    return tmp / name


def current(home: Path) -> str:
    return json.loads((home / "state.json").read_text())["packages"]["hello"]["current"]


def online_keyid(keydir: Path) -> str:
    return load_public_key(keydir / "online.pub").keyid


def forged_timestamp(repo_dir: Path, key: Path, version: int) -> bytes:
    """What an attacker holding a timestamp key serves: a timestamp signed by it."""
    path = repo_dir / "public/metadata/timestamp.json"
    md = Metadata[Timestamp].from_bytes(path.read_bytes())
    md.signed.version = version
    md.signatures.clear()
    md.sign(load_signer(str(key)))
    return md.to_bytes(JSONSerializer())


def forge_timestamp(repo_dir: Path, key: Path, version: int) -> None:
    path = repo_dir / "public/metadata/timestamp.json"
    path.write_bytes(forged_timestamp(repo_dir, key, version))


def test_timestamp_rotation_followed_and_old_key_refused(served, home, tmp_path, keydir):
    served.publish("1.0.0")
    assert custody(home, "install", "hello").returncode == 0
    ts2 = new_key(tmp_path, "ts2")
    r = keys_cli("rotate", "--repo", served.repo_dir, "--role", "timestamp", "--add", ts2,
                 "--remove", online_keyid(keydir)[:8], "--sign-with", keydir / "root")
    assert r.returncode == 0, r.stderr
    assert "re-signed snapshot, timestamp" in r.stdout
    served.publish("1.1.0")  # the server signs with the new key from its configuration
    r = custody(home, "update")
    assert r.returncode == 0, r.stderr
    assert current(home) == "1.1.0"
    served.publish("1.2.0")
    forge_timestamp(served.repo_dir, keydir / "online", 999)  # the removed key
    before = (home / "state.json").read_bytes()
    r = custody(home, "update")
    assert r.returncode == 1 and "TUF refused" in r.stderr
    assert (home / "state.json").read_bytes() == before


def test_root_threshold_ceremony_and_chain_of_roots(served, home, tmp_path, keydir):
    served.publish("1.0.0")
    assert custody(home, "install", "hello").returncode == 0
    root2 = new_key(tmp_path, "root2")
    # root v2: two keys, threshold 2 -> needs root2's signature too: a ceremony
    r = keys_cli("rotate", "--repo", served.repo_dir, "--role", "root", "--add",
                 f"{root2}.pub", "--threshold", "2", "--sign-with", keydir / "root")
    assert r.returncode == 3, r.stderr
    assert "1/2 by the new root's keys" in r.stderr
    status = subprocess.run([BIN / "custody-repo", "status", served.repo_dir],
                            capture_output=True, text=True, check=False).stdout
    assert "pending: root v2 has signatures 1/2 by the new root's keys" in status
    exported = tmp_path / "root.json"
    assert keys_cli("export", "--repo", served.repo_dir, "--role", "root", "-o",
                    exported).returncode == 0
    assert keys_cli("sign", exported, "--key", root2).returncode == 0
    r = keys_cli("import", "--repo", served.repo_dir, exported)
    assert r.returncode == 0 and "root published" in r.stdout, r.stderr
    assert CustodyRepository(served.repo_dir).open(Root.type).signed.version == 2
    # roots v3 and v4 while the client is not looking (it will skip to v4 in one refresh)
    for _ in range(2):
        ts = new_key(tmp_path, f"ts-{_}")
        r = keys_cli("rotate", "--repo", served.repo_dir, "--role", "timestamp", "--add", ts,
                     "--sign-with", keydir / "root", "--sign-with", root2)
        assert r.returncode == 0, r.stderr
    served.publish("1.1.0")
    r = custody(home, "update")
    assert r.returncode == 0, r.stderr
    assert json.loads((home / "metadata/root.json").read_text())["signed"]["version"] == 4

    # python-tuf re-makes the root.json link on every start (remove, then symlink): a
    # client killed in between lost it (seen in CI); it restarts from its root history,
    # re-verifying v1 -> v4 locally, and ends at v4 again, not at v1
    (home / "metadata/root.json").unlink()
    served.publish("1.1.1")
    r = custody(home, "update")
    assert r.returncode == 0, r.stderr
    assert "root.json was lost" in r.stderr
    assert json.loads((home / "metadata/root.json").read_text())["signed"]["version"] == 4

    # a root v5 signed by only one of the two root keys is refused by the client
    root_md = Metadata[Root].from_bytes((served.repo_dir / "public/metadata/4.root.json")
                                        .read_bytes())
    root_md.signed.version = 5
    root_md.signatures.clear()
    root_md.sign(signer(keydir, "root"))
    (served.repo_dir / "public/metadata/5.root.json").write_bytes(root_md.to_bytes())
    before = (home / "state.json").read_bytes()
    r = custody(home, "update")
    assert r.returncode == 1 and "TUF refused" in r.stderr
    assert (home / "state.json").read_bytes() == before


def test_fast_forward_attack_recovered_by_rotating_timestamp(served, tmp_path, keydir):
    """The attacker (timestamp key, on the network path) serves timestamp v10000."""
    from tests.helpers import Mirror

    served.publish("1.0.0")
    mirror = Mirror(served.repo_dir / "public")
    home = tmp_path / "ffhome"
    assert custody(home, "init", "--url", mirror.url, "--root", str(served.root),
                   "--inspections", "run").returncode == 0
    assert custody(home, "install", "hello").returncode == 0
    mirror.overrides["timestamp.json"] = forged_timestamp(served.repo_dir, keydir / "online",
                                                          10_000)
    assert custody(home, "update").returncode == 0  # the client now trusts v10000
    del mirror.overrides["timestamp.json"]
    served.publish("1.1.0")  # honest timestamp, far lower version
    r = custody(home, "update")
    assert r.returncode == 1 and "BadVersionNumberError" in r.stderr
    ts2 = new_key(tmp_path, "ts2")
    r = keys_cli("rotate", "--repo", served.repo_dir, "--role", "timestamp", "--add", ts2,
                 "--remove", online_keyid(keydir), "--sign-with", keydir / "root")
    assert r.returncode == 0, r.stderr
    r = custody(home, "update")
    assert r.returncode == 0, r.stderr
    assert current(home) == "1.1.0"
    mirror.close()


def test_layout_owner_key_rotation(served, home, tmp_path, keydir, hello_chain):
    served.publish("1.0.0")
    owner2 = new_key(tmp_path, "owner2-new")
    r = keys_cli("rotate", "--repo", served.repo_dir, "--role", "layouts", "--add",
                 f"{owner2}.pub", "--remove", load_public_key(keydir / "owner.pub").keyid,
                 "--sign-with", keydir / "targets", "--sign-with", owner2)
    assert r.returncode == 0, r.stderr
    # the published layout carries the old owner's in-toto signature: refused now
    r = custody(home, "install", "hello")
    assert r.returncode == 1 and "layout has 0 valid signature" in r.stderr
    # the owners re-sign the layout with the new key and publish it
    relayout = tmp_path / "hello.layout"
    r = subprocess.run([BIN / "custody-intoto", "sign", "-f", hello_chain.layout, "-k", owner2,
                        "-o", relayout], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([BIN / "custody-repo", "layout", "add", served.repo_dir, relayout,
                        "--key", owner2, "--name", "hello"], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr
    r = custody(home, "install", "hello")
    assert r.returncode == 0, r.stderr


def test_revoke_reports_where_and_refuses_to_strand_a_role(served, tmp_path, keydir):
    owner2 = new_key(tmp_path, "owner2-new")
    r = keys_cli("rotate", "--repo", served.repo_dir, "--role", "layouts", "--add",
                 f"{owner2}.pub", "--sign-with", keydir / "targets", "--sign-with",
                 keydir / "owner")
    assert r.returncode == 0, r.stderr
    owner = load_public_key(keydir / "owner.pub").keyid
    r = keys_cli("revoke", "--repo", served.repo_dir, owner[:8], "--sign-with",
                 keydir / "targets", "--sign-with", owner2)
    assert r.returncode == 0, r.stderr
    assert f"revoked {owner[:8]} from layouts" in r.stdout
    r = keys_cli("revoke", "--repo", served.repo_dir, online_keyid(keydir), "--sign-with",
                 keydir / "root", "--sign-with", keydir / "targets")
    assert r.returncode == 1 and "would have 0 key(s)" in r.stderr


def test_revoked_functionary(served, home, tmp_path, keydir):
    """A new layout without alice: her releases (old or new) are refused; bob's pass.

    The choice, documented in docs/keys.md: clients verify every release
    against the newest layout, so a release built before the revocation stays
    installable only if the new layout still trusts the keys that built it.
    """
    from custody.intoto.metadata import Metablock
    from custody.intoto.models import Layout
    from tests.intoto.chain import IMPLS, hello_layout, make_chain

    served.publish("1.0.0")  # built by alice
    layout = Metablock.new(Layout.from_dict(hello_layout(keydir, developer="bob")))
    layout.sign(signer(keydir, "owner"))
    path = tmp_path / "hello-v2.layout"
    layout.dump(path)
    r = subprocess.run([BIN / "custody-repo", "layout", "add", served.repo_dir, path, "--key",
                        keydir / "owner", "--name", "hello", "--yes"], capture_output=True,
                       text=True, check=False)  # stranding alice's stable 1.0.0 on purpose
    assert r.returncode == 0, r.stderr
    r = custody(home, "install", "hello==1.0.0")
    assert r.returncode == 1 and "in-toto refused hello 1.0.0" in r.stderr
    assert "step 'clone'" in r.stderr
    chain = make_chain(IMPLS["custody"], IMPLS["custody"], keydir, tmp_path / "bob-chain",
                       layout=hello_layout(keydir, developer="bob"), developer="bob",
                       message="hello 1.1.0")
    from custody.repository.releases import Release, links_from_dir, publish_release

    repo = CustodyRepository(served.repo_dir)
    with repo.transaction():
        publish_release(repo, Release("hello", "1.1.0", chain.verify_dir / "hello.tar.gz",
                                      path.read_bytes(), links_from_dir(chain.links)))
    r = custody(home, "install", "hello")
    assert r.returncode == 0, r.stderr
    assert current(home) == "1.1.0"


def test_partial_ceremony_changes_nothing_published(served, tmp_path, keydir):
    """Importing too few signatures keeps everything (metadata, online keys) as it was."""
    from custody.repository.config import RepoConfig
    from custody.repository.storage import RepoPaths

    root2 = new_key(tmp_path, "root2")
    r = keys_cli("rotate", "--repo", served.repo_dir, "--role", "root", "--add",
                 f"{root2}.pub", "--threshold", "2", "--sign-with", keydir / "root")
    assert r.returncode == 3
    config_before = RepoConfig.load(RepoPaths(served.repo_dir))
    published = sorted(p.name for p in (served.repo_dir / "public/metadata").iterdir())
    exported = tmp_path / "root.json"
    assert keys_cli("export", "--repo", served.repo_dir, "--role", "root", "-o",
                    exported).returncode == 0
    r = keys_cli("import", "--repo", served.repo_dir, exported)  # no new signature yet
    assert r.returncode == 3 and "still needs signatures" in r.stderr
    assert RepoConfig.load(RepoPaths(served.repo_dir)) == config_before
    assert sorted(p.name for p in (served.repo_dir / "public/metadata").iterdir()) == published


def test_revoking_a_functionary_key_says_where_it_is_revoked(tmp_path, keydir, hello_chain):
    """custody-keys revoke on a key no TUF role trusts names the layout that does."""
    from tests.helpers import add_hello_layout, make_repo

    repo_dir = tmp_path / "repo"
    make_repo(repo_dir, keydir)
    add_hello_layout(repo_dir, keydir, hello_chain.layout)
    alice = load_public_key(keydir / "alice.pub").keyid
    r = keys_cli("revoke", "--repo", repo_dir, alice)
    assert r.returncode == 1
    assert f"key {alice[:8]} is an in-toto functionary key (in in-toto/layouts/hello.1.layout)" \
        in r.stderr and "custody-repo layout add" in r.stderr
    r = keys_cli("revoke", "--repo", repo_dir, "ab" * 32)
    assert r.returncode == 1 and "no published layout names it" in r.stderr


def test_every_console_script_has_a_version():
    for script in ("custody", "custody-repo", "custody-keys", "custody-intoto",
                   "custody-tuf-client"):
        r = subprocess.run([str(BIN / script), "--version"], capture_output=True, text=True,
                           check=False)
        assert r.returncode == 0 and "0." in r.stdout, (script, r.stderr)


def test_a_refused_key_command_leaves_no_key_file(tmp_path, keydir):
    """`online` with a key the metadata does not trust, and `rotate` refused for its
    threshold, are refusals: the private key they were given is not left in private/keys."""
    from tests.helpers import make_repo

    repo = tmp_path / "repo"
    make_repo(repo, keydir)
    keys = repo / "private/keys"
    before = sorted(keys.iterdir()) if keys.exists() else []
    stranger = new_key(tmp_path, "stranger")
    r = keys_cli("online", "--repo", repo, "--role", "timestamp", "--key", stranger)
    assert r.returncode == 1 and "'custody-keys rotate' changes what it trusts" in r.stderr
    r = keys_cli("rotate", "--repo", repo, "--role", "timestamp", "--add", stranger,
                 "--threshold", "3", "--sign-with", keydir / "root")
    assert r.returncode == 1 and "threshold of 3" in r.stderr, r.stderr
    assert (sorted(keys.iterdir()) if keys.exists() else []) == before
    # and the same rotation done right stores it, named by its key id
    r = keys_cli("rotate", "--repo", repo, "--role", "timestamp", "--add", stranger,
                 "--sign-with", keydir / "root")
    assert r.returncode == 0, r.stderr
    assert [p.name for p in keys.iterdir() if p.name.startswith("timestamp-")]
