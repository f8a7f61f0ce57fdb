"""A new layout that would strand published releases says which, before it is published."""

from __future__ import annotations

import subprocess

from custody.intoto.metadata import Metablock
from custody.intoto.models import Layout
from custody.keys_tooling.keys import load_public_key
from custody.repository.maintenance import status
from custody.repository.repo import CustodyRepository
from tests.helpers import BIN, signer
from tests.intoto.chain import hello_layout


def test_layout_add_lists_what_it_strands_and_asks_for_yes(hello_repo, tmp_path, keydir):
    hello_repo.publish("0.9.0", channel=None)
    hello_repo.publish("1.0.0")
    layout = Metablock.new(Layout.from_dict(hello_layout(keydir, developer="bob")))
    layout.sign(signer(keydir, "owner"))
    path = tmp_path / "hello.layout"
    layout.dump(path)
    before = status(CustodyRepository(hello_repo.repo_dir))

    def add(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "custody-repo"), "layout", "add", str(hello_repo.repo_dir),
                               str(path), "--key", str(keydir / "owner"), *extra],
                              capture_output=True, text=True, timeout=120, check=False)

    r = add()
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    alice = load_public_key(keydir / "alice.pub").keyid[:8]
    assert lines[0].startswith("custody-repo: hello 1.0.0 (the stable channel's version) "
                               "would no longer install: step 'clone' requires 1 link(s)")
    assert f"ignored the link(s) by key {alice}" in lines[0]
    assert lines[1].startswith("custody-repo: hello 0.9.0 would no longer install")
    assert "not published: 1 channel version(s) of hello would become uninstallable" \
        in lines[2]
    assert status(CustodyRepository(hello_repo.repo_dir)) == before  # nothing published

    r = add("--yes")
    assert r.returncode == 0, r.stderr
    assert "published in-toto/layouts/hello.2.layout" in r.stdout
    assert "hello 1.0.0 (the stable channel's version) would no longer install" in r.stderr


def test_a_layout_that_keeps_every_release_is_published_quietly(hello_repo, tmp_path, keydir):
    hello_repo.publish("1.0.0")
    description = hello_layout(keydir)
    description["readme"] = "hello, second layout: the same steps and keys"
    layout = Metablock.new(Layout.from_dict(description))
    layout.sign(signer(keydir, "owner"))
    path = tmp_path / "hello.layout"
    layout.dump(path)
    r = subprocess.run([str(BIN / "custody-repo"), "layout", "add", str(hello_repo.repo_dir),
                        str(path), "--key", str(keydir / "owner"), "--name", "hello"],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "published in-toto/layouts/hello.2.layout" in r.stdout


def test_the_newest_layout_added_again_publishes_nothing(hello_repo, keydir):
    """A script run twice: its layout add (with --new, as its first run) succeeds, a no-op."""
    served = hello_repo
    before = status(CustodyRepository(served.repo_dir))
    for extra in ((), ("--new",)):
        r = subprocess.run([str(BIN / "custody-repo"), "layout", "add", str(served.repo_dir),
                            str(served.chain("hello 1.0.0").layout), "--key",
                            str(keydir / "owner"), "--name", "hello", *extra],
                           capture_output=True, text=True, timeout=120, check=False)
        assert r.returncode == 0 and r.stderr == "", r.stderr
        assert r.stdout == ("kept in-toto/layouts/hello.1.layout: hello's newest layout is "
                            "this file already; nothing published\n")
    assert status(CustodyRepository(served.repo_dir)) == before
