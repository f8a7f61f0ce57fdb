"""The repository on disk: where each file lives, atomic writes, the writers' lock.

::

    DIR/public/metadata/1.root.json      trust anchor (and N.root.json, root.json)
    DIR/public/metadata/N.<role>.json    versioned metadata (consistent snapshots)
    DIR/public/metadata/timestamp.json   the only unversioned file but root.json
    DIR/public/targets/<dir>/<sha256>.<name>   hash-prefixed target files
    DIR/private/config.json              bins, expiry periods, online keys
    DIR/private/keys/                    online private keys (mode 0600)
    DIR/private/tokens.json              API tokens, hashed
    DIR/private/lock                     writers' lock
    DIR/private/fleet-backup.json        a restored backup's tokens and reports

Everything under ``public/`` is what any static server or CDN serves. Every
file is written to a temporary name, fsynced and renamed, and versioned files
are never rewritten, so a reader (or a crash) sees a whole old state or a whole
new one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from custody.intoto.files import LockTimeout, copy_atomic, file_lock, fsync_dir, write_atomic
from custody.repository.errors import LockedError

__all__ = ["IMMUTABLE", "REVALIDATE", "RepoPaths", "cache_control", "copy_atomic", "fsync_dir",
           "locked", "write_atomic", "write_order", "write_order_of"]

#: Cache-Control of what never changes (version- and hash-prefixed names) and of the rest.
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


@dataclass(frozen=True)
class RepoPaths:
    """Names of everything in a repository directory."""

    root: Path

    @property
    def public(self) -> Path:
        return self.root / "public"

    @property
    def metadata(self) -> Path:
        return self.public / "metadata"

    @property
    def targets(self) -> Path:
        return self.public / "targets"

    @property
    def private(self) -> Path:
        return self.root / "private"

    @property
    def config(self) -> Path:
        return self.private / "config.json"

    @property
    def keys(self) -> Path:
        return self.private / "keys"

    @property
    def tokens(self) -> Path:
        return self.private / "tokens.json"

    @property
    def lock(self) -> Path:
        return self.private / "lock"

    @property
    def fleet_copy(self) -> Path:
        """A restored backup's tokens and reports, kept for a new database server
        (`custody.repository.backup`)."""
        return self.private / "fleet-backup.json"

    def newest_root(self) -> Path | None:
        """The newest ``N.root.json`` here (``root.json`` is only a copy of it), if any."""
        versions = [int(p.name.split(".")[0]) for p in self.metadata.glob("*.root.json")
                    if p.name.split(".")[0].isdigit()]
        return self.metadata_file("root", max(versions)) if versions else None

    def metadata_file(self, role: str, version: int | None = None) -> Path:
        name = f"{role}.json" if version is None else f"{version}.{role}.json"
        return self.metadata / name

    def target_file(self, target_path: str, sha256: str) -> Path:
        """Where a target's bytes live: ``<dir>/<sha256>.<basename>`` (consistent snapshot)."""
        folder, _, name = target_path.rpartition("/")
        return self.targets / folder / f"{sha256}.{name}"


@contextlib.contextmanager
def locked(paths: RepoPaths, timeout: float = 120.0) -> Iterator[None]:
    """Hold the writers' lock (``flock``): one writer at a time, across processes.

    The lock dies with its holder, so a writer killed mid-publish never
    leaves the repository locked.
    """
    try:
        with file_lock(paths.lock, timeout):
            yield
    except LockTimeout as exc:
        raise LockedError(str(exc)) from exc


def cache_control(relative: str) -> str:
    """The ``Cache-Control`` of a file of the served tree (``metadata/...``, ``targets/...``),
    wherever it is served from: immutable for hash- and version-prefixed names, revalidate
    for the rest (``timestamp.json``, ``root.json``)."""
    name = relative.rsplit("/", 1)[-1]
    if relative.startswith("targets/") or name[:1].isdigit():
        return IMMUTABLE
    return REVALIDATE


def write_order(role: str) -> tuple[int, str]:
    """Where a role's file comes in a commit: delegated roles, targets, root, snapshot,
    and timestamp last (a reader never sees a timestamp naming a file not yet written)."""
    rank = {"targets": 1, "root": 2, "snapshot": 3, "timestamp": 4}
    return rank.get(role, 0), role


def write_order_of(filename: str) -> tuple[int, str, float]:
    """The commit's order for a metadata file name (``N.role.json`` or ``role.json``)."""
    stem = filename[: -len(".json")]
    version, _, role = stem.partition(".")
    if not version.isdigit():
        return (*write_order(stem), float("inf"))  # root.json after N.root.json
    return (*write_order(role), float(version))
