"""custody-intoto as a drop-in for the reference command lines, in real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from custody.keys_tooling.keys import generate_key, load_public_key, write_key_pair

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def sh(*args: str | Path, cwd: Path, env: dict[str, str] | None = None,
       ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120, check=False)


TOML = """
expires_in_days = 30
readme = "two steps, one inspection"

[keys]
alice = "alice.pub"
bob = "bob.pub"

[[steps]]
name = "write"
functionaries = ["alice"]
expected_command = "sh -c 'echo hi > foo.py'"
products = ["CREATE foo.py", "DISALLOW *"]

[[steps]]
name = "package"
functionaries = ["bob"]
expected_command = ["tar", "czf", "foo.tar.gz", "foo.py"]
materials = ["MATCH foo.py WITH PRODUCTS FROM write", "DISALLOW *"]
products = ["CREATE foo.tar.gz", "ALLOW foo.py", "DISALLOW *"]

[[inspect]]
name = "untar"
run = "tar xzf foo.tar.gz"
materials = ["MATCH foo.tar.gz WITH PRODUCTS FROM package", "ALLOW root.layout",
             "DISALLOW *"]
products = ["MATCH foo.py WITH PRODUCTS FROM write", "ALLOW foo.tar.gz",
            "ALLOW root.layout", "DISALLOW *"]
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Keys (owner's encrypted) and the TOML description in one directory."""
    write_key_pair(generate_key(), tmp_path / "owner", b"owner-secret")
    for name in ("alice", "bob"):
        write_key_pair(generate_key(), tmp_path / name, None)
    (tmp_path / "layout.toml").write_text(TOML)
    return tmp_path


RUN = {"custody": [BIN / "custody-intoto", "run"], "in-toto": [BIN / "in-toto-run"]}
VERIFY = {"custody": [BIN / "custody-intoto", "verify"], "in-toto": [BIN / "in-toto-verify"]}


@pytest.mark.parametrize("recorder", ["custody", "in-toto"])
@pytest.mark.parametrize("verifier", ["custody", "in-toto"])
def test_cli_chain_both_ways(project: Path, recorder: str, verifier: str):
    result = sh(BIN / "custody-intoto", "layout", "new", "layout.toml", "-k", "owner",
                "-P", "owner-secret", "-o", "root.layout", cwd=project)
    assert result.returncode == 0, result.stderr
    work = project / "work"
    work.mkdir()
    r = sh(*RUN[recorder], "-n", "write", "--signing-key", project / "alice", "-p", "foo.py",
           "--", "sh", "-c", "echo hi > foo.py", cwd=work)
    assert r.returncode == 0, r.stderr
    r = sh(*RUN[recorder], "-n", "package", "--signing-key", project / "bob", "-m", "foo.py",
           "-p", "foo.py", "foo.tar.gz", "--", "tar", "czf", "foo.tar.gz", "foo.py", cwd=work)
    assert r.returncode == 0, r.stderr
    final = project / "final"
    final.mkdir()
    (final / "foo.tar.gz").write_bytes((work / "foo.tar.gz").read_bytes())
    (final / "root.layout").write_bytes((project / "root.layout").read_bytes())
    r = sh(*VERIFY[verifier], "--layout", "root.layout", "--verification-keys",
           project / "owner.pub", "--link-dir", work, cwd=final)
    assert r.returncode == 0, r.stderr

    # The delivered tarball swapped: both refuse with exit code 1.
    (final / "foo.tar.gz").write_bytes((work / "foo.tar.gz").read_bytes() + b"\0")
    r = sh(*VERIFY[verifier], "--layout", "root.layout", "--verification-keys",
           project / "owner.pub", "--link-dir", work, cwd=final)
    assert r.returncode == 1


def test_run_exits_with_the_commands_status(project: Path):
    r = sh(BIN / "custody-intoto", "run", "-n", "write", "--signing-key", "alice",
           "--", "sh", "-c", "exit 3", cwd=project)
    assert r.returncode == 3
    alice = load_public_key(project / "alice.pub").keyid
    link = json.loads((project / f"write.{alice[:8]}.link").read_text())
    assert link["signed"]["byproducts"]["return-value"] == 3


def test_usage_errors_exit_2(project: Path):
    assert sh(BIN / "custody-intoto", "run", "-n", "x", cwd=project).returncode == 2
    assert sh(BIN / "custody-intoto", "verify", "--layout", "x", cwd=project).returncode == 2
    r = sh(BIN / "custody-intoto", "run", "-n", "x", "--signing-key", "alice", cwd=project)
    assert r.returncode == 2
    assert "--no-command" in r.stderr


def test_wrong_password_is_one_clear_sentence(project: Path):
    r = sh(BIN / "custody-intoto", "layout", "new", "layout.toml", "-k", "owner", "-P", "nope",
           "-o", "root.layout", cwd=project)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0
    assert "wrong password for private key owner" in r.stderr
    assert not (project / "root.layout").exists()


def test_password_from_environment(project: Path):
    r = sh(BIN / "custody-intoto", "layout", "new", "layout.toml", "-k", "owner", "-o", "l",
           cwd=project, env={"CUSTODY_KEY_PASSWORD": "owner-secret"})
    assert r.returncode == 0, r.stderr


def test_layout_new_again_keeps_the_file_and_another_layout_needs_force(project: Path):
    """A script run twice keeps its layout (the one published); replacing one is explicit."""
    def new(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return sh(BIN / "custody-intoto", "layout", "new", *args, cwd=project,
                  env={"CUSTODY_KEY_PASSWORD": "owner-secret"})

    def refused(r: subprocess.CompletedProcess[str], why: str) -> None:
        assert r.returncode == 2, r.stderr
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
        assert r.stderr.startswith(f"custody-intoto layout: l.layout exists and {why}")
        assert "pass --force" in r.stderr
        assert (project / "l.layout").read_bytes() == written  # untouched

    assert new("layout.toml", "-k", "owner", "-o", "l.layout").returncode == 0
    written = (project / "l.layout").read_bytes()
    expires = json.loads(written)["signed"]["expires"]
    time.sleep(1.1)  # a second later: a new layout would expire a second later
    r = new("layout.toml", "-k", "owner", "-o", "l.layout")
    assert r.returncode == 0, r.stderr
    assert r.stderr == (f"kept l.layout: it holds this layout already, signed by the same 1 "
                        f"key(s), expires {expires} (--force signs a new one)\n")
    assert (project / "l.layout").read_bytes() == written

    (project / "other.toml").write_text(TOML.replace("two steps", "2 steps"))
    refused(new("other.toml", "-k", "owner", "-o", "l.layout"),
            "holds another layout (differing in readme)")
    (project / "other.toml").write_text(TOML.replace('"bob.pub"', '"alice.pub"'))
    refused(new("other.toml", "-k", "owner", "-o", "l.layout"),
            "holds another layout (differing in steps, functionary keys)")
    refused(new("layout.toml", "-k", "owner", "alice", "-o", "l.layout"),
            "holds another layout (differing in signatures)")
    refused(new("layout.toml", "-k", "owner", "-o", "l.layout", "--use-dsse"),
            "holds another layout (differing in envelope kind (DSSE or classic))")
    (project / "garbage.layout").write_text("not json")
    r = new("layout.toml", "-k", "owner", "-o", "garbage.layout")
    assert r.returncode == 2 and "garbage.layout exists and is not a layout" in r.stderr
    assert (project / "garbage.layout").read_text() == "not json"

    r = new("other.toml", "-k", "owner", "-o", "l.layout", "--force")
    assert r.returncode == 0, r.stderr
    replaced = json.loads((project / "l.layout").read_text())["signed"]
    assert load_public_key(project / "alice.pub").keyid in replaced["keys"]
    assert new("other.toml", "-k", "owner", "-o", "l.layout").returncode == 0  # kept again

    # A description that names its date: the date is the layout's, compared like the rest.
    (project / "dated.toml").write_text(
        TOML.replace("expires_in_days = 30", 'expires = "2999-01-01T00:00:00Z"'))
    assert new("dated.toml", "-k", "owner", "-o", "l.layout", "--force").returncode == 0
    written = (project / "l.layout").read_bytes()
    assert new("dated.toml", "-k", "owner", "-o", "l.layout").returncode == 0
    (project / "dated.toml").write_text(
        TOML.replace("expires_in_days = 30", 'expires = "2998-01-01T00:00:00Z"'))
    refused(new("dated.toml", "-k", "owner", "-o", "l.layout"),
            "holds another layout (differing in expiry date)")
    (project / "dated.toml").write_text(
        TOML.replace("expires_in_days = 30", 'expires = "2001-01-01T00:00:00Z"'))
    assert new("dated.toml", "-k", "owner", "-o", "l.layout", "--force").returncode == 0
    written = (project / "l.layout").read_bytes()
    refused(new("dated.toml", "-k", "owner", "-o", "l.layout"),
            "holds this layout, expired on 2001-01-01T00:00:00Z; pass --force to sign it anew")


def test_record_start_stop_interoperates(project: Path):
    """custody-intoto record start, in-toto-record stop, and the reverse."""
    for first, second in [("custody-intoto", "in-toto"), ("in-toto", "custody-intoto")]:
        work = project / f"rec-{first}"
        work.mkdir()
        (work / "a.txt").write_text("a")

        def record(tool: str, action: str, *args: str,
                   work: Path = work) -> subprocess.CompletedProcess[str]:
            cmd = [BIN / "custody-intoto", "record", action] if tool == "custody-intoto" \
                else [BIN / "in-toto-record", action]
            return sh(*cmd, "-n", "edit", "--signing-key", project / "alice", *args, cwd=work)

        assert record(first, "start", "-m", "a.txt").returncode == 0
        (work / "b.txt").write_text("b")
        r = record(second, "stop", "-p", "a.txt", "b.txt")
        assert r.returncode == 0, r.stderr
        alice = load_public_key(project / "alice.pub").keyid
        link = json.loads((work / f"edit.{alice[:8]}.link").read_text())
        assert set(link["signed"]["materials"]) == {"a.txt"}
        assert set(link["signed"]["products"]) == {"a.txt", "b.txt"}
        assert not list(work.glob(".*link-unfinished"))


def test_sign_threshold_layout_and_verify_threshold(project: Path):
    """Two owners sign; --threshold 1 accepts either key alone, the default wants both."""
    from custody.intoto.layout_toml import layout_from_toml
    from custody.intoto.metadata import Metablock

    write_key_pair(generate_key(), project / "owner2", None)
    layout = layout_from_toml(project / "layout.toml", load_public_key)
    Metablock.new(layout).dump(project / "unsigned.layout")
    r = sh(BIN / "custody-intoto", "sign", "-f", "unsigned.layout", "-k", "owner2",
           "-o", "half.layout", cwd=project)
    assert r.returncode == 0, r.stderr
    # in-toto-sign appends the second signature: the two tools share the format.
    # Its -p prompts through getpass, which reads stdin when there is no tty.
    r = subprocess.run([str(BIN / "in-toto-sign"), "-f", "half.layout", "-k", "owner", "-p",
                        "-a", "-o", "both.layout"], cwd=project, input="owner-secret\n",
                       capture_output=True, text=True, timeout=60, check=False,
                       start_new_session=True)
    assert r.returncode == 0, r.stderr
    r = sh(BIN / "custody-intoto", "sign", "-f", "both.layout", "--verify", "-k", "owner.pub",
           "owner2.pub", cwd=project)
    assert r.returncode == 0, r.stderr
    r = sh(BIN / "in-toto-sign", "-f", "both.layout", "--verify", "-k", "owner.pub",
           "owner2.pub", cwd=project)
    assert r.returncode == 0, r.stderr
    r = sh(BIN / "custody-intoto", "sign", "-f", "half.layout", "--verify", "-k", "owner.pub",
           cwd=project)
    assert r.returncode == 1
