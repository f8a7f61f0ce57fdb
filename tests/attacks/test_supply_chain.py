"""ATTACKS.md, supply chain (in-toto): each compromise of the pipeline is refused.

The attacker gets the bad release into the repository the only way left once
the server checks releases: with the server's online keys (`force_publish`).
Where the server's own check applies, it is shown refusing too.
"""

from __future__ import annotations

import shutil

import pytest

from custody.intoto.models import link_filename
from custody.keys_tooling.keys import load_public_key
from custody.repository.errors import SupplyChainError
from custody.repository.releases import Release, links_from_dir, publish_release
from custody.repository.repo import CustodyRepository
from demo.attacker import force_publish
from tests.intoto.chain import IMPLS, hello_layout, keyid, make_chain

pytestmark = pytest.mark.slow
CUSTODY = IMPLS["custody"]


def bad_chain(scene, name: str, **options):
    return make_chain(CUSTODY, CUSTODY, scene.served.keydir, scene.served.work / name,
                      message=f"hello {name}", **options)


def attack(scene, chain, version: str = "6.6.6", server_words: str | None = None) -> None:
    """Try the honest publish path (refused), then force the release in with online keys."""
    release = Release("hello", version, chain.verify_dir / "hello.tar.gz",
                      chain.layout.read_bytes(), links_from_dir(chain.links))
    if server_words is not None:
        repo = CustodyRepository(scene.repo_dir)
        with pytest.raises(SupplyChainError, match=server_words), repo.transaction():
            publish_release(repo, release)
    force_publish(scene.repo_dir, "hello", version, chain.verify_dir / "hello.tar.gz",
                  links_from_dir(chain.links))


def test_artifact_altered_between_steps(scene):
    chain = bad_chain(scene, "altered", tamper_between=True)
    attack(scene, chain, server_words="src/hello.py")
    reason = scene.refused("update", words="materials rule 'DISALLOW *' of 'step build'")
    assert "src/hello.py" in reason


def test_step_signed_by_a_machine_without_the_key(scene):
    chain = bad_chain(scene, "nokey")
    keydir = scene.served.keydir
    # mallory re-performs the build on her machine and files the link under rb2's name
    CUSTODY.run("build", keydir / "mallory", ["src"], ["dist"],
                ["cp", "-r", "src", "dist"], chain.root / "rb2", False)
    forged = next((chain.root / "rb2").glob(f"build.{keyid(keydir, 'mallory')[:8]}.link"))
    shutil.copy(forged, chain.links / link_filename("build", keyid(keydir, "rb2")))
    attack(scene, chain, server_words="not validly signed")
    scene.refused("update", words="not validly signed by authorized functionary")


def test_skipped_step(scene):
    chain = bad_chain(scene, "skipped")
    (chain.links / link_filename("package", keyid(scene.served.keydir, "bob"))).unlink()
    attack(scene, chain, server_words="package")
    scene.refused("update", words="step 'package' requires 1 link(s) by its functionaries, "
                                  "found 0")


def test_unexpected_artifact_added(scene):
    chain = bad_chain(scene, "extra", extra_artifact=True)
    attack(scene, chain, server_words="dist/extra.sh")
    reason = scene.refused("update", words="products rule 'DISALLOW *' of 'step build'")
    assert "dist/extra.sh" in reason


def test_code_injected_after_the_tag_step(scene):
    chain = bad_chain(scene, "injected", inject_after_tag=True)
    attack(scene, chain, server_words="src/inject.py")
    reason = scene.refused("update", words="of 'step build'")
    assert "src/inject.py" in reason


def test_one_rebuilder_of_k_publishes_a_trojan(scene):
    chain = bad_chain(scene, "trojan", trojan_rb2=True)
    attack(scene, chain, server_words="record different artifacts")
    scene.refused("update", words="record different artifacts")


def test_one_key_of_a_threshold_2_step_signs_alone(scene):
    chain = bad_chain(scene, "alone", trojan_rb2=True)
    (chain.links / link_filename("build", keyid(scene.served.keydir, "rb1"))).unlink()
    attack(scene, chain, server_words="build")
    scene.refused("update", words="step 'build' requires 2 link(s) by its functionaries, "
                                  "found 1")


def test_counterfeit_artifact_from_the_distribution(scene):
    """The genuine links, a different file: not a product of the final step."""
    genuine = scene.served.chain("hello 1.0.0")
    counterfeit = scene.served.work / "counterfeit" / "hello.tar.gz"
    counterfeit.parent.mkdir()
    counterfeit.write_bytes(b"\x1f\x8b counterfeit")
    force_publish(scene.repo_dir, "hello", "6.6.6", counterfeit, links_from_dir(genuine.links))
    scene.configure(inspections="skip")  # the product binding, not the inspection, refuses
    scene.refused("update", words="delivered file 'hello.tar.gz' has sha256")


def test_expired_layout(scene):
    """An owner-published layout that has since expired: releases under it are refused."""
    import time
    from datetime import UTC, datetime, timedelta

    from custody.intoto.metadata import Metablock
    from custody.intoto.models import Layout, format_expires
    from tests.helpers import add_hello_layout, signer

    keydir = scene.served.keydir
    chain = bad_chain(scene, "1.1.0")  # genuine, recorded before the clock starts
    expiry = datetime.now(UTC) + timedelta(seconds=8)
    layout = Metablock.new(Layout.from_dict(hello_layout(keydir, expires=format_expires(
        expiry))))
    layout.sign(signer(keydir, "owner"))
    path = scene.served.work / "short.layout"
    layout.dump(path)
    add_hello_layout(scene.repo_dir, keydir, path)
    repo = CustodyRepository(scene.repo_dir)
    with repo.transaction():  # published, and verified, while the layout was valid
        publish_release(repo, Release("hello", "1.1.0", chain.verify_dir / "hello.tar.gz",
                                      path.read_bytes(), links_from_dir(chain.links)))
    time.sleep(max(0.0, (expiry - datetime.now(UTC)).total_seconds()) + 1.5)
    scene.refused("update", words="layout expired on")


def test_revoked_developer_signs_after_revocation(scene):
    from custody.intoto.metadata import Metablock
    from custody.intoto.models import Layout
    from tests.helpers import add_hello_layout, signer

    keydir = scene.served.keydir
    layout = Metablock.new(Layout.from_dict(hello_layout(keydir, developer="bob")))
    layout.sign(signer(keydir, "owner"))
    path = scene.served.work / "without-alice.layout"
    layout.dump(path)
    add_hello_layout(scene.repo_dir, keydir, path)
    chain = bad_chain(scene, "by-alice")  # alice still signs the clone step
    force_publish(scene.repo_dir, "hello", "6.6.6", chain.verify_dir / "hello.tar.gz",
                  links_from_dir(chain.links))
    alice = load_public_key(keydir / "alice.pub").keyid[:8]
    scene.refused("update", words="step 'clone' requires 1 link(s) by its functionaries, "
                                  f"found 0; ignored the link(s) by key {alice}, which the "
                                  "layout does not name for step 'clone'")
