"""Models read and write the specification's JSON, and name the field that is wrong."""

from __future__ import annotations

import copy
import json

import pytest

from custody.intoto.errors import FormatError
from custody.intoto.metadata import Envelope, Metablock, metadata_from_bytes
from custody.intoto.models import Layout, Link
from custody.keys_tooling.keys import generate_key
from tests.intoto.chain import hello_layout


@pytest.fixture
def layout_dict(keydir):
    return hello_layout(keydir)


def test_layout_round_trips_exactly(layout_dict):
    assert Layout.from_dict(copy.deepcopy(layout_dict)).to_dict() == layout_dict


def test_layout_matches_reference_model(layout_dict):
    import attr
    from in_toto.models.layout import Layout as RefLayout

    ref = RefLayout.read(copy.deepcopy(layout_dict))
    assert attr.asdict(ref) == layout_dict


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda d: d["steps"][1].update(threshold=0), "steps[1].threshold"),
    (lambda d: d["steps"][1].update(threshold="2"), "steps[1].threshold"),
    (lambda d: d["steps"][0].pop("pubkeys"), "steps[0].pubkeys"),
    (lambda d: d["steps"][2]["expected_materials"].append(["PERMIT", "*"]),
     "steps[2].expected_materials[2]"),
    (lambda d: d.update(expires="next tuesday"), "layout.expires"),
    (lambda d: d.update(_type="link"), "layout._type"),
    (lambda d: d["inspect"][0].update(run="tar xzf"), "inspect[0].run"),
    (lambda d: d["steps"].append(dict(d["steps"][0])), "'clone' twice"),
    (lambda d: next(iter(d["keys"].values()))["keyval"].update(private="00"), "private"),
])
def test_malformed_layout_names_the_field(layout_dict, mutate, field):
    mutate(layout_dict)
    with pytest.raises(FormatError, match=field.replace("[", r"\[").replace("]", r"\]")):
        Layout.from_dict(layout_dict)


def test_malformed_link_names_the_artifact():
    data = Link("build", products={"a.tar.gz": {"sha256": "xyz!"}}).to_dict()
    with pytest.raises(FormatError, match=r"link.products\['a.tar.gz'\].sha256"):
        Link.from_dict(data)


@pytest.mark.parametrize("envelope", [Metablock, Envelope])
def test_envelopes_round_trip_and_verify(envelope):
    signer = generate_key()
    metadata = envelope.new(Link("build", products={"a": {"sha256": "ab"}},
                                 byproducts={"stdout": "line\n\ttab \x01", "return-value": 0}))
    metadata.sign(signer)
    again = metadata_from_bytes(metadata.to_bytes())
    assert type(again) is envelope
    assert again.is_signed_by(signer.public_key)
    assert again.payload == metadata.payload
    assert not again.is_signed_by(generate_key().public_key)


def test_signature_covers_payload():
    signer = generate_key()
    metadata = Metablock.new(Link("build", products={"a": {"sha256": "ab"}}))
    metadata.sign(signer)
    data = json.loads(metadata.to_bytes())
    data["signed"]["products"]["a"]["sha256"] = "cd"
    assert not metadata_from_bytes(json.dumps(data).encode()).is_signed_by(signer.public_key)


@pytest.mark.parametrize("blob", [b"not json", b"[]", b'{"signed": 1, "signatures": []}',
                                  b'{"payload": "!!", "payloadType": '
                                  b'"application/vnd.in-toto+json", "signatures": []}',
                                  b'{"foo": 1}'])
def test_unreadable_metadata_is_a_format_error(blob):
    with pytest.raises(FormatError):
        metadata_from_bytes(blob)


def test_compact_files_verify_over_their_own_bytes_and_refuse_tampering():
    """The fast path (signature over the file's bytes of 'signed') is as strict as canonical."""
    signer = generate_key()
    products = {f"f{i}": {"sha256": f"{i:064x}"} for i in range(1200)}  # written compactly
    metadata = Metablock.new(Link("build", products=products,
                                  byproducts={"stdout": "naïve ☃\n"}))
    metadata.sign(signer)
    data = metadata.to_bytes()
    assert data.startswith(b'{"signatures":[')
    again = metadata_from_bytes(data)
    assert again._signed_text is not None  # took the fast path
    assert again.is_signed_by(signer.public_key)  # non-ASCII escaped: canonical fallback
    assert again.payload == metadata.payload
    tampered = data.replace(b'"f7":{"sha256":"' + b"0" * 63 + b'7"',
                            b'"f7":{"sha256":"' + b"0" * 63 + b'8"')
    assert tampered != data
    assert not metadata_from_bytes(tampered).is_signed_by(signer.public_key)
    plain = Metablock.new(Link("build", products=products))
    plain.sign(signer)
    fast = metadata_from_bytes(plain.to_bytes())
    assert fast.is_signed_by(signer.public_key)
    assert fast._signed_text is None and fast._canonical is None  # verified without encoding
