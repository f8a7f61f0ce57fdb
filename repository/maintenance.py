"""Keeping a repository alive: re-signing online roles, reporting roles, collecting garbage.

Each function runs on a `custody.repository.repo.CustodyRepository`; ``bump_online``
and ``gc`` inside its transaction (the writers' lock), ``status`` anywhere.
They are operations on the transaction, as publishing or rotating keys are,
and sit beside them above it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

from custody.repository.config import RepoConfig
from custody.repository.errors import BucketError
from custody.repository.repo import LAYOUTS, RELEASES, TOP_LEVEL, CustodyRepository
from custody.repository.signatures import signed_by
from custody.repository.storage import RepoPaths


def bump_online(repo: CustodyRepository, force: bool = False) -> list[str]:
    """Re-sign online roles that expire within the configured margin (or all, forced)."""
    margin = timedelta(hours=repo.config.bump_margin_hours)
    due = []
    for role in [RELEASES, *repo.bin_roles(), Snapshot.type, Timestamp.type]:
        md = repo.staged(role) or repo.published(role)
        if md is None:
            continue
        if force or md.signed.expires - repo.now() < margin or repo.staged(role) is not None:
            due.append(role)
    targets_due = [r for r in due if r not in (Snapshot.type, Timestamp.type)]
    for role in targets_due:
        with repo.edit_targets(role):
            pass
    snapshot_needed = bool(targets_due) or Snapshot.type in due
    if snapshot_needed:
        repo.do_snapshot(force=Snapshot.type in due)
    if snapshot_needed or Timestamp.type in due:
        repo.do_timestamp(force=True)
    return due

def status(repo: CustodyRepository) -> list[dict]:
    """Each role: version, expiry, keys, threshold and valid signatures."""
    rows = []
    for role in [*TOP_LEVEL, LAYOUTS, RELEASES, *repo.bin_roles()]:
        md = repo.published(role)
        if md is None:
            continue
        if role == Root.type:
            keys = [md.signed.get_key(k) for k in md.signed.roles[role].keyids]  # type: ignore[attr-defined]
            threshold = md.signed.roles[role].threshold  # type: ignore[attr-defined]
        else:
            keys, threshold = repo.role_keys(role)
        good = [k.keyid for k in keys if signed_by(md, k)]
        rows.append({
            "role": role, "version": md.signed.version,
            "expires": md.signed.expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "keys": [k.keyid for k in keys], "threshold": threshold,
            "signatures": len(good),
        })
    return rows

def gc(repo: CustodyRepository, keep_snapshots: int = 3,
       retention: timedelta | None = None) -> list[Path]:
    """Delete metadata versions and target files no recent snapshot can reach.

    Keeps everything reachable from the current snapshot, the
    ``keep_snapshots - 1`` before it, and every snapshot that stopped
    being current less than ``retention`` ago (default: the configured
    ``gc_retention_hours``), so that a client in the middle of a refresh,
    holding an older timestamp, still finds its files, on disk and in the
    bucket. What the newest timestamp reaches is kept whatever the
    arguments say. Temporary files of writers that were killed mid-write
    (``.NAME.PID.tmp``) are removed: gc holds the repository lock, so no
    live writer owns one. A bucket replica loses the same files.
    """
    keep_snapshots = max(1, keep_snapshots)
    if retention is None:
        retention = timedelta(hours=repo.config.gc_retention_hours)
    horizon = (repo.now() - retention).timestamp()
    current = repo.published(Snapshot.type)
    if current is None:
        return []
    keep: set[Path] = set()
    live_targets: set[Path] = set()
    newest = current.signed.version
    bucket = repo.bucket()
    # When each snapshot was superseded: its successor's writing, here or, for one another
    # publisher wrote (this tree pulled only the newest), in the bucket, listed only then.
    written: dict[str, float] | None = None
    for version in range(newest, 0, -1):
        path = repo.paths.metadata_file(Snapshot.type, version)
        successor = repo.paths.metadata_file(Snapshot.type, version + 1)
        if successor.exists():
            superseded: float | None = successor.stat().st_mtime
        else:
            if written is None:
                written = bucket.modified() if bucket is not None else {}
            superseded = written.get(successor.relative_to(repo.paths.public).as_posix())
        recent = version > newest - keep_snapshots or (
            superseded is not None and superseded > horizon)
        if not recent:
            continue
        if not path.exists():
            continue
        keep.add(path)
        snapshot = Metadata[Snapshot].from_bytes(path.read_bytes()).signed
        for name, meta in snapshot.meta.items():
            role_path = repo.paths.metadata_file(name[: -len(".json")], meta.version)
            keep.add(role_path)
            if role_path.exists():
                targets = Metadata[Targets].from_bytes(role_path.read_bytes()).signed
                for target_path, info in targets.targets.items():
                    live_targets.add(repo.paths.target_file(target_path,
                                                            info.hashes["sha256"]))
    removed = []
    for folder in (repo.paths.metadata, repo.paths.targets):
        for path in folder.rglob(".*.tmp"):
            path.unlink(missing_ok=True)
            removed.append(path)
    for path in repo.paths.metadata.glob("*.json"):
        first_part = path.name.split(".")[0]
        if first_part.isdigit() and not path.name.endswith(".root.json") and path not in keep:
            path.unlink()
            removed.append(path)
    for path in repo.paths.targets.rglob("*"):
        if path.is_file() and path not in live_targets and path not in removed:
            path.unlink()
            removed.append(path)
    if bucket is not None:
        try:
            bucket.delete(p.relative_to(repo.paths.public).as_posix() for p in removed
                          if not p.name.startswith("."))
        except BucketError as exc:
            raise repo.bucket_failed(exc, committed=True) from exc
    return removed


def move_fleet_state(paths: RepoPaths, url: str) -> tuple[int, int]:
    """Point the repository at the PostgreSQL server ``url``, bringing its fleet state along.

    The server is checked (reachable, tables made) before anything changes;
    then the API tokens and the health reports kept locally are copied to it
    (a token already there is kept as it is), and only then does
    ``private/config.json`` name it, so an interrupted move leaves the
    repository on SQLite, whole. Returns (tokens, reports) copied.
    """

    from custody.repository.database import Database
    from custody.repository.reports import ReportStore
    from custody.repository.tokens import create_table

    config = RepoConfig.load(paths)
    server = Database.open(paths.private, url)
    try:
        target = ReportStore(server)
        create_table(server)
        tokens, rows = _current_fleet_state(paths, config, url)
        known = {row[0] for row in server.execute("SELECT id FROM tokens").fetchall()}
        fresh = [token for token in tokens if token[0] not in known]
        reports = 0
        with server.transaction():
            if fresh:
                server.executemany("INSERT INTO tokens (id, name, sha256, scope, created) "
                                   "VALUES (?, ?, ?, ?, ?)", fresh)
            reports = target.restore(rows)
    finally:
        server.close()
    config.database = url
    config.save(paths)
    # The server holds the tokens now: a local copy left behind would bring a token revoked
    # there back to life at the next move.
    paths.tokens.unlink(missing_ok=True)
    return len(fresh), reports


def _current_fleet_state(paths: RepoPaths, config: RepoConfig, url: str
                         ) -> tuple[list[tuple], list[tuple]]:
    """The tokens and reports the repository holds now, wherever they are: (tokens, reports).

    From SQLite and ``private/tokens.json``, or from the server the
    configuration names; if that server is lost, from the copy a restore
    kept (``private/fleet-backup.json``), and never from a stale local file.
    """
    import json

    from custody.repository.database import Database, DatabaseError
    from custody.repository.reports import ReportStore
    from custody.repository.tokens import rows as token_rows

    if config.database is None:
        stored = json.loads(paths.tokens.read_text()) if paths.tokens.exists() else {}
        tokens = [(tid, e["name"], e["sha256"], e.get("scope", "publish"), e.get("created", ""))
                  for tid, e in stored.items()]
        local_file = paths.private / "reports.sqlite"
        if not local_file.exists():
            return tokens, []
        local = ReportStore(Database.sqlite(local_file))
        try:
            return tokens, local.rows()
        finally:
            local.close()
    if config.database == url:
        return [], []  # the same server again: nothing to copy
    try:
        current = Database.open(paths.private, config.database)
    except DatabaseError as exc:
        copy = paths.fleet_copy
        if not copy.exists():
            raise DatabaseError(
                f"{exc}; its tokens and reports cannot be moved, and no restored copy of them "
                f"is in {copy}: restore the newest backup to bring them, or move anyway by "
                "editing private/config.json") from exc
        fleet = json.loads(copy.read_text())
        return [tuple(t) for t in fleet["tokens"]], [tuple(r) for r in fleet["reports"]]
    try:
        return token_rows(current), ReportStore(current).rows()
    finally:
        current.close()
