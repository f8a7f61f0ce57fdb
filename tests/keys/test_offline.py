"""Day two with offline keys: every ceremony docs/keys.md describes, run end to end.

The root, targets and owner private keys exist only in ``offline/`` (the
offline machine); the repository's server side only ever sees their ``.pub``
halves, from ``custody-repo init`` on. Each change goes through the same
steps a real operator takes (the command exits 3, ``custody-keys export``,
``custody-keys sign`` on the offline machine, ``custody-keys import``), and
every test ends with a client that installs or updates through a real server.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata

from custody.keys_tooling.keys import generate_key, load_public_key, write_key_pair
from tests.helpers import BIN, custody, running_server

pytestmark = pytest.mark.slow

OFFLINE = ("root", "targets", "owner")


def run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120,
                          check=False)


def repo_cli(*args: object) -> subprocess.CompletedProcess[str]:
    return run(BIN / "custody-repo", *args)


def keys_cli(*args: object) -> subprocess.CompletedProcess[str]:
    return run(BIN / "custody-keys", *args)


def keyid(path: Path) -> str:
    return load_public_key(path).keyid


def ceremony(repo: Path, role: str, key: Path, work: Path) -> subprocess.CompletedProcess[str]:
    """Export ``role``'s pending version, sign it with ``key`` (offline), import it."""
    exported = work / f"{role}.json"
    r = keys_cli("export", "--repo", repo, "--role", role, "-o", exported)
    assert r.returncode == 0, r.stderr
    r = keys_cli("sign", exported, "--key", key)
    assert r.returncode == 0, r.stderr
    return keys_cli("import", "--repo", repo, exported)


def publish(repo: Path, chain, version: str) -> None:
    r = repo_cli("publish", repo, chain.verify_dir / "hello.tar.gz", "--name", "hello",
                 "--version", version, "--layout", chain.layout, "--links", chain.links)
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def template(tmp_path_factory, keydir) -> Path:
    """A published repository made from public keys only (init, then the first ceremony)."""
    work = tmp_path_factory.mktemp("offline-template")
    offline = work / "offline"
    offline.mkdir()
    for name in OFFLINE:
        for suffix in ("", ".pub"):
            shutil.copy(keydir / f"{name}{suffix}", offline / f"{name}{suffix}")
    repo = work / "repo"
    r = repo_cli("init", repo, "--bins", "4", "--root-key", offline / "root.pub",
                 "--targets-key", offline / "targets.pub", "--layout-key", offline / "owner.pub")
    assert r.returncode == 3, r.stderr
    for role, key in (("root", "root"), ("targets", "targets"), ("layouts", "owner")):
        r = ceremony(repo, role, offline / key, work)
    assert r.returncode == 0 and "the repository is published" in r.stdout, r.stderr
    return work


@pytest.fixture
def site(template, tmp_path) -> Path:
    """A copy of the template: ``repo`` (the server's) and ``offline`` (the keys)."""
    for name in ("repo", "offline"):
        shutil.copytree(template / name, tmp_path / name, symlinks=True)
    return tmp_path


def no_offline_key_on_the_server(repo: Path, offline: Path) -> None:
    secrets = {(offline / name).read_bytes() for name in OFFLINE}
    for path in repo.rglob("*"):
        assert not path.is_file() or path.read_bytes() not in secrets, path


def client(url: str, repo: Path, home: Path) -> Path:
    r = custody(home, "init", "--url", url, "--root", str(repo / "public/metadata/1.root.json"),
                "--inspections", "run")
    assert r.returncode == 0, r.stderr
    return home


