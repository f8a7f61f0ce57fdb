"""Unpacking verified artifacts, treating the archive as hostile all the same.

in-toto proves who built an archive, not that its contents are harmless to
unpack: a build step can be made to produce a tarball whose members climb
out of their directory, name devices, or expand a few megabytes into the
whole disk. So, whatever signed it, an archive is refused when a member

- of a tar is refused by ``tarfile``'s ``data`` filter (PEP 706): a path or
  a link that would end outside the directory, a link to an absolute path,
  a device or a fifo. What the filter accepts is unpacked as it would
  unpack it, ``./``-prefixed members (``tar -czf x.tgz -C dir .``) and
  leading slashes stripped included: the standard library's rules, not a
  second set to drift from them (with one check of custody's own on
  symlinks, where the filter of this Python lets one out: `_inside`);
- of a zip has an absolute path or ``..`` in its name, or is a symlink;
- of either has a backslash, a drive letter or a NUL in its name or link
  target (a traversal on some host, if not this one: refused on top of the
  filter);
- would take the unpacked total over ``max_bytes`` or over ``max_ratio``
  times the archive's own size (checked member by member, before each is
  written, and while a zip member is written, whatever its header says);

and a truncated or corrupt archive is a refusal too. The caller unpacks
into a staging directory and deletes it on any refusal.
"""

from __future__ import annotations

import errno
import io
import os
import re
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, NoReturn

from custody.client.errors import CorruptArchiveError, UnsafeArchiveError

TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")
_DRIVE = re.compile(r"^[A-Za-z]:")
CHUNK = 1 << 20
WRITEBACK = 32 << 20  # see _extract_file


@dataclass(frozen=True)
class UnpackLimits:
    """Bounds on what one artifact may unpack to (``ClientConfig`` carries them)."""

    max_bytes: int = 16 << 30  # a large agent with its runtime fits; a disk does not fill
    max_ratio: float = 200.0  # source code compresses 3-10x; zeros 1000x
    max_members: int = 200_000

    def bound(self, archive_size: int) -> int:
        return int(min(self.max_bytes, max(archive_size, 1 << 20) * self.max_ratio))


DEFAULT_LIMITS = UnpackLimits()


def archive_kind(filename: str) -> str:
    """``"tar"``, ``"zip"`` or ``"file"``: how an artifact is unpacked, by its name."""
    lower = filename.lower()
    if lower.endswith(TAR_SUFFIXES):
        return "tar"
    return "zip" if lower.endswith(".zip") else "file"


def _portable(name: str, what: str = "path") -> None:
    """Refuse a name that would be a traversal on some host (see the module docstring)."""
    if "\\" in name or "\x00" in name or _DRIVE.match(name):
        raise UnsafeArchiveError(f"archive member {what} {name!r} has a backslash, a drive "
                                 "letter or a NUL; refused")


def safe_member_path(name: str, what: str = "path") -> PurePosixPath:
    """The (zip) member's relative path, or a refusal naming it."""
    _portable(name, what)
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or path == PurePosixPath("."):
        raise UnsafeArchiveError(
            f"archive member {what} {name!r} would leave the install directory")
    return path


def _inside(name: str, target: str) -> bool:
    """Whether a symlink member ``name`` pointing at ``target`` stays in the tree.

    Checked where tarfile creates the link, without the trailing slash: the
    ``data`` filter checks the target from the wrong directory for a member
    named with one (on Python 3.11.7 a member ``a/`` -> ``..`` passes it and
    becomes a link ``a`` to the install directory's parent; found by
    tests/client/test_unpack_fuzz.py). CPython's later tarfile security
    fixes changed these checks; this one holds on every version.
    """
    if os.path.isabs(target):
        return False
    link_dir = os.path.dirname(name.rstrip("/"))
    resolved = os.path.normpath(os.path.join(link_dir, target))
    return not (resolved == ".." or resolved.startswith("../") or os.path.isabs(resolved))


