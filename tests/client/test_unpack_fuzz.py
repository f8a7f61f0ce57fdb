"""A corpus of hostile archives, generated: unpacking writes inside its directory or refuses.

Hypothesis builds tar and zip archives from member names made of path pieces
that attackers use (``..``, ``/``, ``\\``, drive letters), of every tar member
type, with symlink and hard-link targets from the same pieces, and random
truncations. Each must unpack with every file inside the destination, or be
refused with the unpacker's one-sentence errors; never another exception,
never a byte outside. ``make fuzz`` runs more (``CUSTODY_FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from custody.client.errors import InstallError
from custody.client.unpack import UnpackLimits, unpack

EXAMPLES = int(os.environ.get("CUSTODY_FUZZ_EXAMPLES", "150"))
PIECES = st.sampled_from(["a", "b", "..", ".", "", "C:", "\\", "..\\x", "/", "~", "a b"])
NAMES = st.lists(PIECES, min_size=1, max_size=4).map("/".join)
TYPES = st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
                         tarfile.CHRTYPE, tarfile.FIFOTYPE])
MEMBERS = st.lists(st.tuples(NAMES, TYPES, NAMES, st.binary(max_size=64)), min_size=1,
                   max_size=5)
LIMITS = UnpackLimits(max_bytes=1 << 16, max_ratio=50.0, max_members=50)


def build_tar(members, mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode, format=tarfile.PAX_FORMAT) as tar:
        for name, kind, link, data in members:
            info = tarfile.TarInfo(name or "x")
            info.type = kind
            info.linkname = link
            if kind == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buffer.getvalue()


def build_zip(members) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, kind, _, data in members:
            info = zipfile.ZipInfo(name or "x")
            if kind == tarfile.SYMTYPE:
                info.external_attr = 0o120777 << 16
            with contextlib.suppress(ValueError, OSError):  # names zipfile itself refuses
                zf.writestr(info, data)
    return buffer.getvalue()


def check(archive: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        outside = root / "outside"
        outside.mkdir()
        path = root / f"a{suffix}"
        path.write_bytes(archive)
        destination = outside / "dest"
        try:
            unpack(path, destination, path.name, LIMITS)
        except InstallError as exc:  # unsafe, corrupt, or over the limits
            assert str(exc) and "\n" not in str(exc)
        found = [p for p in root.rglob("*") if p != path]
        for item in found:
            assert item in (outside, destination) or item.is_relative_to(destination), \
                f"{item} is outside the destination"
            if item.is_symlink():
                # Lexically inside, link by link (a chain of such links stays inside; a
                # loop inside is harmless).
                target = Path(os.path.normpath(item.parent / os.readlink(item)))
                assert target.is_relative_to(destination), \
                    f"{item} -> {os.readlink(item)} points out"
        shutil.rmtree(root, ignore_errors=True)


SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
pytestmark = pytest.mark.filterwarnings("ignore:Duplicate name")  # zipfile, on purpose


def build_plain_tar(members) -> bytes:
    """Uncompressed: the unpacker reads members' data at their offsets (another code path)."""
    return build_tar(members, "w")


@pytest.mark.parametrize("build,suffix", [(build_tar, ".tar.gz"), (build_plain_tar, ".tar"),
                                          (build_zip, ".zip")])
@SETTINGS
@given(members=MEMBERS, cut=st.integers(min_value=0, max_value=100))
def test_hostile_archives(build, suffix, members, cut):
    note(repr(members))
    data = build(members)
    check(data, suffix)
    if cut:  # the same archive, truncated
        check(data[: max(1, len(data) * cut // 101)], suffix)


# -- the same answers as tarfile's data filter (issue 21, item 8) ---------------------------
# Names from POSIX pieces only (a backslash or a drive letter is refused on top of the
# filter, on purpose), optionally ./-prefixed as GNU tar writes them with ``-C dir .``,
# which also writes the directory itself as the member ``.`` (or ``./``).
POSIX_PIECES = st.sampled_from(["a", "b", "..", ".", "", "/", "a b"])
POSIX_NAMES = st.tuples(st.sampled_from(["", "./", "/"]),
                        st.lists(POSIX_PIECES, min_size=1, max_size=4).map("/".join)
                        ).map("".join)
TAR_MEMBERS = st.tuples(
    st.lists(st.sampled_from([".", "./"]), max_size=1),  # GNU tar's own first member
    st.lists(st.tuples(POSIX_NAMES, TYPES, POSIX_NAMES, st.binary(max_size=64)), min_size=1,
             max_size=5),
).map(lambda pair: [(name, tarfile.DIRTYPE, "", b"") for name in pair[0]] + pair[1])


def _tree(root: Path) -> dict[str, tuple]:
    """What a person finds unpacked: each path's kind, and a file's bytes and mode, a
    link's target (directories' times differ by design: tarfile sets them last)."""
    found: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                found[rel] = ("dir",)
            else:
                found[rel] = ("file", path.read_bytes(), path.stat().st_mode)
    return found


def _theirs(archive: Path, destination: Path) -> dict[str, tuple] | None:
    destination.mkdir()  # as custody's staging directory is made first
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(destination, filter="data")
    except (tarfile.TarError, OSError, KeyError, RuntimeError):
        return None
    return _tree(destination)


def _ours(archive: Path, destination: Path) -> dict[str, tuple] | None:
    try:
        unpack(archive, destination, archive.name)
    except InstallError as exc:
        assert str(exc) and "\n" not in str(exc)
        return None
    return _tree(destination)


@pytest.mark.parametrize("mode,suffix", [("w:gz", ".tar.gz"), ("w", ".tar")])
@SETTINGS
@given(members=TAR_MEMBERS)
def test_tar_answers_are_tarfiles_data_filter(mode, suffix, members):
    """custody unpacks exactly what ``extractall(filter="data")`` unpacks, to the same tree,
    and refuses exactly what it refuses."""
    note(repr(members))
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp, f"a{suffix}")
        archive.write_bytes(build_tar(members, mode))
        theirs = _theirs(archive, Path(tmp, "theirs"))
        ours = _ours(archive, Path(tmp, "ours"))
        if theirs is not None and _escapes(Path(tmp, "theirs")):
            # the filter let a link out: custody refuses it (client.unpack._inside)
            assert ours is None
        else:
            assert ours == theirs


def _escapes(root: Path) -> bool:
    links = [p for p in root.rglob("*") if p.is_symlink()]
    return any(not Path(os.path.normpath(p.parent / os.readlink(p))).is_relative_to(root)
               for p in links)