@pytest.mark.parametrize("owner_key", ["public", "none"])
def test_layout_added_with_the_owner_key_offline(site, hello_chain, owner_key):
    repo, offline = site / "repo", site / "offline"
    keys = ["--key", offline / "owner.pub"] if owner_key == "public" else []
    r = repo_cli("layout", "add", repo, hello_chain.layout, *keys, "--name", "hello", "--new")
    assert r.returncode == 3, r.stderr
    owner = keyid(offline / "owner.pub")[:8]
    assert f"layouts v2 has signatures 0/1 by the keys targets trusts for layouts ({owner})" \
        in r.stderr
    assert "custody-keys export --repo" in r.stderr
    assert not list((repo / "public/targets/in-toto").glob("layouts/*"))  # nothing published
    r = keys_cli("pending", "show", "--repo", repo, "layouts")
    assert r.returncode == 0, r.stderr
    assert "adds in-toto/layouts/hello.1.layout to layouts" in r.stdout
    assert "file in-toto/layouts/hello.1.layout" in r.stdout

    r = ceremony(repo, "layouts", offline / "owner", site)
    assert r.returncode == 0 and "layouts published" in r.stdout, r.stderr
    assert len(list((repo / "public/targets/in-toto/layouts").glob("*.hello.1.layout"))) == 1
    assert keys_cli("pending", "list", "--repo", repo).stdout == ""
    assert repo_cli("status", repo, "--check", "30").returncode == 0
    publish(repo, hello_chain, "1.0.0")
    no_offline_key_on_the_server(repo, offline)
    with running_server(repo) as url:
        r = custody(client(url, repo, site / "home"), "install", "hello")
    assert r.returncode == 0, r.stderr
    assert (site / "home/packages/hello/current/src/hello.py").exists()


def signed_by(repo: Path, role: str) -> set[str]:
    path = repo / "public/metadata" / ("timestamp.json" if role == "timestamp" else "")
    if role != "timestamp":
        version = max(int(p.name.split(".")[0])
                      for p in (repo / "public/metadata").glob(f"*.{role}.json"))
        path = repo / f"public/metadata/{version}.{role}.json"
    return set(Metadata.from_bytes(path.read_bytes()).signatures)


@pytest.mark.parametrize(("role", "ceremony_role", "key"), [
    ("timestamp", "root", "root"), ("snapshot", "root", "root"),
    ("releases", "targets", "targets"), ("bins", None, None)])
def test_online_key_rotated_through_a_ceremony(site, hello_chain, role, ceremony_role, key):
    repo, offline = site / "repo", site / "offline"
    r = repo_cli("layout", "add", repo, hello_chain.layout, "--key", offline / "owner",
                 "--name", "hello", "--new")
    assert r.returncode == 0, r.stderr
    publish(repo, hello_chain, "1.0.0")
    with running_server(repo) as url:
        home = client(url, repo, site / "home")
        assert custody(home, "install", "hello").returncode == 0
        rotate_online_key(site, role, ceremony_role, key)
        # the server signs with the new key from now on; the client follows
        publish(repo, hello_chain, "1.0.1")
        r = custody(home, "update")
    assert r.returncode == 0, r.stderr
    state = json.loads((home / "state.json").read_text())
    assert state["packages"]["hello"]["current"] == "1.0.1"
    no_offline_key_on_the_server(repo, offline)


def rotate_online_key(site: Path, role: str, ceremony_role: str | None,
                      key: str | None) -> None:
    repo, offline = site / "repo", site / "offline"
    old = keyid(repo / "private/keys/online.pub")
    write_key_pair(generate_key(), site / "new-online", None)
    new = keyid(site / "new-online.pub")
    r = keys_cli("rotate", "--repo", repo, "--role", role, "--add", site / "new-online",
                 "--remove", old[:8])  # no offline key at hand
    if ceremony_role is None:  # bins are delegated by releases, an online role: no ceremony
        assert r.returncode == 0, r.stderr
    else:
        assert r.returncode == 3, r.stderr
        assert f"{ceremony_role} v2 has signatures 0/1" in r.stderr
        assert signed_by(repo, role) == {old}
        r = keys_cli("pending", "show", "--repo", repo, ceremony_role)
        assert f"online keys of {role}: keys/{role}-{new[:8]}" in r.stdout, r.stdout
        r = ceremony(repo, ceremony_role, offline / str(key), site)
        assert r.returncode == 0 and f"{ceremony_role} published" in r.stdout, r.stderr
    assert signed_by(repo, "bins-0" if role == "bins" else role) == {new}
    r = repo_cli("status", repo, "--check", "30")
    assert r.returncode == 0, r.stdout + r.stderr