class _Budget:
    """The bytes an archive may still unpack to."""

    def __init__(self, archive: Path, limits: UnpackLimits) -> None:
        self.name = archive.name
        self.limits = limits
        self.allowed = limits.bound(archive.stat().st_size)
        self.left = self.allowed
        self.members = 0

    def spend(self, size: int, member: str) -> None:
        self.members += 1
        self.left -= size
        if self.left < 0:
            raise UnsafeArchiveError(
                f"{self.name} unpacks to more than {self.allowed >> 20} MiB (at most "
                f"{self.limits.max_bytes >> 20} MiB and {self.limits.max_ratio:g} times the "
                f"archive's size; at member {member!r}); refused")
        if self.members > self.limits.max_members:
            raise UnsafeArchiveError(
                f"{self.name} holds more than {self.limits.max_members} members; refused")


def unpack(archive: Path, destination: Path, filename: str,
           limits: UnpackLimits = DEFAULT_LIMITS) -> None:
    """Unpack (or copy) the artifact into ``destination``, refusing unsafe members."""
    destination.mkdir(parents=True)
    kind = archive_kind(filename)
    if kind == "tar":
        _untar(archive, destination, _Budget(archive, limits))
    elif kind == "zip":
        _unzip(archive, destination, _Budget(archive, limits))
    else:
        shutil.copyfile(archive, destination / filename)
        os.chmod(destination / filename, 0o755 if os.access(archive, os.X_OK) else 0o644)


def _untar(archive: Path, destination: Path, budget: _Budget) -> None:
    buffer = memoryview(bytearray(CHUNK))
    try:
        with tarfile.open(archive) as tar:
            for member in tar:  # one pass: each member checked, then written
                _portable(member.name)
                if member.issym() or member.islnk():
                    _portable(member.linkname, "link target")
                if member.isdev() or member.isfifo():
                    raise UnsafeArchiveError(
                        f"archive member {member.name!r} is a device or fifo")
                filtered = _filtered(member, destination)
                if member.issym() and not _inside(filtered.name, member.linkname):
                    raise UnsafeArchiveError(
                        f"symlink {member.name!r} -> {member.linkname!r} would leave the "
                        "install directory; refused")
                budget.spend(member.size if member.isfile() else 0, member.name)
                if filtered.isreg() and not member.issparse():
                    _extract_file(tar, member, filtered, destination, buffer)
                else:
                    tar.extract(member, destination, filter="data")
    except tarfile.FilterError as exc:  # a later check of the filter's, on extraction
        raise UnsafeArchiveError(f"archive {archive.name} is unsafe: {exc}") from exc
    except OSError as exc:
        _refuse_or_raise(archive, exc)
    except (KeyError, RuntimeError) as exc:  # a hard link to nothing; a symlink loop
        raise UnsafeArchiveError(f"{archive.name} has a link member that cannot be "
                                 f"resolved ({_first_line(exc)}); refused") from exc
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise CorruptArchiveError(f"{archive.name} is truncated or corrupt: "
                                  f"{_first_line(exc)}") from exc


def _filtered(member: tarfile.TarInfo, destination: Path) -> tarfile.TarInfo:
    """The member as the ``data`` filter lets it through, or a refusal in custody's words."""
    try:
        return tarfile.data_filter(member, str(destination))
    except (tarfile.AbsoluteLinkError, tarfile.LinkOutsideDestinationError) as exc:
        kind = "symlink" if member.issym() else "hard link"
        raise UnsafeArchiveError(f"{kind} {member.name!r} -> {member.linkname!r} would leave "
                                 f"the install directory; refused") from exc
    except tarfile.FilterError as exc:
        raise UnsafeArchiveError(f"archive member path {member.name!r} would leave the "
                                 f"install directory ({_first_line(exc)}); refused") from exc


