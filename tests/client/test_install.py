"""Unpacking refuses unsafe archives; the state follows the install's commit point."""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from custody.client.errors import CorruptArchiveError, InstallError, UnsafeArchiveError
from custody.client.install import compare_tree, install_tree, switch_current
from custody.client.state import State
from custody.client.unpack import UnpackLimits, safe_member_path, unpack


def make_tar(path: Path, members: list[tarfile.TarInfo], data: bytes = b"x") -> Path:
    with tarfile.open(path, "w" if path.suffix == ".tar" else "w:gz") as tar:
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
    ([member("../escape")], "leave the install directory"),
    ([member("a/../../escape")], "leave the install directory"),
    ([member("./../escape")], "leave the install directory"),
    ([member("link", tarfile.SYMTYPE, "/etc/passwd")], "would leave the install directory"),
    ([member("a/link", tarfile.SYMTYPE, "../../x")], "would leave the install directory"),
    ([member("dev", tarfile.CHRTYPE)], "device"),
    ([member("hard", tarfile.LNKTYPE, "../x")], "leave the install directory"),
    ([member("a\\..\\x")], "backslash"),  # a traversal elsewhere: refused on top of tarfile
])
def test_unsafe_tar_members_are_refused(tmp_path, members, words):
    archive = make_tar(tmp_path / "a.tar.gz", members)
    with pytest.raises(InstallError, match=words):
        unpack(archive, tmp_path / "out", "a.tar.gz")


def test_what_gnu_tar_writes_for_a_directory_installs(tmp_path):
    """``tar -czf pkg.tar.gz -C dir .``: members ``./`` and ``./...`` (issue 21, item 8)."""
    import shutil
    import subprocess

    if shutil.which("tar") is None:
        pytest.skip("GNU tar is not installed")
    source = tmp_path / "dir"
    (source / "bin").mkdir(parents=True)
    (source / "bin/tool").write_text("#!/bin/sh\n")
    (source / "bin/tool").chmod(0o755)
    (source / "README").write_text("hi\n")
    archive = tmp_path / "pkg.tar.gz"
    subprocess.run(["tar", "-czf", str(archive), "-C", str(source), "."], check=True)
    with tarfile.open(archive) as tar:
        assert tar.getnames()[0] == "." and "./bin/tool" in tar.getnames()
    install_tree(tmp_path / "home", "pkg", "1.0", archive, archive.name)
    installed = tmp_path / "home/packages/pkg/1.0"
    assert (installed / "README").read_text() == "hi\n"
    assert os.access(installed / "bin/tool", os.X_OK)
    os.link(installed / "README", installed / "README.hard")
    subprocess.run(["tar", "-czf", str(archive), "-C", str(installed), "."], check=True)
    assert compare_tree(archive, archive.name, installed) == []  # what custody verify checks
    (installed / "README").write_text("changed\n")
    assert compare_tree(archive, archive.name, installed) == [
        "README was modified", "README.hard was modified"]


def test_a_leading_slash_is_stripped_as_tarfile_strips_it(tmp_path):
    archive = make_tar(tmp_path / "a.tar.gz", [member("/etc/passwd")], b"not yours")
    unpack(archive, tmp_path / "out", "a.tar.gz")
    assert (tmp_path / "out/etc/passwd").read_bytes() == b"not yours"


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
    assert not (tmp_path / "home/packages/pkg").exists()  # nothing left behind


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


# -- hostile archives (issue 17): refused before or while writing, nothing left ---------

def _bomb_tar(path: Path, size: int) -> Path:
    """A .tar.gz of one member of ``size`` zero bytes, streamed (never held in memory)."""
    import gzip

    class Zeros(io.RawIOBase):
        def __init__(self, n: int) -> None:
            self.n = n

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:  # type: ignore[override]
            count = min(len(buffer), self.n)
            buffer[:count] = bytes(count)
            self.n -= count
            return count

    with gzip.open(path, "wb", compresslevel=1) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        info = tarfile.TarInfo("zeros.bin")
        info.size = size
        tar.addfile(info, io.BufferedReader(Zeros(size), 1 << 20))
    return path