def test_pending_changes_are_listed_shown_and_dropped(site, hello_chain):
    repo, offline = site / "repo", site / "offline"
    write_key_pair(generate_key(), site / "root2", None)
    r = keys_cli("rotate", "--repo", repo, "--role", "root", "--add", site / "root2.pub",
                 "--threshold", "2")
    assert r.returncode == 3, r.stderr
    r = keys_cli("pending", "list", "--repo", repo)
    assert r.returncode == 0 and r.stdout.startswith("root v2: signatures 0/2 by the new "
                                                     "root's keys"), r.stdout
    r = keys_cli("pending", "show", "--repo", repo, "root")
    assert "root keys: added" in r.stdout and "threshold 2" in r.stdout
    exported = site / "root.json"
    assert keys_cli("export", "--repo", repo, "--role", "root", "-o", exported).returncode == 0
    # a second change of root while one waits is refused, naming the first
    r = keys_cli("rotate", "--repo", repo, "--role", "root", "--threshold", "1")
    assert r.returncode == 1 and "root already has a pending change" in r.stderr, r.stderr
    assert "custody-keys pending drop" in r.stderr
    assert repo_cli("status", repo, "--check", "30").returncode == 1
    r = keys_cli("pending", "drop", "--repo", repo, "root")
    assert r.returncode == 0 and "dropped the pending change root" in r.stdout
    assert keys_cli("pending", "list", "--repo", repo).stdout == ""
    assert repo_cli("status", repo, "--check", "30").returncode == 0
    r = keys_cli("import", "--repo", repo, exported)
    assert r.returncode == 1 and "matches no pending change" in r.stderr
    r = keys_cli("pending", "drop", "--repo", repo, "root")
    assert r.returncode == 1 and "nothing is pending for root" in r.stderr

    # a change overtaken by another publication of its role: import says to drop it
    layout = hello_chain.layout
    r = repo_cli("layout", "add", repo, layout, "--name", "hello", "--new")
    assert r.returncode == 3, r.stderr
    stale = site / "layouts.json"
    assert keys_cli("export", "--repo", repo, "--role", "layouts", "-o", stale).returncode == 0
    r = repo_cli("layout", "add", repo, layout, "--key", offline / "owner", "--name", "other",
                 "--new")  # the owner, at the server with the key, publishes another change
    assert r.returncode == 0, r.stderr
    assert keys_cli("sign", stale, "--key", offline / "owner").returncode == 0
    r = keys_cli("import", "--repo", repo, stale)
    assert r.returncode == 1
    assert "layouts changed since this version was prepared (now v2, this is v2): drop it " \
        "with 'custody-keys pending drop" in r.stderr, r.stderr
    assert repo_cli("status", repo, "--check", "30").returncode == 1
    assert keys_cli("pending", "drop", "--repo", repo, "layouts").returncode == 0
    assert repo_cli("status", repo, "--check", "30").returncode == 0


def test_signatures_by_keys_a_role_does_not_trust_are_named(site):
    repo, offline = site / "repo", site / "offline"
    write_key_pair(generate_key(), site / "ts-new", None)
    # the wrong offline key brought to a rotation: pending, and the sentence says so
    r = keys_cli("rotate", "--repo", repo, "--role", "timestamp", "--add", site / "ts-new",
                 "--sign-with", offline / "targets")
    assert r.returncode == 3, r.stderr
    targets, root = keyid(offline / "targets.pub"), keyid(offline / "root.pub")
    assert f"the key(s) you brought ({targets[:8]}) sign none of the roles" in r.stderr
    assert f"by the new root's keys ({root[:8]})" in r.stderr
    exported = site / "root.json"
    assert keys_cli("export", "--repo", repo, "--role", "root", "-o", exported).returncode == 0
    r = keys_cli("sign", exported, "--key", offline / "targets")
    assert r.returncode == 1
    assert f"key {targets[:8]} is not one that root v2 expects: it needs 1 of {root[:8]} " \
        "(new root) and 1 of" in r.stderr
    r = keys_cli("sign", exported, "--key", offline / "root")
    assert r.returncode == 0, r.stderr
    r = keys_cli("import", "--repo", repo, exported)
    assert r.returncode == 0 and "root published" in r.stdout, r.stderr