def _extract_file(tar: tarfile.TarFile, member: tarfile.TarInfo, filtered: tarfile.TarInfo,
                  destination: Path, buffer: memoryview) -> None:
    """Write one regular member as ``tar.extract(filter="data")`` would, in 1 MiB copies.

    tarfile copies a member's data 16 KiB at a time (a fresh bytes object
    each), which made unpacking the slowest part of installing a large
    artifact. The member passes the very same ``data`` filter first; its
    bytes are then read into one reused buffer, straight from the archive
    file at the member's offset when the archive is not compressed. Mode and
    modification time are set as tarfile sets them; owners, as the filter
    says, are not.

    Every `WRITEBACK` bytes the kernel is asked to start writing what was
    written so far (``POSIX_FADV_DONTNEED`` starts write-back without waiting
    for it): the install fsyncs the tree before it goes live, and a gigabyte
    left dirty until then made that fsync wait for all of it at once. (Pages
    already written back leave the page cache; a large member is rarely read
    again at once.)
    """
    # The target and its parents as tarfile's _extract_member makes them (so that what
    # one refuses the other does: 'a/../b' with no 'a' yet fails in both).
    target = os.path.join(destination, filtered.name).rstrip("/")
    upper = os.path.dirname(target)
    if upper and not os.path.exists(upper):
        os.makedirs(upper)
    read: Callable[[memoryview, int], int]
    if isinstance(tar.fileobj, io.BufferedReader):  # a plain tar: read where the data is
        fd, start = tar.fileobj.fileno(), member.offset_data

        def read(into: memoryview, done: int) -> int:
            return os.preadv(fd, [into], start + done)
    else:
        source = tar.extractfile(member)
        assert isinstance(source, io.BufferedReader)  # tarfile's ExFileObject

        def read(into: memoryview, done: int) -> int:
            return source.readinto(into)
    done = flushed = 0
    with open(target, "wb", buffering=0) as out:
        while done < filtered.size:
            n = read(buffer[:min(filtered.size - done, len(buffer))], done)
            if not n:
                raise tarfile.ReadError("unexpected end of data")
            out.write(buffer[:n])
            done += n
            if done - flushed >= WRITEBACK and hasattr(os, "posix_fadvise"):
                os.posix_fadvise(out.fileno(), flushed, done - flushed, os.POSIX_FADV_DONTNEED)
                flushed = done
    if filtered.mode is not None:
        os.chmod(target, filtered.mode)
    if filtered.mtime is not None:
        os.utime(target, (filtered.mtime, filtered.mtime))


def _first_line(exc: BaseException) -> str:
    """tarfile's messages run over several lines; a refusal is one sentence."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(":")


#: Failures of the disk, not of the archive: reported as local failures by the caller.
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES, errno.EPERM}


def _refuse_or_raise(archive: Path, exc: OSError) -> NoReturn:
    """An OSError while unpacking: the disk's (re-raised) or the archive's (refused)."""
    if exc.errno in _DISK_ERRORS:
        raise exc
    if exc.errno is None:  # gzip.BadGzipFile and friends
        raise CorruptArchiveError(f"{archive.name} is truncated or corrupt: "
                                  f"{_first_line(exc)}") from exc
    raise UnsafeArchiveError(f"{archive.name} has members that conflict ({exc.strerror}: "
                             f"{Path(exc.filename or '').name!r}); refused") from exc


def _copy_counted(source: IO[bytes], target: IO[bytes], budget: _Budget, name: str) -> None:
    while chunk := source.read(CHUNK):
        budget.spend(len(chunk), name)
        budget.members -= 1  # one member, many chunks
        target.write(chunk)
    budget.members += 1


def _unzip(archive: Path, destination: Path, budget: _Budget) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:  # refuse before writing anything
                safe_member_path(info.filename)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise UnsafeArchiveError(
                        f"zip member {info.filename!r} is a symlink; refused")
            for info in infos:
                target = destination / info.filename
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as source, open(target, "xb") as out:
                    _copy_counted(source, out, budget, info.filename)
                mode = (info.external_attr >> 16) & 0o777
                os.chmod(target, 0o755 if mode & 0o111 else 0o644)
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as exc:
        raise CorruptArchiveError(f"{archive.name} is truncated or corrupt: "
                                  f"{_first_line(exc)}") from exc
    except OSError as exc:
        _refuse_or_raise(archive, exc)
