"""in-toto attestations as step evidence, signed with functionary keys.

Key-signed statements are generated here; the keyless (Sigstore) ones are
real and live in tests/intoto/test_keyless.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from custody.intoto.attestation import LINK_V03, SLSA_PROVENANCE_V1, STATEMENT_V1, Statement
from custody.intoto.errors import FormatError, RecordError, RuleError, ThresholdError
from custody.intoto.metadata import Envelope, Metablock, key_to_dict, load_metadata
from custody.intoto.models import Layout, Link, Step, link_filename
from custody.intoto.runner import StepRecorder
from custody.intoto.verify import DirectoryLinks, InspectionPolicy, Verifier
from custody.keys_tooling.keys import generate_key, write_key_pair

BIN = Path(sys.executable).parent


def digest(data: bytes) -> dict[str, str]:
    return {"sha256": hashlib.sha256(data).hexdigest()}


@pytest.fixture
def keys():
    return {name: generate_key() for name in ("owner", "dev", "builder")}


def layout_for(keys, build_materials=None) -> Metablock:
    dev, builder = keys["dev"].public_key, keys["builder"].public_key
    layout = Layout(
        keys={k.keyid: key_to_dict(k) for k in (dev, builder)},
        expires="2035-01-01T00:00:00Z",
        steps=[
            Step("checkout", [dev.keyid], 1, [], [["CREATE", "src/*"], ["DISALLOW", "*"]]),
            Step("build", [builder.keyid], 1,
                 build_materials or [["MATCH", "src/*", "WITH", "PRODUCTS", "FROM", "checkout"],
                                     ["DISALLOW", "*"]],
                 [["CREATE", "app.bin"], ["DISALLOW", "*"]], ["make"]),
        ],
    )
    block = Metablock.new(layout)
    block.sign(keys["owner"])
    return block


def write_checkout(keys, links: Path, source: bytes = b"print(1)\n") -> None:
    link = Link("checkout", products={"src/main.py": digest(source)})
    block = Metablock.new(link)
    block.sign(keys["dev"])
    block.dump(links / link_filename("checkout", keys["dev"].public_key.keyid))


def write_statement(keys, links: Path, statement: Statement, signer: str = "builder") -> Path:
    envelope = Envelope.attest(statement)
    envelope.sign(keys[signer])
    path = links / link_filename("build", keys[signer].public_key.keyid)
    envelope.dump(path)
    return path


def verify(keys, links: Path, layout: Metablock | None = None):
    return Verifier(inspections=InspectionPolicy.REFUSE).verify(
        layout or layout_for(keys), [keys["owner"].public_key], DirectoryLinks(links))


def link_statement(source: bytes = b"print(1)\n", binary: bytes = b"ELF") -> Statement:
    return Statement.from_link(Link("build", materials={"src/main.py": digest(source)},
                                    products={"app.bin": digest(binary)}, command=["make"]))


def test_link_attestation_follows_the_specification_field_for_field(keys, tmp_path):
    path = write_statement(keys, tmp_path, link_statement())
    envelope = json.loads(path.read_text())
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement == {
        "_type": STATEMENT_V1,
        "subject": [{"name": "app.bin", "digest": digest(b"ELF")}],
        "predicateType": LINK_V03,
        "predicate": {"name": "build", "command": ["make"],
                      "materials": [{"name": "src/main.py", "digest": digest(b"print(1)\n")}]},
    }


def test_a_link_attestation_is_evidence_for_its_step(keys, tmp_path):
    write_checkout(keys, tmp_path)
    write_statement(keys, tmp_path, link_statement())
    summary = verify(keys, tmp_path)
    assert summary.products == {"app.bin": digest(b"ELF")}


def test_artifact_rules_apply_to_attestations_unchanged(keys, tmp_path):
    write_checkout(keys, tmp_path)
    write_statement(keys, tmp_path, link_statement(source=b"tampered\n"))
    with pytest.raises(RuleError, match=r"src/main\.py"):
        verify(keys, tmp_path)


def test_a_changed_statement_breaks_the_signature(keys, tmp_path):
    write_checkout(keys, tmp_path)
    path = write_statement(keys, tmp_path, link_statement())
    envelope = json.loads(path.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "00" * 32
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    path.write_text(json.dumps(envelope))
    with pytest.raises(ThresholdError, match="not validly signed"):
        verify(keys, tmp_path)


def test_an_attestation_by_another_key_is_not_evidence(keys, tmp_path):
    write_checkout(keys, tmp_path)
    envelope = Envelope.attest(link_statement())
    envelope.sign(keys["dev"])  # the developer, not the builder the layout names
    envelope.dump(tmp_path / link_filename("build", keys["builder"].public_key.keyid))
    with pytest.raises(ThresholdError, match="not validly signed"):
        verify(keys, tmp_path)


def slsa_statement(source: bytes = b"print(1)\n") -> Statement:
    return Statement.from_dict({
        "_type": STATEMENT_V1,
        "subject": [{"name": "app.bin", "digest": digest(b"ELF")}],
        "predicateType": SLSA_PROVENANCE_V1,
        "predicate": {
            "buildDefinition": {
                "buildType": "https://example.com/make@v1",
                "externalParameters": {"target": "all"},
                "resolvedDependencies": [{"uri": "src/main.py", "digest": digest(source)}],
            },
            "runDetails": {"builder": {"id": "https://example.com/builder"}},
        },
    })


def test_slsa_provenance_is_evidence_materials_from_resolved_dependencies(keys, tmp_path):
    write_checkout(keys, tmp_path)
    write_statement(keys, tmp_path, slsa_statement())
    assert verify(keys, tmp_path).products == {"app.bin": digest(b"ELF")}
    write_statement(keys, tmp_path, slsa_statement(source=b"other\n"))
    with pytest.raises(RuleError, match=r"src/main\.py"):
        verify(keys, tmp_path)


def test_other_predicates_are_refused_by_name(keys, tmp_path):
    write_checkout(keys, tmp_path)
    statement = link_statement()
    statement.predicate_type = "https://spdx.dev/Document"
    write_statement(keys, tmp_path, statement)
    with pytest.raises(ThresholdError, match=re.escape("predicate type 'https://spdx.dev/Document'")):
        verify(keys, tmp_path)


def test_malformed_statements_are_format_errors():
    base = link_statement().to_dict()
    for broken in ({**base, "subject": []}, {**base, "subject": [{"name": "x"}]},
                   {**base, "subject": [{"digest": {"sha256": "ab"}}]},
                   {**base, "_type": "https://in-toto.io/Statement/v0.1"},
                   {**base, "predicateType": 3}, {**base, "predicate": []}):
        with pytest.raises(FormatError):
            Statement.from_dict(broken)


def test_run_attest_writes_an_attestation_and_verifies(keys, tmp_path):
    for name, signer in keys.items():
        write_key_pair(signer, tmp_path / name, None)
    work = tmp_path / "work"
    (work / "src").mkdir(parents=True)
    (work / "src/main.py").write_bytes(b"print(1)\n")
    write_checkout(keys, tmp_path)
    r = subprocess.run([BIN / "custody-intoto", "run", "-n", "build", "--attest",
                        "--signing-key", tmp_path / "builder", "-m", "src/main.py",
                        "-p", "app.bin", "--metadata-directory", tmp_path, "--",
                        "sh", "-c", "printf ELF > app.bin"],
                       cwd=work, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    written = load_metadata(tmp_path / link_filename("build",
                                                     keys["builder"].public_key.keyid))
    assert isinstance(written, Envelope) and written.statement is not None
    assert written.statement.predicate_type == LINK_V03
    layout = layout_for(keys)
    layout.dump(tmp_path / "root.layout")
    r = subprocess.run([BIN / "custody-intoto", "verify", "--layout", "root.layout",
                        "--verification-keys", "owner.pub", "--link-dir", "."],
                       cwd=tmp_path, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr


def test_a_step_without_products_cannot_be_attested(keys, tmp_path):
    recorder = StepRecorder("review", signer=keys["dev"], attest=True,
                            metadata_directory=str(tmp_path))
    with pytest.raises(RecordError, match="recorded no products"):
        recorder.run([], [], ["true"])


def test_record_start_stop_attest(keys, tmp_path):
    for name, signer in keys.items():
        write_key_pair(signer, tmp_path / name, None)
    (tmp_path / "src").mkdir()
    (tmp_path / "src/main.py").write_bytes(b"print(1)\n")
    base = [BIN / "custody-intoto", "record"]
    key = ["-n", "build", "--signing-key", tmp_path / "builder"]
    r = subprocess.run([*base, "start", *key, "-m", "src/main.py"], cwd=tmp_path,
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    (tmp_path / "app.bin").write_bytes(b"ELF")
    r = subprocess.run([*base, "stop", *key, "--attest", "-p", "app.bin"], cwd=tmp_path,
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    written = load_metadata(tmp_path / link_filename("build", keys["builder"].public_key.keyid))
    assert isinstance(written, Envelope) and written.statement is not None
    assert written.statement.subject == {"app.bin": digest(b"ELF")}
    assert written.evidence("build").materials == {"src/main.py": digest(b"print(1)\n")}
