"""Crash-safe file writing and a cross-process lock, shared by every package.

They live here because ``intoto`` sits at the bottom of the dependency graph
(DESIGN.md): the repository, the client and link recording all need files
that are either wholly old or wholly new after a crash, and writers that
never interleave.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path


class LockTimeout(Exception):
    """Another process held the lock for longer than the caller would wait."""


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_from_tmp(path: Path, fill: object, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            fill(f)  # type: ignore[operator]
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename."""
    _replace_from_tmp(Path(path), lambda f: f.write(data), mode)


def copy_atomic(source: Path, path: Path, mode: int = 0o644) -> None:
    """Copy a (possibly large) file into place the same way, streaming."""
    def fill(f: object) -> None:
        with open(source, "rb") as src:
            shutil.copyfileobj(src, f, 1 << 20)  # type: ignore[arg-type]

    _replace_from_tmp(Path(path), fill, mode)


@contextlib.contextmanager
def file_lock(path: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path``; it dies with its holder, never stale."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockTimeout(
                        f"another process has held {path} for over {timeout:.0f} seconds"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)
