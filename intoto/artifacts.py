"""Record artifacts: walk paths and hash files, as the in-toto reference does.

Which files get recorded, and under which names, follows in-toto 3.1.0's file
resolver exactly, because a link recorded here must be comparable with one
recorded by ``in-toto-run`` on another rebuilder (k-of-n thresholds compare
their artifacts byte for byte):

- paths are normalised (``./a`` becomes ``a``); directories are walked;
- exclude patterns are gitignore-style ("gitwildmatch") and, when none are
  given, default to ``*.link*``, ``.git``, ``*.pyc``, ``*~``;
- ``base_path`` makes names relative to it (without changing the process's
  working directory, unlike the reference);
- ``lstrip_paths`` removes the first matching prefix, and refuses a
  stripping that makes two names collide;
- broken symlinks are skipped; symlinked directories are followed when
  asked (``in-toto-run`` always asks).

Files are hashed once, streaming, with `hashlib.file_digest` in large blocks;
many small files are hashed by a few threads, since hashlib releases the GIL.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO

from pathspec import GitIgnoreSpec

from intoto.errors import RecordError
from intoto.models import ArtifactHashes

DEFAULT_EXCLUDES = ("*.link*", ".git", "*.pyc", "*~")
HASH_ALGORITHM = "sha256"
_BLOCK = 1 << 20


def hash_file(path: str, normalize_line_endings: bool = False) -> str:
    """SHA-256 hex digest of a file, read once in large blocks."""
    with open(path, "rb") as f:
        if not normalize_line_endings:
            return hashlib.file_digest(f, HASH_ALGORITHM).hexdigest()
        return _hash_normalized(f)


def _hash_normalized(f: BinaryIO) -> str:
    """Hash with CRLF and CR turned into LF, a CR at a block's end held back."""
    digest = hashlib.new(HASH_ALGORITHM)
    carry = b""
    while True:
        block = f.read(_BLOCK)
        if not block:
            break
        data = carry + block
        carry = b""
        if data.endswith(b"\r"):
            data, carry = data[:-1], b"\r"
        digest.update(data.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))
    if carry:
        digest.update(b"\n")
    return digest.hexdigest()


@dataclass
class ArtifactRecorder:
    """How to turn a list of paths into ``{name: {"sha256": digest}}``."""

    exclude_patterns: Sequence[str] = ()
    base_path: str | None = None
    follow_symlink_dirs: bool = False
    normalize_line_endings: bool = False
    lstrip_paths: Sequence[str] = ()
    threads: int = field(default_factory=lambda: min(8, (os.cpu_count() or 1) * 2))

    def __post_init__(self) -> None:
        for a, b in itertools.combinations(self.lstrip_paths, 2):
            if a.startswith(b) or b.startswith(a):
                raise RecordError(f"lstrip paths {a!r} and {b!r} overlap; each must be "
                                  "distinct so that stripped names stay unique")
        patterns = list(self.exclude_patterns) or list(DEFAULT_EXCLUDES)
        self._exclude = GitIgnoreSpec.from_lines(patterns).match_file

    def _fs(self, name: str) -> str:
        return os.path.join(self.base_path, name) if self.base_path else name

    def files(self, paths: Iterable[str]) -> list[tuple[str, str]]:
        """``(recorded name, filesystem path)`` of every file the paths select."""
        found: list[tuple[str, str]] = []
        exclude = self._exclude
        for raw in paths:
            path = os.path.normpath(raw)
            if exclude(path):
                continue
            fs_path = self._fs(path)
            if os.path.isfile(fs_path):
                found.append((path, fs_path))
            elif os.path.isdir(fs_path):
                self._walk(path, fs_path, found)
        return found

    def _walk(self, path: str, fs_path: str, found: list[tuple[str, str]]) -> None:
        exclude = self._exclude
        join, normpath, isfile = os.path.join, os.path.normpath, os.path.isfile
        cut = len(fs_path)
        for dirpath, dirs, names in os.walk(fs_path, followlinks=self.follow_symlink_dirs):
            base = path + dirpath[cut:] if dirpath != fs_path else path
            dirs[:] = [d for d in dirs if not exclude(normpath(join(base, d)))]
            for name in names:
                rel = normpath(join(base, name))
                if exclude(rel):
                    continue
                full = join(dirpath, name)
                if isfile(full):  # False for a broken symlink, as in the reference
                    found.append((rel, full))

    def _name(self, path: str, seen: dict[str, object]) -> str:
        path = path.replace("\\", "/")
        for prefix in self.lstrip_paths:
            if path.startswith(prefix):
                path = path[len(prefix):]
                break
        if self.lstrip_paths and path in seen:
            raise RecordError(f"stripping {', '.join(self.lstrip_paths)} makes two artifacts "
                              f"share the name {path!r}")
        return path

    def record(self, paths: Iterable[str]) -> ArtifactHashes:
        """Hash every file the paths select; names as the reference records them."""
        files = self.files(paths)
        norm = self.normalize_line_endings

        def digest(item: tuple[str, str]) -> str:
            try:
                return hash_file(item[1], norm)
            except OSError as exc:
                raise RecordError(f"cannot read artifact {item[0]}: {exc.strerror}") from exc

        if len(files) > 64 and self.threads > 1:
            with ThreadPoolExecutor(self.threads) as pool:
                digests = list(pool.map(digest, files, chunksize=64))
        else:
            digests = [digest(f) for f in files]
        result: ArtifactHashes = {}
        for (name, _), hexdigest in zip(files, digests, strict=True):
            result[self._name(name, result)] = {HASH_ALGORITHM: hexdigest}
        return result
