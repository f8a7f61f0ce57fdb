"""A publisher's working tree brought up to the bucket, every file checked with TUF.

Two publishers (docs/deploy.md, "Two publishers") write one bucket, one at a
time under their shared lock (`custody.repository.publishers`). Whichever
takes the lock first compares the bucket's ``timestamp.json`` with its own
(`reconcile`):

- **the same**: nothing to do (an upload this publisher had left half done
  is finished: its journal is replayed);
- **the bucket is behind**, and this tree's journal says an upload was
  interrupted: it is finished, as on one machine;
- **the bucket has moved on** (another publisher wrote it): the tree is
  brought up to it (`pull`). A commit of this tree's that never reached
  the bucket whole is a fork nobody saw: it is undone first, from its
  journal (the files it wrote are removed and the ``timestamp.json`` it
  replaced comes back), so the tree is at a state the bucket once served.

`pull` checks what it fetches as a TUF client does, against the newest root
this tree already trusts, with python-tuf's metadata API: each newer root is
signed by a threshold of the previous root's keys and of its own and is one
version later (TUF 5.3.4); timestamp and snapshot are signed by the root's
keys for them, snapshot matches the timestamp's length, hashes and version,
and neither they nor any targets role go back a version; every targets role
the snapshot names at a version this tree lacks is signed by its delegator's
keys at that version; every target file such a role lists is fetched and
checked against its length and hashes. Anything else is refused, and the
tree is left as it was. One check is left out on purpose: expiry. A
publisher taking over from one that died must re-sign a timestamp that
expired while nobody could; expiry protects clients, who still check it.

Files are written in the commit's order, target files first and
``timestamp.json`` last, so the tree is whole at every instant.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tuf.api.exceptions import LengthOrHashMismatchError, UnsignedMetadataError
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, Targets, Timestamp
from tuf.api.serialization import DeserializationError

from custody.repository import bucket as replica
from custody.repository.errors import RepositoryError
from custody.repository.publishers import SharedLock
from custody.repository.storage import RepoPaths, write_atomic, write_order_of

log = logging.getLogger(__name__)


class CatchUpError(RepositoryError):
    """The bucket's newer state does not verify against this tree: nothing was changed."""


class BucketBehindError(replica.BucketError):
    """The bucket serves an older state than this tree and no upload is pending."""


@dataclass
class Reconciled:
    """What `reconcile` did: ``same``, ``replayed``, ``caught up``; versions and counts."""

    action: str
    timestamp: int = 0
    files: int = 0
    undone: list[str] = field(default_factory=list)


def _version(data: bytes | None) -> int:
    if data is None:
        return 0
    try:
        return Metadata[Timestamp].from_bytes(data).signed.version
    except (DeserializationError, ValueError, KeyError, TypeError) as exc:
        raise CatchUpError(f"the timestamp.json here or in the bucket is malformed: {exc}") \
            from exc


def reconcile(paths: RepoPaths, bucket: replica.Bucket, fence: SharedLock | None = None,
              behind_ok: bool = False) -> Reconciled:
    """Bring this tree and the bucket to one state before a write (module docstring).

    ``behind_ok``: a bucket older than this tree, with no upload pending,
    is for the caller to fix (``custody-repo sync`` uploads the tree); any
    other write refuses, rather than publish on a bucket missing files.
    """
    check = fence.check if fence is not None else None
    remote = bucket.read(replica.TIMESTAMP)
    local_path = paths.public / replica.TIMESTAMP
    local = local_path.read_bytes() if local_path.exists() else None
    journal = replica.Journal.load(paths)
    if remote is None or remote == local:
        return Reconciled("replayed" if journal else "same", _version(local),
                          replica.replay(paths, bucket, check))
    remote_version, local_version = _version(remote), _version(local)
    if remote_version < local_version:
        if journal is not None:
            return Reconciled("replayed", local_version, replica.replay(paths, bucket, check))
        if behind_ok:
            return Reconciled("same", local_version)
        raise BucketBehindError(
            f"{bucket.location} serves timestamp v{remote_version}, older than this tree's "
            f"v{local_version}, and no upload is pending here: 'custody-repo sync "
            f"{paths.root}' uploads the tree, if this tree is the one to serve")
    undone = undo(paths, journal) if journal is not None else []
    files = pull(paths, bucket, remote)
    log.info("caught up with %s at timestamp v%d (%d files checked and written)%s",
             bucket.location, remote_version, files,
             f"; undid a commit that never reached it whole ({len(undone)} files)"
             if journal is not None else "")
    return Reconciled("caught up", remote_version, files, undone)


