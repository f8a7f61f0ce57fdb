"""A keyless release, end to end: the owners name a CI workflow, custody installs its wheel.

The wheel and its Sigstore bundle are the real ones (tests/data/sigstore); the
layout, the repository and the Sigstore trusted root's delivery are custody's.
The client verifies offline: the served repository is its only network.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from custody.formats.sigstore import ROOT_PATH, SigstoreRootCustom
from custody.intoto.layout_toml import layout_from_toml
from custody.intoto.metadata import Metablock
from custody.keys_tooling.keys import load_public_key
from custody.repository.errors import SupplyChainError
from custody.repository.releases import Release, add_layout, publish_release, set_sigstore_root
from custody.repository.repo import CustodyRepository
from tests.helpers import BIN, custody, make_repo, running_server, signer

pytestmark = pytest.mark.slow
DATA = Path(__file__).resolve().parents[1] / "data"
WHEEL = DATA / "rfc8785-0.1.2-py3-none-any.whl"
BUNDLE = DATA / "sigstore/rfc8785-0.1.2-py3-none-any.whl.sigstore.json"
PRODUCTION_ROOT = DATA / "sigstore/production.trusted_root.json"
BUNDLE_NAME = f"release.{WHEEL.name}.sigstore.json"

TOML = """
expires_in_days = 30
readme = "rfc8785: released by its GitHub workflow, signed keyless"
[keys]
bob = "bob.pub"

[[steps]]
name = "build"
functionaries = ["bob"]
products = ["CREATE {artifact}", "DISALLOW *"]

[[steps]]
name = "release"
products = ["CREATE {artifact}", "DISALLOW *"]
[[steps.keyless]]
issuer = "https://token.actions.githubusercontent.com"
identity = "WORKFLOW"
"""
WORKFLOW = "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/*"


def layout(keydir: Path, work: Path, workflow: str = WORKFLOW) -> bytes:
    """Build and sign (owner key) the two-step layout: a key-signed build, a keyless release."""
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(keydir / "bob.pub", work / "bob.pub")
    (work / "layout.toml").write_text(TOML.replace("WORKFLOW", workflow))
    block = Metablock.new(layout_from_toml(work / "layout.toml", load_public_key))
    block.sign(signer(keydir, "owner"))
    return block.to_bytes()


def evidence(keydir: Path, work: Path) -> dict[str, bytes]:
    """bob's link for the build step (recorded here) and the real release bundle."""
    shutil.copy(WHEEL, work / WHEEL.name)
    links = work / "links"
    subprocess.run([str(BIN / "custody-intoto"), "run", "-n", "build", "--signing-key",
                    str(keydir / "bob"), "-p", WHEEL.name, "-d", str(links), "--no-command"],
                   cwd=work, check=True, capture_output=True)
    found = {p.name: p.read_bytes() for p in links.glob("*.link")}
    found[BUNDLE_NAME] = BUNDLE.read_bytes()
    return found


def owners(repo_dir: Path, keydir: Path) -> CustodyRepository:
    return CustodyRepository(repo_dir, {"layouts": [signer(keydir, "owner")]})


def owners_repository(tmp_path: Path, keydir: Path, workflow: str = WORKFLOW,
                      ) -> tuple[Path, bytes]:
    """A repository whose owners published the layout and the Sigstore trusted root."""
    repo_dir = tmp_path / "repo"
    make_repo(repo_dir, keydir, bins=4)
    layout_bytes = layout(keydir, tmp_path / "work", workflow)
    repo = owners(repo_dir, keydir)
    with repo.transaction():
        add_layout(repo, "rfc8785", layout_bytes)
        set_sigstore_root(repo, PRODUCTION_ROOT.read_bytes(),
                          datetime.now(UTC) + timedelta(days=30))
    return repo_dir, layout_bytes


@pytest.fixture
def keyless_repo(tmp_path, keydir):
    repo_dir, layout_bytes = owners_repository(tmp_path, keydir)
    repo = CustodyRepository(repo_dir)
    with repo.transaction():
        publish_release(repo, Release("rfc8785", "0.1.2", WHEEL, layout_bytes,
                                      evidence(keydir, tmp_path / "work")))
    return repo_dir


def client(tmp_path: Path, repo_dir: Path, url: str) -> Path:
    home = tmp_path / "home"
    r = custody(home, "init", "--url", url, "--root",
                str(repo_dir / "public/metadata/1.root.json"))
    assert r.returncode == 0, r.stderr
    return home


def refused(repo_dir: Path, tmp_path: Path, words: str) -> None:
    """``custody install rfc8785`` exits 1 saying ``words``, in one line, installing nothing."""
    with running_server(repo_dir) as url:
        home = client(tmp_path, repo_dir, url)
        r = custody(home, "install", "rfc8785")
    assert r.returncode == 1
    assert words in r.stderr
    assert r.stderr.strip().count("\n") == 0
    assert not (home / "packages/rfc8785").exists()


