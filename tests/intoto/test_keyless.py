"""Keyless functionaries, verified offline with real Sigstore bundles (tests/data/sigstore).

Nothing here is a self-made Sigstore signature: the wheel's bundle is the one
its release workflow made in production Sigstore, the SLSA statement comes
from staging, the npm provenance from npm. Key-signed links beside them are
generated.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from custody.intoto.constraints import CertConstraint
from custody.intoto.errors import (
    FormatError,
    LinkNotFoundError,
    ProductBindingError,
    ThresholdError,
)
from custody.intoto.keyless import SigstoreTrust
from custody.intoto.metadata import Metablock, key_to_dict
from custody.intoto.models import Layout, Link, Step, link_filename
from custody.intoto.verify import DirectoryLinks, InspectionPolicy, Verifier, bind_product
from custody.keys_tooling.keys import generate_key, write_key_pair

DATA = Path(__file__).parent.parent / "data"
SIGSTORE = DATA / "sigstore"
WHEEL = DATA / "rfc8785-0.1.2-py3-none-any.whl"
WHEEL_BUNDLE = SIGSTORE / "rfc8785-0.1.2-py3-none-any.whl.sigstore.json"
GITHUB = "https://token.actions.githubusercontent.com"
RELEASE = "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/*"
BEACON = ("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
          ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main")
BIN = Path(sys.executable).parent


def production() -> SigstoreTrust:
    return SigstoreTrust((SIGSTORE / "production.trusted_root.json").read_bytes())


def keyless_layout(owner, identity: str = RELEASE, issuer: str = GITHUB, threshold: int = 1,
                   product: str = WHEEL.name, extra: list[Step] | None = None,
                   keys: dict | None = None, materials: list | None = None) -> Metablock:
    release = Step("release", [], threshold, materials or [],
                   [["CREATE", product], ["DISALLOW", "*"]],
                   cert_constraints=[CertConstraint(issuer, uris=(identity,))])
    layout = Layout(keys=keys or {}, expires="2035-01-01T00:00:00Z",
                    steps=[*(extra or []), release])
    block = Metablock.new(layout)
    block.sign(owner)
    return block


def bundle_dir(tmp_path: Path, *names: str, source: Path = WHEEL_BUNDLE) -> Path:
    links = tmp_path / "links"
    links.mkdir(exist_ok=True)
    for name in names or (f"release.{WHEEL.name}.sigstore.json",):
        shutil.copy(source, links / name)
    return links


def verify(layout: Metablock, owner, links: Path, trust: SigstoreTrust | None = None):
    verifier = Verifier(inspections=InspectionPolicy.REFUSE, quiet=True,
                        sigstore=trust or production())
    return verifier.verify(layout, [owner.public_key], DirectoryLinks(links))


@pytest.fixture(scope="module")
def owner():
    return generate_key()


def test_the_release_workflow_is_a_functionary_and_its_wheel_the_product(owner, tmp_path):
    summary = verify(keyless_layout(owner), owner, bundle_dir(tmp_path))
    assert summary.products == {WHEEL.name: {"sha256": hashlib.sha256(
        WHEEL.read_bytes()).hexdigest()}}
    bind_product(summary, WHEEL)


def test_a_changed_byte_of_the_wheel_is_refused(owner, tmp_path):
    summary = verify(keyless_layout(owner), owner, bundle_dir(tmp_path))
    changed = tmp_path / WHEEL.name
    data = bytearray(WHEEL.read_bytes())
    data[len(data) // 2] ^= 1
    changed.write_bytes(bytes(data))
    with pytest.raises(ProductBindingError, match="has sha256"):
        bind_product(summary, changed)


def test_a_changed_signed_digest_is_refused(owner, tmp_path):
    links = bundle_dir(tmp_path)
    path = links / f"release.{WHEEL.name}.sigstore.json"
    bundle = json.loads(path.read_text())
    bundle["messageSignature"]["messageDigest"]["digest"] = "A" * 43 + "="
    path.write_text(json.dumps(bundle))
    with pytest.raises(ThresholdError, match="does not verify"):
        verify(keyless_layout(owner), owner, links)


@pytest.mark.parametrize(("identity", "issuer", "words"), [
    ("https://github.com/trailofbits/rfc8785.py/.github/workflows/other.yml@refs/tags/*",
     GITHUB, "is not one the layout names"),
    ("https://github.com/evil/rfc8785.py/.github/workflows/release.yml@refs/tags/*", GITHUB,
     "is not one the layout names"),
    (RELEASE, "https://accounts.google.com",
     "is one the layout names, but its OIDC issuer is not https://accounts.google.com"),
])
def test_another_identity_or_issuer_is_refused_in_one_sentence(owner, tmp_path, identity,
                                                                issuer, words):
    with pytest.raises(ThresholdError) as refused:
        verify(keyless_layout(owner, identity, issuer), owner, bundle_dir(tmp_path))
    message = str(refused.value)
    assert "\n" not in message
    assert "trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2" in message
    assert words in message


def test_an_expired_trust_root_is_refused(owner, tmp_path):
    """The owners vouch for a root until a date; sigstore alone never ages one out."""
    root = json.loads((SIGSTORE / "production.trusted_root.json").read_text())
    for authority in root["certificateAuthorities"]:
        authority["validFor"]["end"] = "2023-01-01T00:00:00Z"
    aged = SigstoreTrust(json.dumps(root).encode())
    verify(keyless_layout(owner), owner, bundle_dir(tmp_path), aged)  # accepted by sigstore
    expired = SigstoreTrust((SIGSTORE / "production.trusted_root.json").read_bytes(),
                            expires=datetime(2026, 1, 1, tzinfo=UTC),
                            now=lambda: datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC))
    with pytest.raises(ThresholdError, match="trusted root expired on 2026-01-01"):
        verify(keyless_layout(owner), owner, bundle_dir(tmp_path), expired)


def test_without_a_trust_root_keyless_steps_are_refused(owner, tmp_path):
    verifier = Verifier(inspections=InspectionPolicy.REFUSE, quiet=True)
    with pytest.raises(ThresholdError, match="no Sigstore trusted root"):
        verifier.verify(keyless_layout(owner), [owner.public_key],
                        DirectoryLinks(bundle_dir(tmp_path)))


def test_a_malformed_trust_root_is_a_format_error(owner, tmp_path):
    with pytest.raises(ThresholdError, match="trusted root is not valid"):
        verify(keyless_layout(owner), owner, bundle_dir(tmp_path),
               SigstoreTrust(b'{"mediaType": "nonsense"}'))


def test_a_missing_bundle_says_how_keyless_evidence_is_named(owner, tmp_path):
    (tmp_path / "links").mkdir()
    with pytest.raises(LinkNotFoundError, match=re.escape("release.<name>.sigstore.json")):
        verify(keyless_layout(owner), owner, tmp_path / "links")


def test_thresholds_count_distinct_identities(owner, tmp_path):
    links = bundle_dir(tmp_path, f"release.{WHEEL.name}.sigstore.json",
                       "release.copy.sigstore.json")
    (links / "release.copy.sigstore.json").unlink()
    # the same signer twice, under two names of the same product: one identity
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(links / f"release.{WHEEL.name}.sigstore.json",
                other / f"release.{WHEEL.name}.sigstore.json")
    shutil.copy(links / f"release.{WHEEL.name}.sigstore.json",
                other / f"release.{WHEEL.name.replace('.whl', '.zip')}.sigstore.json")
    with pytest.raises(ThresholdError, match="counted once"):
        verify(keyless_layout(owner, threshold=2), owner, other)


def test_the_staging_statement_verifies_under_identity_and_predicate_type(owner, tmp_path):
    staging = SigstoreTrust((SIGSTORE / "staging.trusted_root.json").read_bytes())
    links = bundle_dir(tmp_path, "release.provenance.sigstore.json",
                       source=SIGSTORE / "staging-slsa-provenance.dsse.sigstore.json")
    summary = verify(keyless_layout(owner, BEACON, product="a.txt"), owner, links, staging)
    assert summary.products == {"a.txt": {"sha256": "a0cfc71271d6e278e57cd332ff957c3f7043fd"
                                                    "da354c4cbb190a30d56efa01bf"}}
    # the same statement against the production root: not a certificate it trusts
    with pytest.raises(ThresholdError, match="does not verify"):
        verify(keyless_layout(owner, BEACON, product="a.txt"), owner, links)
    # and against a layout that names the real release workflow: refused
    with pytest.raises(ThresholdError, match="is not one the layout names"):
        verify(keyless_layout(owner, product="a.txt"), owner, links, staging)


def test_npm_provenance_is_refused_as_not_supported_by_the_verifier(owner, tmp_path):
    links = bundle_dir(tmp_path, "release.provenance.sigstore.json",
                       source=SIGSTORE / "npm-sigstore-3.1.0.sigstore.json")
    layout = keyless_layout(
        owner, "https://github.com/sigstore/sigstore-js/.github/workflows/release.yml@*",
        product="sigstore-3.1.0.tgz")
    with pytest.raises(ThresholdError, match="not supported by the verifier"):
        verify(layout, owner, links)


def test_a_layout_mixes_a_key_signed_step_and_a_keyless_release(owner, tmp_path):
    builder = generate_key()
    wheel_hash = {"sha256": hashlib.sha256(WHEEL.read_bytes()).hexdigest()}
    build = Step("build", [builder.public_key.keyid], 1, [],
                 [["CREATE", WHEEL.name], ["DISALLOW", "*"]])
    layout = keyless_layout(owner, extra=[build],
                            keys={builder.public_key.keyid: key_to_dict(builder.public_key)},
                            materials=[["MATCH", WHEEL.name, "WITH", "PRODUCTS", "FROM",
                                        "build"], ["DISALLOW", "*"]])
    links = bundle_dir(tmp_path)

    def write_build(products):
        block = Metablock.new(Link("build", products=products))
        block.sign(builder)
        block.dump(links / link_filename("build", builder.public_key.keyid))

    # the keyless release step's materials: the message signature names only a product,
    # so MATCH against the build has nothing to match and the release has no materials
    write_build({WHEEL.name: wheel_hash})
    assert verify(layout, owner, links).products == {WHEEL.name: wheel_hash}
    (links / link_filename("build", builder.public_key.keyid)).unlink()
    with pytest.raises(LinkNotFoundError, match="'build'"):
        verify(layout, owner, links)


def test_cert_constraints_round_trip_and_refuse_nonsense():
    step = Step("release", [], 1, cert_constraints=[CertConstraint(GITHUB, uris=(RELEASE,))])
    data = step.to_dict()
    assert data["cert_constraints"] == [{"issuer": GITHUB, "uris": [RELEASE]}]
    assert Step.from_dict(data) == step
    assert "cert_constraints" not in Step("build", ["ab"]).to_dict()
    for bad in ([{"uris": [RELEASE]}], [{"issuer": GITHUB}], [{"issuer": GITHUB, "uris": ["*"]}],
                [{"issuer": GITHUB, "uris": [RELEASE], "roots": []}], {"issuer": GITHUB}):
        with pytest.raises(FormatError):
            Step.from_dict({**data, "cert_constraints": bad})


def test_cli_verifies_a_keyless_layout_with_a_trusted_root(owner, tmp_path):
    write_key_pair(owner, tmp_path / "owner", None)
    keyless_layout(owner).dump(tmp_path / "root.layout")
    links = bundle_dir(tmp_path)
    shutil.copy(WHEEL, tmp_path / WHEEL.name)
    args = [BIN / "custody-intoto", "verify", "--layout", "root.layout", "--verification-keys",
            "owner.pub", "--link-dir", links]
    r = subprocess.run([*args, "--trusted-root", SIGSTORE / "production.trusted_root.json"],
                       cwd=tmp_path, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert r.returncode == 1 and "no Sigstore trusted root" in r.stderr


@pytest.mark.parametrize("data", [
    b"", b"not json", b"[]", b"null", b'"x"', b"[" * 100_000 + b"]" * 100_000,
    b'{"mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.2"}',
    json.dumps({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                "verificationMaterial": {}, "dsseEnvelope": {"payload": 3}}).encode(),
    json.dumps({**json.loads(WHEEL_BUNDLE.read_text()),
                "messageSignature": {"messageDigest": {"algorithm": "SHA2_512",
                                                       "digest": "AAAA"}}}).encode(),
    json.dumps({**json.loads(WHEEL_BUNDLE.read_text()),
                "messageSignature": {"messageDigest": "nope"}}).encode(),
])
def test_hostile_bundles_are_refusals_never_crashes(owner, tmp_path, data):
    links = tmp_path / "links"
    links.mkdir()
    (links / f"release.{WHEEL.name}.sigstore.json").write_bytes(data)
    with pytest.raises(ThresholdError) as refused:
        verify(keyless_layout(owner), owner, links)
    assert "\n" not in str(refused.value)


def test_a_message_digest_other_than_sha256_is_named():
    from custody.intoto.keyless import _message_digest

    name = f"release.{WHEEL.name}.sigstore.json"
    raw = {"messageSignature": {"messageDigest": {"algorithm": "SHA2_512", "digest": "AAAA"}}}
    with pytest.raises(FormatError, match="signs a 'SHA2_512' digest"):
        _message_digest(raw, name, "release")
    raw["messageSignature"]["messageDigest"] = {"algorithm": "SHA2_256", "digest": "*"}
    with pytest.raises(FormatError, match="not base64"):
        _message_digest(raw, name, "release")
    assert _message_digest({"messageSignature": {"messageDigest": {
        "algorithm": "SHA2_256", "digest": "AAAA"}}}, name, "release") == (WHEEL.name, b"\0\0\0")
