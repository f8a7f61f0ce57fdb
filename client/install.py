"""Installing verified artifacts atomically, keeping the previous version.

An install unpacks into a staging directory next to its destination, fsyncs
every file, renames the staging directory to ``packages/<name>/<version>``,
then switches the ``current`` symlink with one ``rename`` and writes
``state.json`` atomically. A crash at any point leaves the previous version
current and usable; leftovers of an interrupted install (``.staging-*``) are
removed by the next install. A lock keeps two installers apart.

Archives are unpacked by `custody.client.unpack`, which refuses what could harm the
host; any other artifact is installed as the single file it is.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from custody.client.errors import (
    BusyError,
    InstallError,
)
from custody.client.unpack import DEFAULT_LIMITS, UnpackLimits, archive_kind, unpack
from custody.intoto.files import LockTimeout, file_lock


@contextlib.contextmanager
def home_lock(home: Path, timeout: float = 300.0) -> Iterator[None]:
    """One installer at a time per home (``flock``; released if the holder dies)."""
    try:
        with file_lock(home / "lock", timeout):
            yield
    except LockTimeout as exc:
        raise BusyError(f"installer busy: {exc}") from exc


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def switch_current(package_dir: Path, version: str) -> None:
    """Point ``current`` at ``version`` with one atomic rename of a new symlink."""
    tmp = package_dir / f".current-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(version, tmp)
    os.replace(tmp, package_dir / "current")
    fd = os.open(package_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def install_tree(home: Path, name: str, version: str, artifact: Path, filename: str,
                 limits: UnpackLimits = DEFAULT_LIMITS) -> Path:
    """Stage, fsync and rename the unpacked artifact into ``packages/<name>/<version>``."""
    package_dir = home / "packages" / name
    package_dir.mkdir(parents=True, exist_ok=True)
    for leftover in package_dir.glob(".staging-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    final = package_dir / version
    if final.exists():
        return final  # already unpacked by an earlier install of the same version
    staging = package_dir / f".staging-{version}-{os.getpid()}"
    try:
        unpack(artifact, staging, filename, limits)
        _fsync_tree(staging)
        os.rename(staging, final)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            package_dir.rmdir()  # a first install leaves no empty directory behind
        if isinstance(exc, OSError):
            raise InstallError(f"cannot install {name} {version}: {exc.strerror or exc}") \
                from exc
        raise
    return final


def prune(home: Path, name: str, keep: set[str]) -> None:
    """Remove installed versions of ``name`` other than ``keep``, and their staging leftovers."""
    package_dir = home / "packages" / name
    if not package_dir.is_dir():
        return
    for child in package_dir.iterdir():
        if child.is_dir() and not child.is_symlink() and child.name not in keep \
                and (not child.name.startswith(".") or child.name.startswith(".staging-")):
            shutil.rmtree(child, ignore_errors=True)


def disk_usage(path: Path) -> int:
    """Bytes a file or a tree takes (links counted as links, never followed)."""
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() or p.is_symlink())


def prune_cache(cache: Path, kept: dict[str, dict[str, dict[str, Any]]]) -> tuple[int, int]:
    """Drop every cached download that no kept version needs; ``(entries, bytes)`` freed.

    ``kept`` maps each installed package to the versions kept on disk and the
    install record of each (``target``, ``sha256``, ``layout``). What stays:
    those versions' artifacts, their links (filed under the artifact's hash)
    and the layouts that verified them; the cache then never outgrows
    ``packages/``. Anything dropped is downloaded again, through TUF, if a
    ``verify`` needs it.
    """
    artifacts = {PurePosixPath(info.get("target", "")).parent.as_posix()
                 for versions in kept.values() for info in versions.values()}
    hashes = {info.get("sha256") for versions in kept.values() for info in versions.values()}
    layouts = {info.get("layout") for versions in kept.values() for info in versions.values()}
    doomed: list[Path] = []
    for version_dir in cache.glob("packages/*/*"):
        rel = version_dir.relative_to(cache).as_posix()
        if version_dir.is_dir() and rel not in artifacts:
            doomed.append(version_dir)
    for package_dir in cache.glob("packages/*"):
        if package_dir.is_dir() and package_dir.name not in kept:
            doomed.append(package_dir)
    doomed += [d for d in cache.glob("in-toto/links/*") if d.name not in hashes]
    doomed += [f for f in cache.glob("in-toto/layouts/*")
               if f.relative_to(cache).as_posix() not in layouts]
    # A download (or a patch's rebuild) killed before its rename leaves its temporary
    # file (updater's _stream_target, _rebuild); one untouched for an hour belongs to
    # no running download.
    stale = time.time() - 3600
    doomed += [f for pattern in (".download-*", ".patched-*") for f in cache.rglob(pattern)
               if f.stat().st_mtime < stale]
    freed = 0
    for path in dict.fromkeys(doomed):
        if not path.exists():
            continue
        freed += disk_usage(path)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return len(doomed), freed


def _digest(stream: Any) -> str:
    """SHA-256 of a binary stream, read in blocks (artifacts may be large)."""
    import hashlib

    return hashlib.file_digest(stream, "sha256").hexdigest()


def _archive_files(archive: Path, filename: str) -> dict[str, str]:
    """``{relative path: sha256}`` of the regular files the artifact installs."""
    kind = archive_kind(filename)
    files: dict[str, str] = {}
    if kind == "tar":
        with tarfile.open(archive) as tar:
            for member in tar:
                if member.isfile() or member.islnk():  # a hard link installs a file too
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    # where the unpacker's data filter put it: './x', '/x' and 'a/../x'
                    # are unpacked as 'x' (client.unpack)
                    files[os.path.normpath(member.name.lstrip("/"))] = _digest(extracted)
    elif kind == "zip":
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    with zf.open(info) as member_file:
                        files[str(PurePosixPath(info.filename))] = _digest(member_file)
    else:
        with open(archive, "rb") as f:
            files[filename] = _digest(f)
    return files


def compare_tree(archive: Path, filename: str, installed: Path) -> list[str]:
    """What differs between an installed version and the verified artifact it came from."""
    from custody.intoto.artifacts import hash_file  # only this check needs the recorder's hashing

    expected = _archive_files(archive, filename)
    found = {
        str(path.relative_to(installed).as_posix()): hash_file(str(path))
        for path in installed.rglob("*") if path.is_file() and not path.is_symlink()
    }
    problems = [f"{p} was modified" for p in sorted(expected) if p in found
                and found[p] != expected[p]]
    problems += [f"{p} is missing" for p in sorted(set(expected) - set(found))]
    problems += [f"{p} was added" for p in sorted(set(found) - set(expected))]
    return problems