def test_custody_installs_the_wheel_its_release_workflow_signed(keyless_repo, tmp_path):
    with running_server(keyless_repo) as url:
        home = client(tmp_path, keyless_repo, url)
        r = custody(home, "install", "rfc8785")
        assert r.returncode == 0, r.stderr
        assert "installed rfc8785 0.1.2" in r.stdout
        installed = home / "packages/rfc8785/current" / WHEEL.name
        assert installed.read_bytes() == WHEEL.read_bytes()
        assert custody(home, "verify", "rfc8785").returncode == 0  # again, from the cache


def test_without_the_trusted_root_the_keyless_step_is_refused(keyless_repo, tmp_path, keydir):
    repo = owners(keyless_repo, keydir)
    with repo.transaction():
        repo.remove_target(ROOT_PATH)
        repo.publish_metadata()
    refused(keyless_repo, tmp_path, "publishes no Sigstore trusted root")


def test_an_expired_trusted_root_is_refused(keyless_repo, tmp_path, keydir):
    repo = owners(keyless_repo, keydir)
    past = SigstoreRootCustom(datetime.now(UTC) - timedelta(days=1)).to_custom()
    with repo.transaction():  # the owners' vouching ran out (set refuses a past date)
        repo.add_target(ROOT_PATH, PRODUCTION_ROOT.read_bytes(), custom=past)
        repo.publish_metadata()
    refused(keyless_repo, tmp_path, "the Sigstore trusted root expired on")


def test_a_layout_naming_another_workflow_refuses_the_release(tmp_path, keydir):
    other = "https://github.com/trailofbits/rfc8785.py/.github/workflows/nightly.yml@*"
    repo_dir, layout_bytes = owners_repository(tmp_path, keydir, other)
    repo = CustodyRepository(repo_dir)
    # the server's pre-publish check verifies the bundle as the client will
    with pytest.raises(SupplyChainError, match="is not one the layout names"), \
            repo.transaction():
        publish_release(repo, Release("rfc8785", "0.1.2", WHEEL, layout_bytes,
                                      evidence(keydir, tmp_path / "work")))


def test_publish_takes_bundles_with_attestation(tmp_path, keydir):
    repo_dir = tmp_path / "repo"
    make_repo(repo_dir, keydir, bins=4)
    work = tmp_path / "work"
    layout_file = work / "rfc8785.layout"
    (work / "links").mkdir(parents=True)
    layout_file.write_bytes(layout(keydir, work))
    repo = owners(repo_dir, keydir)
    with repo.transaction():
        add_layout(repo, "rfc8785", layout_file.read_bytes())
    r = subprocess.run([str(BIN / "custody-repo"), "sigstore-root", "set", str(repo_dir),
                        str(PRODUCTION_ROOT), "--key", str(keydir / "owner")],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert f"published {ROOT_PATH}, vouched for until" in r.stdout
    links = evidence(keydir, work)
    (work / "bundle").mkdir()
    shutil.copy(BUNDLE, work / "bundle" / BUNDLE_NAME)
    for name, data in links.items():
        if name.endswith(".link"):
            (work / "links" / name).write_bytes(data)
    r = subprocess.run([str(BIN / "custody-repo"), "publish", str(repo_dir), str(WHEEL),
                        "--name", "rfc8785", "--version", "0.1.2", "--layout", str(layout_file),
                        "--links", str(work / "links"), "--attestation",
                        str(work / "bundle" / BUNDLE_NAME)],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    published = CustodyRepository(repo_dir).find_target(f"packages/rfc8785/0.1.2/{WHEEL.name}")
    assert published is not None
    assert any(p.endswith(BUNDLE_NAME) for p in published.custom["in-toto"]["links"])


def test_a_trusted_root_listed_by_the_online_role_is_not_trusted(keyless_repo, tmp_path,
                                                                   keydir):
    """A compromised server lists its own Sigstore root in 'releases' (online keys)."""
    from tuf.api.metadata import TargetFile

    repo = owners(keyless_repo, keydir)
    with repo.transaction():
        repo.remove_target(ROOT_PATH)
        repo.publish_metadata()
    repo = CustodyRepository(keyless_repo)
    custom = SigstoreRootCustom(datetime.now(UTC) + timedelta(days=30)).to_custom()
    with repo.transaction():
        with repo.edit_targets("releases") as releases:
            releases.targets[ROOT_PATH] = TargetFile.from_data(
                ROOT_PATH, PRODUCTION_ROOT.read_bytes(), None)
            releases.targets[ROOT_PATH].unrecognized_fields["custom"] = custom
        repo.publish_metadata()
    refused(keyless_repo, tmp_path, "publishes no Sigstore trusted root")


def test_an_air_gapped_host_verifies_the_keyless_step(keyless_repo, tmp_path):
    """The exported stick carries the Sigstore trusted root; nothing else is reachable."""
    usb = tmp_path / "media/usb/repo"
    r = subprocess.run([str(BIN / "custody-repo"), "export", str(keyless_repo), str(usb),
                        "--package", "rfc8785"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    home = tmp_path / "home"
    assert custody(home, "init", "--url", usb.as_uri(), "--root",
                   str(usb / "metadata/1.root.json")).returncode == 0
    r = custody(home, "install", "rfc8785")
    assert r.returncode == 0 and "installed rfc8785 0.1.2" in r.stdout, r.stderr
