"""The layout TOML refuses what it cannot mean; ``layout show`` reads any layout back."""

from __future__ import annotations

from pathlib import Path

import pytest

from custody.intoto.errors import FormatError
from custody.intoto.layout_toml import layout_from_toml
from custody.keys_tooling.keys import generate_key, load_public_key, write_key_pair
from tests.helpers import BIN
from tests.intoto.test_cli import TOML, sh


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_key_pair(generate_key(), tmp_path / "owner", None)
    for name in ("alice", "bob"):
        write_key_pair(generate_key(), tmp_path / name, None)
    return tmp_path


def build(project: Path, text: str):
    (project / "layout.toml").write_text(text)
    return layout_from_toml(project / "layout.toml", load_public_key)


@pytest.mark.parametrize("edit,message", [
    (lambda t: t.replace('functionaries = ["bob"]', 'functionaries = ["bob"]\ntreshold = 1'),
     "steps[1]: unknown key 'treshold' (did you mean 'threshold'?)"),
    (lambda t: t.replace("[[steps]]", "[[step]]"),
     "the layout description: unknown key 'step' (did you mean 'steps'?)"),
    (lambda t: t.replace("readme =", "read_me ="),
     "unknown key 'read_me' (did you mean 'readme'?)"),
    (lambda t: t.replace('run = "tar', 'command = "tar'),
     "inspect[0]: unknown key 'command'"),
    (lambda t: t.split("[[steps]]")[0],
     "the layout has no steps"),
    (lambda t: t.replace('functionaries = ["bob"]', 'functionaries = ["bob"]\nthreshold = 2'),
     "steps[1].threshold 2 exceeds its 1 functionaries"),
    (lambda t: t.replace("FROM write\", \"DISALLOW *\"]", "FROM wirte\", \"DISALLOW *\"]"),
     "steps[1].materials[0] matches FROM 'wirte', which is no step of this layout "
     "(did you mean 'write'?)"),
    (lambda t: t.replace('"CREATE foo.tar.gz"', '"CREATE {nmae}.tar.gz"'),
     "steps[1].products[0] uses parameter {nmae}; custody substitutes only {name}, "
     "{version}, {artifact}"),
    (lambda t: t.replace('functionaries = ["bob"]', "functionaries = []"),
     "steps[1].functionaries is empty"),
    (lambda t: t.replace("expires_in_days = 30", 'expires_in_days = "30"'),
     "expires_in_days must be a whole number of days"),
])
def test_doubtful_descriptions_are_refused_with_the_entry(project, edit, message):
    with pytest.raises(FormatError) as caught:
        build(project, edit(TOML))
    assert message in str(caught.value)


def test_parameters_custody_substitutes_are_accepted(project):
    layout = build(project, TOML.replace('"CREATE foo.tar.gz"', '"CREATE {name}.tar.gz"'))
    assert layout.steps[1].expected_products[0] == ["CREATE", "{name}.tar.gz"]


def test_cli_refuses_a_typo_and_writes_nothing(project):
    (project / "layout.toml").write_text(TOML.replace("[[steps]]", "[[step]]"))
    r = sh(BIN / "custody-intoto", "layout", "new", "layout.toml", "-k", "owner", "-o",
           "root.layout", cwd=project)
    assert r.returncode == 1 and "unknown key 'step'" in r.stderr
    assert not (project / "root.layout").exists()


