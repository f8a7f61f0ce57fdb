"""Unpacking refuses unsafe archives; the state follows the install's commit point."""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from client.errors import InstallError
from client.install import install_tree, switch_current, unpack
from client.state import State


def make_tar(path: Path, members: list[tarfile.TarInfo], data: bytes = b"x") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info in members:
            if info.isfile():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@pytest.mark.parametrize(("members", "words"), [
    ([member("/etc/passwd")], "leave the install directory"),
    ([member("../escape")], "leave the install directory"),
    ([member("a/../../escape")], "leave the install directory"),
    ([member("link", tarfile.SYMTYPE, "/etc/passwd")], "leaves the install directory"),
    ([member("a/link", tarfile.SYMTYPE, "../../x")], "leaves the install directory"),
    ([member("dev", tarfile.CHRTYPE)], "device"),
    ([member("hard", tarfile.LNKTYPE, "../x")], "leave the install directory"),
])
def test_unsafe_tar_members_are_refused(tmp_path, members, words):
    archive = make_tar(tmp_path / "a.tar.gz", members)
    with pytest.raises(InstallError, match=words):
        unpack(archive, tmp_path / "out", "a.tar.gz")


def test_safe_tar_with_inner_symlink(tmp_path):
    archive = make_tar(tmp_path / "a.tar.gz", [member("bin/tool"), member(
        "bin/alias", tarfile.SYMTYPE, "tool")])
    unpack(archive, tmp_path / "out", "a.tar.gz")
    assert os.readlink(tmp_path / "out/bin/alias") == "tool"


def test_zip_and_plain_files(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
        zf.writestr("pkg/mod.py", "x = 1\n")
    unpack(tmp_path / "a.zip", tmp_path / "z", "a.zip")
    assert (tmp_path / "z/pkg/mod.py").read_text() == "x = 1\n"
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zf:
        zf.writestr("../evil", "x")
    with pytest.raises(InstallError):
        unpack(tmp_path / "bad.zip", tmp_path / "zb", "bad.zip")
    (tmp_path / "tool").write_bytes(b"#!/bin/sh\n")
    unpack(tmp_path / "tool", tmp_path / "p", "tool")
    assert (tmp_path / "p/tool").read_bytes() == b"#!/bin/sh\n"


def test_failed_unpack_leaves_no_staging(tmp_path):
    archive = make_tar(tmp_path / "a.tar.gz", [member("ok"), member("../bad")])
    with pytest.raises(InstallError):
        install_tree(tmp_path / "home", "pkg", "1.0", archive, "a.tar.gz")
    assert list((tmp_path / "home/packages/pkg").iterdir()) == []


def test_state_trusts_the_symlink_after_a_crash(tmp_path):
    home = tmp_path / "home"
    for version in ("1.0", "1.1"):
        (home / "packages/pkg" / version).mkdir(parents=True)
    switch_current(home / "packages/pkg", "1.1")  # the switch happened ...
    (home / "state.json").write_text(json.dumps({"packages": {"pkg": {  # ... the save did not
        "current": "1.0", "previous": None, "channel": "stable",
        "versions": {"1.0": {"sha256": "aa"}}}}}))
    package = State.load(home).packages["pkg"]
    assert (package.current, package.previous) == ("1.1", "1.0")
