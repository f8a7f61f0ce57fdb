"""A repository's backup, taken consistently, and its restore onto a fresh directory.

What a publisher needs to go on where it stopped is everything in the
repository directory: the served tree (its newest metadata is where the
next versions are counted from: a restored repository that signed a
version number twice would freeze every client that already holds it), the
private state (configuration, online keys, pending changes and their
files, the bucket's journal) and the fleet state (reports, tokens).

`backup` holds the writers' lock, so no transaction is half in the archive,
and writes one ``.tar.gz`` whose ``custody-backup/manifest.json`` lists every
file with its SHA-256 and the versions of the online roles; the fleet state
is read through `custody.repository.database` (SQLite or PostgreSQL alike)
into ``custody-backup/fleet.json``. `restore` unpacks into a new directory
beside the target with tarfile's data filter, checks every file against the
manifest (nothing missing, nothing added, nothing changed), loads the fleet
state, and only then renames the directory into place: a failure or a kill
leaves no half-restored repository.

The archive never holds ``offline-keys/`` (``init`` leaves the generated
offline keys there until they are moved away: they belong with their
holders, not in every backup) and is readable by its owner only. With the
fleet state on PostgreSQL, the server keeps it; `restore` keeps the
archive's copy in ``private/fleet-backup.json`` for ``custody-repo database
set`` to load into a new server, should the old one be lost too.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from custody.repository.config import RepoConfig
from custody.repository.database import Database
from custody.repository.errors import RepositoryError
from custody.repository.reports import ReportStore
from custody.repository.storage import RepoPaths, fsync_dir, locked, write_atomic
from custody.repository.tokens import rows as token_rows

FORMAT = 1
PREFIX = "custody-backup"
#: Private files that are the server's scratch, not state: rebuilt on start.
SKIPPED = ("lock", "metrics", "uploads", "reports.sqlite", "reports.sqlite-wal",
           "reports.sqlite-shm", "fleet-backup.json")  # RepoPaths.fleet_copy: restore's


@dataclass
class Summary:
    """What an archive holds."""

    files: int
    reports: int
    tokens: int
    versions: dict[str, int]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _files(paths: RepoPaths) -> list[Path]:
    """The served tree and the private state; never ``offline-keys/`` or anything else
    beside them (init leaves the offline keys there until they are moved offline)."""
    found = []
    for path in sorted(p for top in (paths.public, paths.private) for p in top.rglob("*")):
        relative = path.relative_to(paths.root)
        if relative.parts[0] == "private" and len(relative.parts) > 1 \
                and relative.parts[1] in SKIPPED:
            continue
        if any(part.startswith(".") for part in relative.parts):
            continue  # temporary files of writes in flight (there are none under the lock)
        if path.is_file() and not path.is_symlink():
            found.append(path)
    return found


def _versions(paths: RepoPaths) -> dict[str, int]:
    """The newest timestamp and snapshot versions: where the next signatures count from."""
    versions = {}
    timestamp = paths.metadata / "timestamp.json"
    if timestamp.exists():
        versions["timestamp"] = json.loads(timestamp.read_bytes())["signed"]["version"]
    snapshots = [int(p.name.split(".", 1)[0]) for p in paths.metadata.glob("*.snapshot.json")]
    if snapshots:
        versions["snapshot"] = max(snapshots)
    return versions


def _fleet(paths: RepoPaths, config: RepoConfig) -> dict[str, list]:
    database = Database.open(paths.private, config.database)
    store = ReportStore(database)
    try:
        reports = [list(row) for row in store.rows()]
        tokens = [list(row) for row in token_rows(database)] if config.database else []
    finally:
        store.close()
    return {"reports": reports, "tokens": tokens}


def backup(paths: RepoPaths, out: Path) -> Summary:
    """Write the repository at ``paths`` to ``out`` (a .tar.gz), consistent under its lock."""
    config = RepoConfig.load(paths)
    if not out.parent.is_dir():
        raise RepositoryError(f"{out.parent} is not a directory: make it first (mode 0700: "
                              "the archive holds the online key)")
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        # Readable by its owner only, whatever the umask: it holds the online key.
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        with locked(paths):
            files = _files(paths)
            fleet = _fleet(paths, config)
            versions = _versions(paths)
            manifest = {"format": FORMAT, "created": datetime.now(UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"), "versions": versions,
                "files": {str(f.relative_to(paths.root)): _sha256(f) for f in files},
                "database": "postgresql" if config.database else "sqlite"}
            with tarfile.open(partial, "w:gz", compresslevel=6) as archive:
                for name, data in (("manifest.json", manifest), ("fleet.json", fleet)):
                    blob = json.dumps(data, indent=1).encode()
                    info = tarfile.TarInfo(f"{PREFIX}/{name}")
                    info.size, info.mode = len(blob), 0o600
                    archive.addfile(info, io.BytesIO(blob))
                for path in files:
                    archive.add(path, arcname=str(path.relative_to(paths.root)))
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, out)
        fsync_dir(out.parent)
    finally:
        partial.unlink(missing_ok=True)
    return Summary(len(files), len(fleet["reports"]), len(fleet["tokens"]), versions)


def restore(archive_path: Path, directory: Path) -> Summary:
    """Unpack a backup into ``directory`` (new or empty), checked whole before it appears."""
    if directory.exists() and any(directory.iterdir()):
        raise RepositoryError(f"{directory} is not empty: restore into a new directory")
    staging = directory.parent / f".{directory.name}.restoring-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        try:
            with tarfile.open(archive_path, "r:gz") as archive:
                archive.extractall(staging, filter="data")
        except (OSError, tarfile.TarError, EOFError) as exc:
            raise RepositoryError(f"{archive_path} is not a readable custody backup: "
                                  f"{exc}") from exc
        meta = staging / PREFIX
        try:
            manifest = json.loads((meta / "manifest.json").read_text())
            fleet = json.loads((meta / "fleet.json").read_text())
        except (OSError, ValueError) as exc:
            raise RepositoryError(f"{archive_path} is not a custody backup "
                                  f"(no readable manifest)") from exc
        if manifest.get("format") != FORMAT:
            raise RepositoryError(f"{archive_path} is a backup of format "
                                  f"{manifest.get('format')!r}; this custody reads {FORMAT}")
        shutil.rmtree(meta)
        restored = RepoPaths(staging)
        present = {str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file()}
        listed = manifest["files"]
        for name in sorted(present ^ set(listed)):
            raise RepositoryError(f"{archive_path} does not match its manifest: {name} is "
                                  f"{'missing' if name in listed else 'not listed'}")
        for name, digest in listed.items():
            if _sha256(staging / name) != digest:
                raise RepositoryError(f"{archive_path} does not match its manifest: {name} "
                                      "was changed")
        config = RepoConfig.load(restored)
        if config.database:  # the server keeps its own state; this copy is for a lost one
            write_atomic(restored.fleet_copy, json.dumps(fleet).encode(), 0o600)
        else:  # SQLite comes back from here
            store = ReportStore(Database.sqlite(restored.private / "reports.sqlite"))
            try:
                store.restore([tuple(row) for row in fleet["reports"]])
            finally:
                store.close()
        if directory.exists():
            directory.rmdir()
        os.replace(staging, directory)
        fsync_dir(directory.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Summary(len(manifest["files"]), len(fleet["reports"]), len(fleet["tokens"]),
                   manifest["versions"])