@pytest.mark.parametrize("writer", ["custody", "in-toto"])
@pytest.mark.parametrize("dsse", [False, True])
def test_layout_show_reads_classic_and_dsse_from_either_tool(project, writer, dsse):
    (project / "layout.toml").write_text(TOML)
    flag = ["--use-dsse"] if dsse else []
    r = sh(BIN / "custody-intoto", "layout", "new", "layout.toml", "-k", "owner", "-o",
           "root.layout", *flag, cwd=project)
    assert r.returncode == 0, r.stderr
    if writer == "in-toto":  # re-signed by the reference: its own envelope and signature
        from in_toto.models._signer import load_crypto_signer_from_pkcs8_file
        from in_toto.models.metadata import Metadata as RefMetadata

        ref = RefMetadata.load(str(project / "root.layout"))
        ref.signatures.clear()  # a list (classic) or a dict (DSSE): both clear
        ref.create_signature(load_crypto_signer_from_pkcs8_file(str(project / "owner")))
        ref.dump(str(project / "root.layout"))
    r = sh(BIN / "custody-intoto", "layout", "show", "root.layout", "-k", "owner.pub",
           "alice.pub", cwd=project)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    kind = "DSSE envelope" if dsse else "classic signed JSON"
    assert out.startswith(f"layout ({kind}), expires ")
    alice = load_public_key(project / "alice.pub").keyid
    assert f"1. write: 1 of {alice[:8]} (alice.pub)" in out
    assert "materials: MATCH foo.py WITH PRODUCTS FROM write; DISALLOW *" in out
    assert "untar: tar xzf foo.tar.gz" in out
    owner = load_public_key(project / "owner.pub").keyid
    assert f"{owner[:8]} (owner.pub): valid" in out
    r = sh(BIN / "custody-intoto", "layout", "show", "root.layout", cwd=project)
    assert r.returncode == 0 and "not checked: give its public key with -k" in r.stdout
    r = sh(BIN / "custody-intoto", "layout", "show", "root.layout", "-k", "alice.pub",
           cwd=project)
    assert "not checked" in r.stdout  # alice did not sign; the owner's key was not given


def test_the_documented_example_builds(tmp_path):
    """The complete example of docs/layouts.md is a valid description."""
    import re

    doc = (Path(__file__).resolve().parents[2] / "docs/layouts.md").read_text()
    example = re.search(r"```toml\n# hello.toml\n(.*?)```", doc, re.S)
    assert example is not None
    (tmp_path / "keys").mkdir()
    for name in ("alice", "rb1", "rb2", "bob"):
        write_key_pair(generate_key(), tmp_path / "keys" / name, None)
    layout = build(tmp_path, example.group(1))
    assert [s.name for s in layout.steps] == ["tag", "build", "package"]
    assert layout.steps[1].threshold == 2 and layout.inspect[0].run == ["tar", "xzf",
                                                                        "{artifact}"]


KEYLESS = """
expires_in_days = 30
[keys]
bob = "bob.pub"

[[steps]]
name = "build"
functionaries = ["bob"]
products = ["CREATE {artifact}", "DISALLOW *"]

[[steps]]
name = "release"
materials = ["MATCH {artifact} WITH PRODUCTS FROM build", "DISALLOW *"]
products = ["CREATE {artifact}", "DISALLOW *"]
[[steps.keyless]]
issuer = "https://token.actions.githubusercontent.com"
identity = "https://github.com/ORG/REPO/.github/workflows/release.yml@refs/tags/*"
[[steps.keyless]]
issuer = "https://accounts.google.com"
identity = "release-manager@example.com"
"""


def test_keyless_functionaries_in_toml_become_cert_constraints(project):
    layout = build(project, KEYLESS)
    release = layout.steps[1].to_dict()
    assert release["pubkeys"] == []
    assert release["cert_constraints"] == [
        {"issuer": "https://token.actions.githubusercontent.com",
         "uris": ["https://github.com/ORG/REPO/.github/workflows/release.yml@refs/tags/*"]},
        {"issuer": "https://accounts.google.com", "emails": ["release-manager@example.com"]},
    ]
    (project / "layout.toml").write_text(KEYLESS)
    r = sh(BIN / "custody-intoto", "layout", "new", "layout.toml", "-k", "owner", "-o",
           "root.layout", cwd=project)
    assert r.returncode == 0, r.stderr
    r = sh(BIN / "custody-intoto", "layout", "show", "root.layout", "-k", "owner.pub",
           cwd=project)
    assert "keyless https://github.com/ORG/REPO/.github/workflows/release.yml@refs/tags/* " \
           "(issuer https://token.actions.githubusercontent.com)" in r.stdout


@pytest.mark.parametrize("edit,message", [
    (lambda t: t.replace("identity =", "identiy =", 1), "unknown key 'identiy'"),
    (lambda t: t.replace('issuer = "https://accounts.google.com"\n', ""), "issuer must be"),
    (lambda t: t.replace("release-manager@example.com", "*"), "matches any identity"),
])
def test_doubtful_keyless_entries_are_refused(project, edit, message):
    with pytest.raises(FormatError, match=message):
        build(project, edit(KEYLESS))
