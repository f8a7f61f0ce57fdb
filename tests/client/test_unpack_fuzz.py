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

from client.errors import InstallError
from client.unpack import UnpackLimits, unpack

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
