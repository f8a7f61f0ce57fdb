"""Day one of an operator: offline keys stay offline at init; init is all or nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time

import pytest
from tuf.api.metadata import Metadata

from custody.keys_tooling.keys import generate_key, load_public_key, load_signer, write_key_pair
from tests.helpers import BIN, custody, running_server


def cli(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120,
                          check=False, env={**os.environ, **(env or {})})


def repo_cli(*args: object, **kw) -> subprocess.CompletedProcess[str]:
    return cli(BIN / "custody-repo", *args, **kw)


def keys_cli(*args: object) -> subprocess.CompletedProcess[str]:
    return cli(BIN / "custody-keys", *args)


@pytest.mark.slow
def test_offline_keys_at_init_then_the_ceremony_then_a_client_installs(
        tmp_path, keydir, hello_chain):
    offline = tmp_path / "offline-machine"  # the private keys never reach the server's disk
    offline.mkdir()
    for name in ("root", "targets", "owner"):
        for suffix in ("", ".pub"):
            (offline / f"{name}{suffix}").write_bytes((keydir / f"{name}{suffix}").read_bytes())
    server_side = tmp_path / "server"
    server_side.mkdir()
    for name in ("root", "targets", "owner"):
        (server_side / f"{name}.pub").write_bytes((offline / f"{name}.pub").read_bytes())
    repo = tmp_path / "repo"
    r = repo_cli("init", repo, "--bins", "16", "--root-key", server_side / "root.pub",
                 "--targets-key", server_side / "targets.pub", "--layout-key",
                 server_side / "owner.pub")
    assert r.returncode == 3, r.stderr
    assert "not yet published: layouts v1 has 0/1 signatures; root v1 has 0/1 signatures; " \
        "targets v1 has 0/1 signatures" in r.stderr
    assert "custody-keys export --repo" in r.stderr
    assert not list((repo / "public/metadata").iterdir())  # clients have nothing to trust yet
    assert not (repo / "offline-keys").exists()
    r = repo_cli("publish", repo, hello_chain.verify_dir / "hello.tar.gz", "--name", "hello",
                 "--version", "1.0.0", "--layout", hello_chain.layout, "--links",
                 hello_chain.links)
    assert r.returncode == 1 and "is not published yet" in r.stderr
    r = repo_cli("status", repo, "--check", "30")
    assert r.returncode == 1 and "first signing ceremony is pending" in r.stderr

    for role, key in (("root", "root"), ("targets", "targets"), ("layouts", "owner")):
        exported = tmp_path / f"{role}.json"
        assert keys_cli("export", "--repo", repo, "--role", role, "-o", exported).returncode == 0
        r = keys_cli("sign", exported, "--key", offline / key)  # on the offline machine
        assert r.returncode == 0, r.stderr
        r = keys_cli("import", "--repo", repo, exported)
        if role != "layouts":
            assert r.returncode == 3 and "still unpublished" in r.stderr
        else:
            assert r.returncode == 0, r.stderr
            assert "the repository is published" in r.stdout
    assert (repo / "public/metadata/1.root.json").exists()
    r = repo_cli("status", repo, "--check", "30")
    assert r.returncode == 0, r.stderr

    r = repo_cli("layout", "add", repo, hello_chain.layout, "--key", offline / "owner",
                 "--name", "hello", "--new")
    assert r.returncode == 0, r.stderr
    r = repo_cli("publish", repo, hello_chain.verify_dir / "hello.tar.gz", "--name", "hello",
                 "--version", "1.0.0", "--layout", hello_chain.layout, "--links",
                 hello_chain.links)
    assert r.returncode == 0, r.stderr
    with running_server(repo) as url:
        home = tmp_path / "home"
        r = custody(home, "init", "--url", url, "--root", str(repo / "public/metadata/1.root.json"),
                    "--inspections", "run")
        assert r.returncode == 0, r.stderr
        r = custody(home, "install", "hello")
        assert r.returncode == 0, r.stderr
        assert (home / "packages/hello/current/src/hello.py").exists()


def test_a_signature_by_an_untrusted_key_does_not_count(tmp_path, keydir):
    repo = tmp_path / "repo"
    r = repo_cli("init", repo, "--root-key", keydir / "root.pub", "--targets-key",
                 keydir / "targets", "--layout-key", keydir / "owner")
    assert r.returncode == 3
    assert "root v1 has 0/1 signatures" in r.stderr and "targets" not in r.stderr.split(
        "not yet published:")[1].split(".")[0]
    r = keys_cli("pending", "list", "--repo", repo)
    assert r.returncode == 0 and "first version: root v1 has 0/1 signatures" in r.stdout
    r = keys_cli("pending", "show", "--repo", repo, "root")
    assert r.returncode == 1 and "its first version waits for signatures" in r.stderr
    exported = tmp_path / "root.json"
    assert keys_cli("export", "--repo", repo, "--role", "root", "-o", exported).returncode == 0
    root = load_public_key(keydir / "root.pub").keyid
    mallory = load_public_key(keydir / "mallory.pub").keyid
    before = exported.read_bytes()
    r = keys_cli("sign", exported, "--key", keydir / "mallory")  # refused, naming the key
    assert r.returncode == 1
    assert f"key {mallory[:8]} is not one that root v1 expects: it needs 1 of {root[:8]}" \
        in r.stderr
    assert exported.read_bytes() == before  # nothing was signed
    # another TUF tool signs anyway: the import ignores the signature, and says so
    md = Metadata.from_bytes(before)
    md.sign(load_signer(str(keydir / "mallory")))
    exported.write_bytes(md.to_bytes())
    r = keys_cli("import", "--repo", repo, exported)
    assert r.returncode == 3 and "root v1 has 0/1 signatures" in r.stderr
    assert f"ignored the signature by key {mallory[:8]}: root v1 needs 1 of {root[:8]}" \
        in r.stderr
    assert not (repo / "public/metadata/1.root.json").exists()


def test_init_is_all_or_nothing(tmp_path, keydir):
    repo = tmp_path / "repo"
    r = repo_cli("init", repo, "--layout-key", tmp_path / "missing.pub", "--no-password")
    assert r.returncode != 0
    assert not repo.exists()
    assert not list(tmp_path.glob(".repo.init-*"))  # no half-made repository beside it
    # an encrypted root key (its own password) and plain keys, in one command
    write_key_pair(generate_key(), tmp_path / "root", b"root-secret")
    r = repo_cli("init", repo, "--root-key", tmp_path / "root", "--targets-key",
                 keydir / "targets", "--layout-key", keydir / "owner",
                 env={"CUSTODY_KEY_PASSWORD_ROOT": "root-secret", "CUSTODY_KEY_PASSWORD": ""})
    assert r.returncode == 0, r.stderr
    root = load_public_key(tmp_path / "root.pub").keyid
    assert root[:8] in repo_cli("status", repo).stdout
    r = repo_cli("init", repo, "--no-password")
    assert r.returncode == 1 and "already holds a repository" in r.stderr


def test_init_killed_at_random_points_leaves_nothing_or_everything(tmp_path):
    rng = random.Random(5)
    interrupted = 0
    for trial in range(10):
        repo = tmp_path / f"repo{trial}"
        proc = subprocess.Popen([str(BIN / "custody-repo"), "init", str(repo), "--bins", "64",
                                 "--no-password"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.02, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if repo.exists():  # it finished before the kill: complete
            assert (repo / "public/metadata/timestamp.json").exists()
            continue
        interrupted += 1
        r = repo_cli("init", repo, "--bins", "64", "--no-password")  # a re-run starts afresh
        assert r.returncode == 0, r.stderr
        assert (repo / "public/metadata/timestamp.json").exists()
    assert interrupted >= 3