def test_revoke_by_prefix_and_layouts_of_new_packages(site, hello_chain, keydir):
    repo, offline = site / "repo", site / "offline"
    r = repo_cli("layout", "add", repo, hello_chain.layout, "--key", offline / "owner")
    assert r.returncode == 1
    assert "package root has no layout yet: pass --new" in r.stderr or \
        "has no layout yet: pass --new to start it" in r.stderr, r.stderr
    r = repo_cli("layout", "add", repo, hello_chain.layout, "--key", offline / "owner",
                 "--name", "hello", "--new")
    assert r.returncode == 0, r.stderr
    r = repo_cli("layout", "add", repo, hello_chain.layout, "--key", offline / "owner",
                 "--name", "hello", "--new")  # the same command again: nothing to do
    assert r.returncode == 0 and r.stdout.startswith("kept in-toto/layouts/hello.1.layout")
    other = site / "other.layout"
    other.write_bytes(hello_chain.layout.read_bytes() + b"\n")  # another file
    r = repo_cli("layout", "add", repo, other, "--key", offline / "owner", "--name", "hello",
                 "--new")
    assert r.returncode == 1 and "already has 1 layout(s)" in r.stderr, r.stderr
    # a layout published for a new package by mistake is withdrawn
    typo = site / "hello-v2.layout"
    shutil.copy(hello_chain.layout, typo)
    r = repo_cli("layout", "add", repo, typo, "--key", offline / "owner")
    assert r.returncode == 1 and "package hello-v2 has no layout yet" in r.stderr
    assert "(hello)" in r.stderr  # the packages that exist
    r = repo_cli("layout", "add", repo, typo, "--key", offline / "owner", "--new")
    assert r.returncode == 0 and "in-toto/layouts/hello-v2.1.layout" in r.stdout, r.stderr
    r = repo_cli("layout", "remove", repo, "hello-v2", "--key", offline / "owner")
    assert r.returncode == 0 and "removed in-toto/layouts/hello-v2.1.layout" in r.stdout
    publish(repo, hello_chain, "1.0.0")
    r = repo_cli("layout", "remove", repo, "hello", "--key", offline / "owner")
    assert r.returncode == 1 and "has published versions (1.0.0)" in r.stderr

    alice = keyid(keydir / "alice.pub")
    r = keys_cli("revoke", "--repo", repo, alice[:8])
    assert r.returncode == 1
    assert f"key {alice[:8]} is an in-toto functionary key (in in-toto/layouts/hello.1.layout)" \
        in r.stderr
    r = keys_cli("revoke", "--repo", repo, "")
    assert r.returncode == 1 and "is ambiguous" in r.stderr


def test_a_change_published_before_its_clean_up_is_not_left_pending(site):
    """A kill between the ceremony's commit and the removal of its pending change leaves
    the change on disk, already published: it is not reported as pending and the next
    transaction removes it (the state is reproduced by putting the folder back)."""
    repo, offline = site / "repo", site / "offline"
    write_key_pair(generate_key(), site / "ts-new", None)
    r = keys_cli("rotate", "--repo", repo, "--role", "timestamp", "--add", site / "ts-new")
    assert r.returncode == 3, r.stderr
    saved = site / "saved-pending"
    shutil.copytree(repo / "private/pending", saved)
    r = ceremony(repo, "root", offline / "root", site)
    assert r.returncode == 0, r.stderr
    shutil.rmtree(repo / "private/pending")
    shutil.copytree(saved, repo / "private/pending")  # as the kill would have left it
    (repo / "private/pending/root/root.json").write_bytes(  # with its signature, as imported
        (repo / "public/metadata/2.root.json").read_bytes())
    assert keys_cli("pending", "list", "--repo", repo).stdout == ""
    assert repo_cli("status", repo, "--check", "30").returncode == 0
    assert repo_cli("bump", repo).returncode == 0
    assert not (repo / "private/pending/root").exists()


