"""custody-repo backup and restore (issue 25): a new machine goes on where the old one stopped.

The restored repository publishes the next release, clients (which trusted
the old machine) install it, and no metadata version the old machine signed
is ever signed again with other contents.
"""

from __future__ import annotations

import json
import subprocess
import tarfile

import pytest

from custody.repository.reports import Report, ReportStore
from custody.repository.storage import RepoPaths
from custody.repository.tokens import check_token, create_token
from tests.helpers import BIN, Served, custody, running_server

pytestmark = pytest.mark.slow


def repo_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "custody-repo"), *args], capture_output=True, text=True,
                          timeout=120, check=False)


def test_a_restored_repository_goes_on_publishing_and_clients_follow(served, tmp_path):
    served.publish("1.0.0")
    home = tmp_path / "home"
    assert custody(home, "init", "--url", served.url, "--root", str(served.root),
                   "--inspections", "run").returncode == 0
    assert custody(home, "install", "hello").returncode == 0
    paths = RepoPaths(served.repo_dir)
    _, token = create_token(paths, "ci")
    store = ReportStore.open(paths)
    store.add([Report("hello", None, "1.0.0", "installed", 0, "", f"h{i}") for i in range(3)])
    store.close()
    archive = tmp_path / "backups/repo.tar.gz"
    archive.parent.mkdir()
    r = repo_cli("backup", str(served.repo_dir), str(archive))
    assert r.returncode == 0, r.stderr
    assert "3 report(s)" in r.stdout and archive.is_file()
    assert [p.name for p in archive.parent.iterdir()] == ["repo.tar.gz"]  # nothing partial
    before = {p.name: p.read_bytes() for p in paths.metadata.iterdir()}

    restored = tmp_path / "new-machine/repo"
    r = repo_cli("restore", str(archive), str(restored))
    assert r.returncode == 0, r.stderr
    new = RepoPaths(restored)
    assert check_token(new, token) == "ci"
    store = ReportStore.open(new)
    assert store.count() == 3
    store.close()
    with running_server(restored) as url:
        moved = Served(restored, url, served.keydir, tmp_path / "new-work")
        (tmp_path / "new-work").mkdir()
        moved.publish("2.0.0")
        config = json.loads((home / "config.json").read_text())
        config["urls"] = [url]  # the hosts follow the repository's new address
        (home / "config.json").write_text(json.dumps(config))
        r = custody(home, "update")
        assert r.returncode == 0, r.stderr
    listed = json.loads(custody(home, "list", "--json").stdout)
    assert listed["hello"]["current"] == "2.0.0"
    after = {p.name: p.read_bytes() for p in new.metadata.iterdir()}
    for name, data in before.items():  # nothing signed twice with other contents
        if name != "timestamp.json":
            assert after[name] == data, name
    assert json.loads(after["timestamp.json"])["signed"]["version"] > \
        json.loads(before["timestamp.json"])["signed"]["version"]


def test_a_changed_archive_or_a_used_directory_is_refused(served, tmp_path):
    served.publish("1.0.0")
    archive = tmp_path / "repo.tar.gz"
    assert repo_cli("backup", str(served.repo_dir), str(archive)).returncode == 0
    used = tmp_path / "used"
    used.mkdir()
    (used / "something").write_text("x")
    r = repo_cli("restore", str(archive), str(used))
    assert r.returncode == 1 and "is not empty" in r.stderr
    # one byte of the online key changed inside the archive
    tampered = tmp_path / "tampered.tar.gz"
    with tarfile.open(archive) as src, tarfile.open(tampered, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None
            if member.name == "private/config.json":
                data = data.replace(b'"bins": 4', b'"bins": 8')
                member.size = len(data)
            dst.addfile(member, None if data is None else __import__("io").BytesIO(data))
    target = tmp_path / "restored"
    r = repo_cli("restore", str(tampered), str(target))
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip() == (f"custody-repo: {tampered} does not match its manifest: "
                                "private/config.json was changed")
    assert not target.exists() and not list(tmp_path.glob(".restored*"))
    r = repo_cli("restore", str(served.root), str(target))  # not an archive at all
    assert r.returncode == 1 and "is not a readable custody backup" in r.stderr


def test_the_archive_is_private_and_leaves_the_offline_keys_out(served, tmp_path):
    """Readable by its owner only whatever the umask (it holds the online key); init's
    offline-keys/ is not in it; a missing directory for it is one sentence, not a crash."""
    import os
    import stat
    import tarfile

    offline = served.repo_dir / "offline-keys"
    offline.mkdir(exist_ok=True)
    (offline / "root").write_text("-----BEGIN PRIVATE KEY-----\n")
    archive = tmp_path / "repo.tar.gz"
    old = os.umask(0o022)
    try:
        r = repo_cli("backup", served.repo_dir, archive)
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert not [n for n in names if n.startswith("offline-keys")]
    assert "private/config.json" in names
    r = repo_cli("backup", served.repo_dir, tmp_path / "missing" / "repo.tar.gz")
    assert r.returncode == 1 and "is not a directory: make it first" in r.stderr, r.stderr
    assert "internal error" not in r.stderr