def undo(paths: RepoPaths, journal: replica.Journal) -> list[str]:
    """Take back a commit that never reached the bucket whole; the files removed.

    Target files stay (content-addressed, harmless; gc removes them). The
    versioned metadata the commit wrote goes, ``timestamp.json`` returns to
    its base and ``root.json`` to the newest root left.
    """
    removed = []
    for relative in journal.files:
        path = paths.public / relative
        name = path.name
        if relative.startswith("metadata/") and name.split(".")[0].isdigit() and path.exists():
            path.unlink()
            removed.append(relative)
    if journal.base is not None:
        write_atomic(paths.public / replica.TIMESTAMP, journal.base)
    else:  # a journal from before bases were kept: the timestamp is the fork's own
        (paths.public / replica.TIMESTAMP).unlink(missing_ok=True)
    newest = paths.newest_root()
    if newest is not None:
        write_atomic(paths.metadata_file(Root.type), newest.read_bytes())
    replica.journal_path(paths).unlink(missing_ok=True)
    return removed


def _refuse(what: str, exc: Exception | str) -> CatchUpError:
    return CatchUpError(f"the bucket's {what} does not verify against this tree's trusted "
                        f"metadata ({exc}); nothing was changed here")


def _parse(what: str, data: bytes) -> Metadata:
    try:
        return Metadata.from_bytes(data)
    except (DeserializationError, ValueError, KeyError, TypeError) as exc:
        raise _refuse(what, exc) from exc


def _verify(what: str, delegator: Root | Targets, role: str, md: Metadata) -> None:
    try:
        delegator.verify_delegate(role, md.signed_bytes, md.signatures)
    except (UnsignedMetadataError, ValueError) as exc:
        raise _refuse(what, exc) from exc


def _fetch_meta(bucket: replica.Bucket, role: str, meta: MetaFile) -> tuple[bytes, Metadata]:
    relative = f"metadata/{meta.version}.{role}.json"
    data = bucket.read(relative)
    if data is None:
        raise _refuse(f"{role} v{meta.version}", f"{relative} is missing")
    try:
        meta.verify_length_and_hashes(data)
    except LengthOrHashMismatchError as exc:
        raise _refuse(f"{role} v{meta.version}", exc) from exc
    md = _parse(f"{role} v{meta.version}", data)
    if md.signed.type != (role if role in (Root.type, Snapshot.type, Timestamp.type)
                          else Targets.type) or md.signed.version != meta.version:
        raise _refuse(f"{role} v{meta.version}",
                      f"it is {md.signed.type} v{md.signed.version}")
    return data, md


def _local(paths: RepoPaths, role: str, version: int) -> Metadata | None:
    path = paths.metadata_file(role, version)
    return Metadata.from_bytes(path.read_bytes()) if path.exists() else None


def _delegations(md: Metadata) -> Iterator[str]:
    """The roles a targets role delegates to (named, or every succinct hash bin)."""
    delegations = md.signed.delegations  # type: ignore[attr-defined]
    if delegations is None:
        return
    if delegations.roles:
        yield from delegations.roles
    if delegations.succinct_roles:
        yield from delegations.succinct_roles.get_roles()