def test_sigstore_root_set_with_the_owner_key_offline(site):
    """The Sigstore trusted root travels in the pending change as the layout file does."""
    repo, offline = site / "repo", site / "offline"
    trusted_root = Path(__file__).resolve().parent.parent / "data/sigstore/" \
        "production.trusted_root.json"
    r = repo_cli("sigstore-root", "set", repo, trusted_root, "--key", offline / "owner.pub")
    assert r.returncode == 3, r.stderr
    r = keys_cli("pending", "show", "--repo", repo, "layouts")
    assert "file in-toto/layouts/sigstore.trusted_root.json" in r.stdout, r.stdout
    r = ceremony(repo, "layouts", offline / "owner", site)
    assert r.returncode == 0 and "layouts published" in r.stdout, r.stderr
    published = list((repo / "public/targets").rglob("*.trusted_root.json"))
    assert len(published) == 1 and published[0].read_bytes() == trusted_root.read_bytes()


def test_ceremonies_killed_at_random_points_leave_a_whole_change_or_none(site, hello_chain):
    """SIGKILL while a change is saved as pending, and while its import commits: each time
    the change is whole and pending, or published whole; a retry finishes it."""
    import random
    import signal
    import time

    repo, offline = site / "repo", site / "offline"
    rng = random.Random(22)
    layout_files = lambda: list((repo / "public/targets").rglob("*.hello.1.layout"))  # noqa: E731
    started = time.monotonic()  # how long a whole run takes here: kills land inside it
    assert repo_cli("layout", "add", repo, hello_chain.layout, "--name", "hello",
                    "--new").returncode == 3
    span = (time.monotonic() - started) * 2
    assert keys_cli("pending", "drop", "--repo", repo, "layouts").returncode == 0
    outcomes = {"before": 0, "saved": 0}
    for _ in range(12):  # killed while saving the pending change
        proc = subprocess.Popen([str(BIN / "custody-repo"), "layout", "add", str(repo),
                                 str(hello_chain.layout), "--name", "hello", "--new"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.02, span))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        listed = keys_cli("pending", "list", "--repo", repo)
        assert listed.returncode == 0, listed.stderr  # never an unreadable change
        assert not layout_files()
        outcomes["saved" if listed.stdout else "before"] += 1
        if listed.stdout:
            assert listed.stdout.startswith("layouts v2: signatures 0/1"), listed.stdout
            assert keys_cli("pending", "drop", "--repo", repo, "layouts").returncode == 0
    assert outcomes["before"] and outcomes["saved"], outcomes  # both sides of the save
    r = repo_cli("layout", "add", repo, hello_chain.layout, "--name", "hello", "--new")
    assert r.returncode == 3, r.stderr
    exported = site / "layouts.json"
    assert keys_cli("export", "--repo", repo, "--role", "layouts", "-o", exported).returncode == 0
    assert keys_cli("sign", exported, "--key", offline / "owner").returncode == 0
    published = False
    for _ in range(8):  # killed while the import commits
        proc = subprocess.Popen([str(BIN / "custody-keys"), "import", "--repo", str(repo),
                                 str(exported)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.02, span))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        listed = keys_cli("pending", "list", "--repo", repo)
        assert listed.returncode == 0, listed.stderr
        published = listed.stdout == ""
        if published:
            break
    if not published:
        r = keys_cli("import", "--repo", repo, exported)
        assert r.returncode == 0 and "layouts published" in r.stdout, r.stderr
    assert len(layout_files()) == 1
    assert repo_cli("bump", repo).returncode == 0  # removes a change a kill left behind
    assert not list((repo / "private/pending").iterdir())  # the killed saves' folders too
    r = repo_cli("status", repo, "--check", "30")
    assert r.returncode == 0, r.stderr


