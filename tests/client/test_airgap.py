"""Air-gapped hosts: a mirror written by ``custody-repo export`` on a directory (a USB stick)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.helpers import BIN, custody, installed_state

pytestmark = pytest.mark.slow


def export(served, out) -> None:
    r = subprocess.run([str(BIN / "custody-repo"), "export", str(served.repo_dir), str(out),
                        "--package", "hello"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert f"custody init --url {out.resolve().as_uri()}" in r.stdout


def test_install_and_update_from_an_exported_directory(served, tmp_path):
    served.publish("1.0.0")
    usb = tmp_path / "media/usb/repo"
    export(served, usb)
    home = tmp_path / "home"
    r = custody(home, "init", "--url", usb.as_uri(), "--root",
                str(usb / "metadata/1.root.json"), "--inspections", "run")
    assert r.returncode == 0, r.stderr
    r = custody(home, "install", "hello")
    assert r.returncode == 0 and "installed hello 1.0.0" in r.stdout, r.stderr

    served.publish("1.1.0")  # the next stick brings a new release
    export(served, usb)
    r = custody(home, "update")
    assert r.returncode == 0 and "updated hello 1.0.0 -> 1.1.0" in r.stdout, r.stderr

    served.publish("1.2.0", message="tampered on the way")
    export(served, usb)
    artifact = next((usb / "targets/packages/hello/1.2.0").iterdir())
    artifact.write_bytes(artifact.read_bytes()[:-10] + b"0123456789")
    before = installed_state(home)
    r = custody(home, "update")
    assert r.returncode == 1 and "TUF refused the download of packages/hello/1.2.0" in r.stderr
    assert installed_state(home) == before


def test_file_and_http_mirrors_mix(served, tmp_path):
    """file:// and http:// mirrors in one list, each standing in for the other."""
    from tests.helpers import free_port

    served.publish("1.0.0")
    stick = tmp_path / "stick"
    export(served, stick)
    shutil.rmtree(stick / "targets/packages")  # metadata on the stick, artifacts online
    home = tmp_path / "home"
    r = custody(home, "init", "--url", stick.as_uri(), "--url", served.url, "--root",
                str(stick / "metadata/1.root.json"), "--inspections", "run")
    assert r.returncode == 0
    r = custody(home, "install", "hello")
    assert r.returncode == 0 and "installed hello 1.0.0" in r.stdout, r.stderr

    export(served, stick)  # a whole stick, and a server that is down
    offline = tmp_path / "offline"
    r = custody(offline, "init", "--url", f"http://127.0.0.1:{free_port()}", "--url",
                stick.as_uri(), "--root", str(stick / "metadata/1.root.json"),
                "--inspections", "run")
    assert r.returncode == 0
    r = custody(offline, "install", "hello")
    assert r.returncode == 0, r.stderr
    state = json.loads((offline / "state.json").read_text())
    assert state["packages"]["hello"]["current"] == "1.0.0"