def test_a_decompression_bomb_is_refused_before_it_is_written(tmp_path):
    archive = _bomb_tar(tmp_path / "bomb.tar.gz", 1200 << 20)  # 1.2 GiB of zeros
    assert archive.stat().st_size < 8 << 20
    with pytest.raises(UnsafeArchiveError, match="unpacks to more than"):
        install_tree(tmp_path / "home", "bomb", "1.0", archive, "bomb.tar.gz")
    assert not (tmp_path / "home/packages/bomb").exists()


def test_a_zip_member_that_lies_about_its_size_is_stopped_while_written(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.bin", bytes(64 << 20))
    limits = UnpackLimits(max_bytes=8 << 20, max_ratio=1000)
    with pytest.raises(UnsafeArchiveError, match="unpacks to more than 8 MiB"):
        unpack(archive, tmp_path / "out", "a.zip", limits)


@pytest.mark.parametrize("name", ["a\\..\\evil", "C:evil", "C:/evil", "/"])
@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_hostile_member_names_are_refused(tmp_path, name, kind):
    if kind == "tar":
        archive = make_tar(tmp_path / "a.tar.gz", [member(name)])
    else:
        archive = tmp_path / "a.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr(zipfile.ZipInfo(name), "x")
    with pytest.raises(UnsafeArchiveError):
        unpack(archive, tmp_path / "out", f"a.{'tar.gz' if kind == 'tar' else 'zip'}")
    assert not any((tmp_path / "out").iterdir())


def test_nul_in_a_member_name_is_refused():
    """Neither tarfile nor zipfile writes a NUL into a name; a hand-made header can."""
    with pytest.raises(UnsafeArchiveError, match="NUL"):
        safe_member_path("ok\x00../../evil")


@pytest.mark.parametrize("kind", ["tar", "tar.gz"])
def test_unpacked_files_are_what_tarfiles_data_filter_writes(tmp_path, kind):
    """custody copies regular members itself (1 MiB at a time): same bytes, modes and times."""
    big = os.urandom(3 << 20 | 12345)  # crosses the copy buffer, not a multiple of it
    members = []
    for name, mode, data in (("bin/tool", 0o755, big), ("share/readme", 0o666, b"hi\n"),
                             ("empty", 0o600, b""), ("share/sub/x", 0o4755, b"x" * 70000)):
        info = tarfile.TarInfo(name)
        info.mode, info.mtime, info.size = mode, 1_600_000_000 + len(data), len(data)
        members.append((info, data))
    archive = tmp_path / f"a.{kind}"
    with tarfile.open(archive, "w" if kind == "tar" else "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
        tar.addfile(member("share/link", tarfile.SYMTYPE, "readme"))
        hard = member("bin/hard", tarfile.LNKTYPE, "bin/tool")
        hard.mode, hard.mtime = members[0][0].mode, members[0][0].mtime  # one inode
        tar.addfile(hard)
    unpack(archive, tmp_path / "ours", archive.name)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "theirs", filter="data")
    for info, data in members:
        ours, theirs = (tmp_path / side / info.name for side in ("ours", "theirs"))
        assert ours.read_bytes() == data == theirs.read_bytes()
        assert ours.stat().st_mode == theirs.stat().st_mode
        assert ours.stat().st_mtime == theirs.stat().st_mtime == info.mtime
    assert os.readlink(tmp_path / "ours/share/link") == "readme"
    assert os.path.samefile(tmp_path / "ours/bin/hard", tmp_path / "ours/bin/tool")


@pytest.mark.parametrize("kind", ["tar", "tar.gz", "zip"])
def test_truncated_and_corrupt_archives_are_refusals(tmp_path, kind):
    if kind == "zip":
        good = tmp_path / "good.zip"
        with zipfile.ZipFile(good, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("pkg/mod.py", "x = 1\n" * 10000)
    else:
        good = make_tar(tmp_path / f"good.{kind}", [member(f"f{i}") for i in range(50)],
                        b"y" * 3000)  # cut in the middle of a member's data
    data = good.read_bytes()
    for broken in (data[: len(data) // 2], data[:40] + bytes(len(data) - 40)):
        path = tmp_path / f"broken.{kind}"
        path.write_bytes(broken)
        with pytest.raises(CorruptArchiveError, match="truncated or corrupt") as caught:
            install_tree(tmp_path / "home", "pkg", "1.0", path, f"broken.{kind}")
        assert caught.value.exit_code == 1
        assert not (tmp_path / "home/packages/pkg").exists()