def test_owner_key_rotated_offline_through_one_change_of_two_roles(site, hello_chain):
    """docs/keys.md's owner-key rotation with every key offline: targets (the new
    delegation) and layouts (re-signed by the new owner key) wait in one change, each
    signed where its key is; then the layout, re-signed by the new owner, installs."""
    repo, offline = site / "repo", site / "offline"
    r = repo_cli("layout", "add", repo, hello_chain.layout, "--key", offline / "owner",
                 "--name", "hello", "--new")
    assert r.returncode == 0, r.stderr
    publish(repo, hello_chain, "1.0.0")
    write_key_pair(generate_key(), offline / "owner-new", None)
    old = keyid(offline / "owner.pub")
    r = keys_cli("rotate", "--repo", repo, "--role", "layouts", "--add",
                 offline / "owner-new.pub", "--remove", old[:8])
    assert r.returncode == 3, r.stderr
    assert "targets v2 has signatures 0/1" in r.stderr and "layouts v3 has signatures 0/1" \
        in r.stderr, r.stderr
    r = keys_cli("pending", "list", "--repo", repo)
    assert r.stdout.splitlines()[0].startswith("targets v2") and \
        r.stdout.splitlines()[1].startswith("layouts v3"), r.stdout
    r = ceremony(repo, "targets", offline / "targets", site)
    assert r.returncode == 3 and "layouts v3 has signatures 0/1" in r.stderr, r.stderr
    exported = site / "layouts.json"
    assert keys_cli("export", "--repo", repo, "--role", "layouts", "-o", exported).returncode == 0
    r = keys_cli("sign", exported, "--key", offline / "owner")  # the old key: refused
    assert r.returncode == 1 and keyid(offline / "owner-new.pub")[:8] in r.stderr, r.stderr
    r = ceremony(repo, "layouts", offline / "owner-new", site)
    assert r.returncode == 0 and "layouts published" in r.stdout, r.stderr
    assert signed_by(repo, "layouts") == {keyid(offline / "owner-new.pub")}

    relayout = site / "hello.layout"  # the owners re-sign the current layout, offline
    r = run(BIN / "custody-intoto", "sign", "-f", hello_chain.layout, "-k",
            offline / "owner-new", "-o", relayout)
    assert r.returncode == 0, r.stderr
    r = repo_cli("layout", "add", repo, relayout, "--key", offline / "owner-new.pub",
                 "--name", "hello")
    assert r.returncode == 3, r.stderr
    r = ceremony(repo, "layouts", offline / "owner-new", site)
    assert r.returncode == 0, r.stderr
    with running_server(repo) as url:
        r = custody(client(url, repo, site / "home"), "install", "hello")
    assert r.returncode == 0 and "installed hello 1.0.0" in r.stdout, r.stderr
    no_offline_key_on_the_server(repo, offline)


def test_targets_key_rotated_offline_through_one_change_of_two_roles(site, hello_chain):
    """root (trusting the new targets key) and targets (signed by it) wait in one change."""
    repo, offline = site / "repo", site / "offline"
    assert repo_cli("layout", "add", repo, hello_chain.layout, "--key", offline / "owner",
                    "--name", "hello", "--new").returncode == 0
    write_key_pair(generate_key(), offline / "targets-new", None)
    r = keys_cli("rotate", "--repo", repo, "--role", "targets", "--add",
                 offline / "targets-new.pub", "--remove", keyid(offline / "targets.pub")[:8])
    assert r.returncode == 3, r.stderr
    assert "root v2 has signatures 0/1" in r.stderr and "targets v2 has signatures 0/1" \
        in r.stderr, r.stderr
    r = ceremony(repo, "targets", offline / "targets-new", site)  # any order
    assert r.returncode == 3 and "root v2 has signatures 0/1" in r.stderr, r.stderr
    r = ceremony(repo, "root", offline / "root", site)
    assert r.returncode == 0 and "root published" in r.stdout, r.stderr
    assert signed_by(repo, "targets") == {keyid(offline / "targets-new.pub")}
    publish(repo, hello_chain, "1.0.0")
    with running_server(repo) as url:
        r = custody(client(url, repo, site / "home"), "install", "hello")
    assert r.returncode == 0 and "installed hello 1.0.0" in r.stdout, r.stderr
