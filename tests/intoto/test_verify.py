"""Verification features beyond the reference: thresholds, policies, binding, memory links."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from custody.intoto import errors
from custody.intoto.metadata import Metablock, load_metadata
from custody.intoto.models import Inspection, Layout, Link
from custody.intoto.verify import (
    DirectoryLinks,
    InspectionPolicy,
    MemoryLinks,
    Verifier,
    bind_product,
    substitute_parameters,
)
from custody.keys_tooling.keys import load_public_key, load_signer
from tests.intoto.chain import IMPLS, hello_layout, make_chain

CUSTODY = IMPLS["custody"]


@pytest.fixture
def chain(keydir, tmp_path):
    return make_chain(CUSTODY, CUSTODY, keydir, tmp_path)


def owners(keydir, *names):
    return [load_public_key(keydir / f"{n}.pub") for n in names]


def _two_owner_layout(keydir, chain, signers):
    metadata = Metablock.new(Layout.from_dict(hello_layout(keydir)))
    for name in signers:
        metadata.sign(load_signer(str(keydir / name)))
    metadata.dump(chain.layout)
    return load_metadata(chain.layout)


def test_layout_threshold_k_of_n(keydir, chain):
    layout = _two_owner_layout(keydir, chain, ["owner2"])
    keys = owners(keydir, "owner", "owner2")
    verifier = Verifier(workdir=chain.verify_dir)
    verifier.verify(layout, keys, DirectoryLinks(chain.links), threshold=1)
    with pytest.raises(errors.LayoutSignatureError, match=r"1 valid signature.*2 required"):
        verifier.verify(layout, keys, DirectoryLinks(chain.links))
    with pytest.raises(errors.LayoutSignatureError, match="impossible"):
        verifier.verify(layout, keys, DirectoryLinks(chain.links), threshold=3)


def test_layout_signature_threshold_counts_distinct_keys(keydir, chain):
    layout = _two_owner_layout(keydir, chain, ["owner", "owner"])
    with pytest.raises(errors.LayoutSignatureError):
        Verifier(workdir=chain.verify_dir).verify(
            layout, owners(keydir, "owner", "owner2"), DirectoryLinks(chain.links), threshold=2)


def test_expiry_uses_the_verifiers_clock(keydir, chain):
    late = Verifier(workdir=chain.verify_dir, now=lambda: datetime(2036, 1, 1, tzinfo=UTC))
    with pytest.raises(errors.LayoutExpiredError, match="2035-01-01"):
        late.verify(load_metadata(chain.layout), owners(keydir, "owner"),
                    DirectoryLinks(chain.links))


def test_inspection_policies(keydir, chain):
    layout, keys = load_metadata(chain.layout), owners(keydir, "owner")
    with pytest.raises(errors.InspectionError, match=r"untar.*does not allow"):
        Verifier(workdir=chain.verify_dir, inspections=InspectionPolicy.REFUSE).verify(
            layout, keys, DirectoryLinks(chain.links))
    skipping = Verifier(workdir=chain.verify_dir, inspections=InspectionPolicy.SKIP)
    skipping.verify(layout, keys, DirectoryLinks(chain.links))
    assert any("skipped" in w for w in skipping.warnings)
    assert not (chain.verify_dir / "src").exists()  # nothing was executed


def test_inspection_failure_and_timeout(keydir, chain, tmp_path):
    data = hello_layout(keydir)
    data["inspect"][0]["run"] = ["sh", "-c", "exit 4"]
    CUSTODY.sign_layout(data, [keydir / "owner"], chain.layout, False)
    with pytest.raises(errors.InspectionError, match="exited with 4"):
        Verifier(workdir=chain.verify_dir).verify(
            load_metadata(chain.layout), owners(keydir, "owner"), DirectoryLinks(chain.links))
    data["inspect"][0]["run"] = ["sleep", "5"]
    CUSTODY.sign_layout(data, [keydir / "owner"], chain.layout, False)
    with pytest.raises(errors.InspectionError, match="did not finish"):
        Verifier(workdir=chain.verify_dir, inspection_timeout=0.2).verify(
            load_metadata(chain.layout), owners(keydir, "owner"), DirectoryLinks(chain.links))


def test_links_from_memory(keydir, chain):
    files = {p.name: p.read_bytes() for p in chain.links.iterdir()}
    summary = Verifier(workdir=chain.verify_dir, inspections=InspectionPolicy.SKIP).verify(
        load_metadata(chain.layout), owners(keydir, "owner"), MemoryLinks(files))
    assert "hello.tar.gz" in summary.products


def test_bind_product(keydir, chain):
    summary = Verifier(workdir=chain.verify_dir).verify(
        load_metadata(chain.layout), owners(keydir, "owner"), DirectoryLinks(chain.links))
    delivered = chain.verify_dir / "hello.tar.gz"
    assert bind_product(summary, delivered) == summary.products["hello.tar.gz"]["sha256"]
    with pytest.raises(errors.ProductBindingError, match="not a product"):
        bind_product(summary, delivered, name="other.tar.gz")
    delivered.write_bytes(b"evil")
    with pytest.raises(errors.ProductBindingError, match="sha256"):
        bind_product(summary, delivered)


def test_parameter_substitution():
    layout = Layout.from_dict(Layout(steps=[], inspect=[]).to_dict())
    layout.inspect.append(
        Inspection(
            "check", ["test", "-f", "{name}-{version}.tar.gz"],
            [["MATCH", "{name}-{version}.tar.gz", "WITH", "PRODUCTS", "FROM", "package"]]))
    filled = substitute_parameters(layout, {"name": "hello", "version": "1.0"})
    assert filled.inspect[0].run[-1] == "hello-1.0.tar.gz"
    assert filled.inspect[0].expected_materials[0][1] == "hello-1.0.tar.gz"
    assert layout.inspect[0].run[-1] == "{name}-{version}.tar.gz"  # original untouched
    with pytest.raises(errors.FormatError, match="version"):
        substitute_parameters(layout, {"name": "hello"})


def test_command_misalignment_is_only_a_warning(keydir, chain):
    data = hello_layout(keydir)
    data["steps"][2]["expected_command"] = ["make", "package"]
    CUSTODY.sign_layout(data, [keydir / "owner"], chain.layout, False)
    verifier = Verifier(workdir=chain.verify_dir)
    verifier.verify(load_metadata(chain.layout), owners(keydir, "owner"),
                    DirectoryLinks(chain.links))
    assert any("make" in w for w in verifier.warnings)


def test_unsigned_garbage_link_is_refused(keydir, chain):
    victim = next(Path(chain.links).glob("package.*.link"))
    victim.write_text('{"signed": {"_type": "link"}, "signatures": []}')
    with pytest.raises(errors.ThresholdError, match=r"package.*not validly signed"):
        Verifier(workdir=chain.verify_dir).verify(
            load_metadata(chain.layout), owners(keydir, "owner"), DirectoryLinks(chain.links))


def test_summary_of_empty_layout():
    from custody.intoto.verify import summary_link

    assert summary_link(Layout(), {}, "x") == Link(name="x")