def pull(paths: RepoPaths, bucket: replica.Bucket, remote_timestamp: bytes) -> int:
    """Verify the bucket's state against this tree and write what it lacks; files written."""
    root_path = paths.newest_root()
    if root_path is None:  # a new repository (init) over a bucket that holds another
        raise CatchUpError(f"{bucket.location} already holds a repository's metadata: give "
                           "this one another bucket or prefix, or restore that repository's "
                           "backup to publish to it")
    root = Metadata[Root].from_bytes(root_path.read_bytes())
    writes: list[tuple[str, bytes]] = []

    # Root: each next version, signed by the previous root's keys and its own.
    while True:
        version = root.signed.version + 1
        data = bucket.read(f"metadata/{version}.root.json")
        if data is None:
            break
        new = _parse(f"root v{version}", data)
        if new.signed.type != Root.type or new.signed.version != version:
            raise _refuse(f"root v{version}", f"it is {new.signed.type} v{new.signed.version}")
        _verify(f"root v{version}", root.signed, Root.type, new)
        _verify(f"root v{version}", new.signed, Root.type, new)  # type: ignore[arg-type]
        writes.append((f"metadata/{version}.root.json", data))
        root = new  # type: ignore[assignment]
    if writes:
        writes.append(("metadata/root.json", writes[-1][1]))

    # Timestamp and snapshot: signed by the root's keys, never older than ours.
    timestamp = _parse("timestamp", remote_timestamp)
    if timestamp.signed.type != Timestamp.type:
        raise _refuse("timestamp", f"it is {timestamp.signed.type}")
    _verify("timestamp", root.signed, Timestamp.type, timestamp)
    local_ts_path = paths.public / replica.TIMESTAMP
    ours = Metadata[Timestamp].from_bytes(local_ts_path.read_bytes()) \
        if local_ts_path.exists() else None
    snapshot_meta = timestamp.signed.snapshot_meta  # type: ignore[attr-defined]
    if ours is not None and (timestamp.signed.version < ours.signed.version or
                             snapshot_meta.version < ours.signed.snapshot_meta.version):
        raise _refuse("timestamp", f"v{timestamp.signed.version} (snapshot "
                      f"v{snapshot_meta.version}) is older than this tree's "
                      f"v{ours.signed.version} (snapshot v{ours.signed.snapshot_meta.version})")
    snapshot_data, snapshot = _fetch_meta(bucket, Snapshot.type, snapshot_meta)
    _verify("snapshot", root.signed, Snapshot.type, snapshot)
    old_snapshot = _local(paths, Snapshot.type, ours.signed.snapshot_meta.version) \
        if ours is not None else None
    old_meta = old_snapshot.signed.meta if old_snapshot is not None else {}  # type: ignore[attr-defined]
    new_meta = snapshot.signed.meta  # type: ignore[attr-defined]
    for name, meta in old_meta.items():
        if name not in new_meta or new_meta[name].version < meta.version:
            raise _refuse("snapshot", f"{name} goes back from v{meta.version}")
    writes.append((f"metadata/{snapshot_meta.version}.snapshot.json", snapshot_data))

    # Targets roles, each from its delegator down: only the versions this tree lacks.
    changed: list[Metadata] = []
    delegators: dict[str, Root | Targets] = {Targets.type: root.signed}
    queue = [Targets.type]
    while queue:
        role = queue.pop(0)
        meta = new_meta.get(f"{role}.json")
        if meta is None:
            continue  # a delegation the snapshot does not list yet: nothing to fetch
        known = old_meta.get(f"{role}.json")
        md = _local(paths, role, meta.version) if known is not None and \
            known.version == meta.version else None
        if md is None:
            data, md = _fetch_meta(bucket, role, meta)
            _verify(f"{role} v{meta.version}", delegators[role], role, md)
            writes.append((f"metadata/{meta.version}.{role}.json", data))
            changed.append(md)
        for child in _delegations(md):
            delegators[child] = md.signed  # type: ignore[assignment]
            queue.append(child)
    writes.append((replica.TIMESTAMP, remote_timestamp))

    fetched = _fetch_targets(paths, bucket, changed)
    writes.sort(key=lambda w: write_order_of(w[0].rsplit("/", 1)[-1]))
    for relative, data in writes:
        write_atomic(paths.public / relative, data)
    return fetched + len(writes)


def _fetch_targets(paths: RepoPaths, bucket: replica.Bucket, roles: list[Metadata]) -> int:
    """Every target file the changed roles list and this tree lacks, checked, in place."""
    count = 0
    for md in roles:
        for target_path, info in md.signed.targets.items():  # type: ignore[attr-defined]
            destination = paths.target_file(target_path, info.hashes["sha256"])
            if destination.exists():
                continue
            relative = destination.relative_to(paths.public).as_posix()
            destination.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=destination.parent, prefix=".",
                                             suffix=".tmp")
            os.close(fd)
            try:
                bucket.download(relative, Path(temporary))
                with open(temporary, "rb") as f:
                    try:
                        info.verify_length_and_hashes(f)
                    except LengthOrHashMismatchError as exc:
                        raise _refuse(f"target {target_path}", exc) from exc
                    os.fsync(f.fileno())
                os.replace(temporary, destination)
            finally:
                Path(temporary).unlink(missing_ok=True)
            count += 1
    return count
