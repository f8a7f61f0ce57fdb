"""The TUF repository: roles, signing, and publishing as one transaction.

`CustodyRepository` implements python-tuf's `tuf.repository.Repository`
(``open``/``close`` plus the ``targets_infos``/``snapshot_info`` that its
``do_snapshot``/``do_timestamp`` need), so every role edit goes through
python-tuf's own edit and snapshot logic. On top of it:

- roles as DESIGN.md lays them out: root, targets (offline) delegating to
  ``layouts`` (the project owners' keys) and ``releases`` (online); with
  ``bins`` > 0, ``releases`` delegates succinct hash bins (TAP 15) that hold
  the targets, so a publish re-signs a few small bins instead of one role
  that grows with the repository;
- a transaction: edits are staged in memory; ``commit`` writes target files,
  then delegated roles, targets, root, snapshot, and ``timestamp.json`` last,
  each atomically, under the writers' lock. Until the timestamp is replaced
  readers see the previous state, whole; a crash leaves only unreferenced
  files, which ``gc`` removes;
- a transaction whose offline roles the keys at hand cannot sign to
  threshold (and whose caller allows it: ``collect_pending``) runs to its
  end all the same, then is saved whole as a `custody.repository.pending.PendingChange`
  (metadata, the target files it adds, the online-key configuration it
  brings) instead of committed; ``custody-keys import`` completes it
  (`custody.repository.ceremony`).

Dependencies point one way: storage, configuration, the pending-change files
and the bucket replica sit below this module; ceremonies, key operations,
releases and the command lines above it.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from securesystemslib.signer import Key, Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer
from tuf.repository import Repository

from custody.repository import bucket as replica
from custody.repository.config import BINS_PREFIX, KeySpec, RepoConfig
from custody.repository.errors import (
    BucketError,
    NotFoundError,
    PendingSignaturesError,
    RepositoryError,
    SigningError,
)
from custody.repository.pending import (
    PendingChange,
    clear_leftovers,
    is_draft,
    load_all,
    save_draft,
)
from custody.repository.publishers import SharedLock
from custody.repository.signatures import Expectation, expectation
from custody.repository.storage import RepoPaths, copy_atomic, locked, write_atomic
from custody.repository.storage import write_order as _write_order

LAYOUTS, RELEASES = "layouts", "releases"
OFFLINE_ROLES = ("root", "targets", LAYOUTS)
TOP_LEVEL = (Root.type, Targets.type, Snapshot.type, Timestamp.type)
_SERIALIZER = JSONSerializer(compact=False)


class CustodyRepository(Repository):
    """A custody repository directory, opened for reading or for a transaction.

    ``signers`` holds the offline keys a person brought for this operation
    (``{"layouts": [owner signers]}``), ``pool`` offline keys each used for
    the roles that trust it; online roles are signed with the keys named in
    the private configuration. A new repository is made by
    `custody.repository.genesis.create`.
    """

    def __init__(self, path: str | Path, signers: Mapping[str, Sequence[Signer]] | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 pool: Sequence[Signer] = (), collect_pending: bool = False,
                 online: Mapping[str, Sequence[Signer]] | None = None,
                 draft: bool = False) -> None:
        self.paths = RepoPaths(Path(path))
        self.config = RepoConfig.load(self.paths)
        self.now = now
        self._offline = {role: list(s) for role, s in (signers or {}).items()}
        # Offline keys a person brought, each used for the roles that trust it.
        self.pool = list(pool)
        # An offline role short of signatures is saved for a signing ceremony
        # (docs/keys.md) instead of refused.
        self.collect_pending = collect_pending
        # At init only (``draft``): offline roles short of signatures (their keys are
        # offline) are collected here, and the commit saves a draft instead of publishing.
        self._genesis: set[str] | None = set() if draft else None
        self.completing_genesis = False  # set by repository.genesis.publish only
        self._bucket: replica.Bucket | None = None
        self._fence: SharedLock | None = None  # the publishers' lock, while coordinated
        # ``online`` (at init only): the online roles' signers, before any key is stored.
        self._online: dict[str, list[Signer]] | None = (
            {role: list(s) for role, s in online.items()} if online is not None else None)
        self._reset()

    # -- transaction ------------------------------------------------------
    def _reset(self) -> None:
        self._disk: dict[str, Metadata | None] = {}
        self._staged: dict[str, Metadata] = {}
        self._bumped: set[str] = set()
        self._targets: dict[str, Path | bytes] = {}
        self._in_transaction = False
        self.config_changed = False
        self.after_commit: list[Callable[[], object]] = []
        # Offline roles this transaction edited that its keys do not sign to threshold.
        self._short: set[str] = set()
        # Offline keys of the pool that signed something in this transaction.
        self._pool_used: set[str] = set()
        self._config_at_start = self.config
        #: What the transaction does, in words (saved with a pending change).
        self.summary: list[str] = []

    @contextlib.contextmanager
    def transaction(self) -> Iterator[CustodyRepository]:
        """Lock, stage every edit in memory, and commit them all at the end (or none)."""
        if self._in_transaction:
            raise RepositoryError("transactions do not nest")
        if self._genesis is None and not self.completing_genesis and is_draft(self.paths):
            raise RepositoryError(
                f"{self.paths.root} is not published yet: its first signing ceremony is "
                "pending (custody-repo status shows what is missing)")
        with self.coordinated():
            self._reset()
            self._clear_completed_changes()
            self._in_transaction = True
            try:
                yield self
                self.commit()
            finally:
                self._reset()
                if self.config_dirty():
                    self.config = RepoConfig.load(self.paths)  # drop uncommitted edits
                    self._online = None

    @contextlib.contextmanager
    def coordinated(self, behind_ok: bool = False) -> Iterator[replica.Bucket | None]:
        """Hold every lock a write needs, with the tree at the bucket's state; the bucket.

        The local lock, then, when the configuration names a PostgreSQL
        server, the lock that publishers on other machines share
        (`custody.repository.publishers`). Under them, the tree and the bucket
        are brought to one state (`custody.repository.catchup.reconcile`):
        a killed upload of ours finished, or another publisher's newer
        state pulled in and checked.
        """
        from custody.repository.catchup import BucketBehindError, reconcile
        from custody.repository.publishers import shared_lock

        with locked(self.paths), shared_lock(self.paths, self.config.database) as fence:
            self._fence = fence
            try:
                bucket = self.bucket()
                if bucket is not None:
                    try:
                        reconcile(self.paths, bucket, fence, behind_ok)
                    except BucketBehindError:
                        raise  # says what to do itself
                    except BucketError as exc:
                        raise self.bucket_failed(exc, committed=False) from exc
                    self._disk.clear()  # the tree may have moved on: read it again
                yield bucket
            finally:
                self._fence = None

    def catch_up(self) -> None:
        """Bring the tree to the bucket's state now, for decisions taken before a transaction
        (`coordinated`); the transaction that follows checks again."""
        with self.coordinated():
            pass

    def _clear_completed_changes(self) -> None:
        """Remove pending changes already published (a ceremony's commit, killed before
        it removed its change): nothing is left half-done for the next import to trip on."""
        clear_leftovers(self.paths)
        try:
            changes = load_all(self.paths)
        except RepositoryError:
            return  # an unreadable change: `custody-keys pending` says what to do with it
        for change in changes:
            if change.published_by(self._read):
                change.remove(self.paths)
        self._disk.clear()

    def bucket(self) -> replica.Bucket | None:
        """The bucket the served tree is replicated to, if the configuration names one."""
        if self.config.public_url is None:
            return None
        if self._bucket is None:
            self._bucket = replica.open_bucket(self.config.public_url, self.config.endpoint_url)
        return self._bucket

    def config_dirty(self) -> bool:
        return self.config != RepoConfig.load(self.paths)

    def commit(self) -> list[str]:
        """Write what is staged: targets, delegated roles, targets, root, snapshot, timestamp."""
        if self._genesis:  # a new repository whose offline roles await a ceremony
            save_draft(self.paths, self._staged, sorted(self._genesis))
            return []
        if self._short:  # offline roles await signatures: saved whole, nothing published
            raise self._save_pending()
        # Every file this commit writes, in writing order (what a bucket replica uploads,
        # in this order): target files, delegated roles, targets and root, snapshot,
        # timestamp. With a bucket, the list is journaled before anything is written, so
        # a publisher killed at any point leaves a journal the next transaction replays.
        targets: list[tuple[Path, Path | bytes]] = []
        for target_path, source in self._targets.items():
            info = self._find_staged_target(target_path)
            targets.append((self.paths.target_file(target_path, info.hashes["sha256"]),
                            source))
        order = sorted(self._staged, key=_write_order)
        roles: list[tuple[str, list[Path]]] = []
        for role in order:
            md = self._staged[role]
            files = [self.paths.metadata_file(role)] if role == Timestamp.type else \
                [self.paths.metadata_file(role, md.signed.version)]
            if role == Root.type:
                files.append(self.paths.metadata_file(role))
            roles.append((role, files))
        written = [d for d, _ in targets] + [f for _, files in roles for f in files]
        bucket = self.bucket()
        if bucket is not None:
            base = self.paths.metadata_file(Timestamp.type)
            replica.begin(self.paths,
                          [p.relative_to(self.paths.public).as_posix() for p in written],
                          base.read_bytes() if base.exists() else None)
        for destination, source in targets:
            if destination.exists():
                continue  # content-addressed: the same bytes are already there
            if isinstance(source, bytes):
                write_atomic(destination, source)
            else:
                copy_atomic(source, destination)
        config_saved = False
        for role, files in roles:
            if self.config_changed and not config_saved and _write_order(role)[0] >= 3:
                # Online keys change with the root that trusts them: saved after the
                # root, before the snapshot and timestamp they sign.
                self.config.save(self.paths)
                config_saved = True
            data = self._staged[role].to_bytes(_SERIALIZER)
            for path in files:
                write_atomic(path, data)
        if self.config_changed and not config_saved:
            self.config.save(self.paths)
        try:
            if bucket is not None:
                replica.replay(self.paths, bucket,
                               self._fence.check if self._fence is not None else None)
        except BucketError as exc:
            raise self.bucket_failed(exc, committed=True) from exc
        finally:  # the local commit happened: what follows it (a ceremony's clean-up) too
            for hook in self.after_commit:
                hook()
        return order

    def bucket_failed(self, exc: BucketError, committed: bool) -> BucketError:
        """The bucket's failure, saying what state the change is in and what finishes it."""
        if committed:
            state = (f"the change is committed in {self.paths.public}, and the bucket still "
                     "serves the previous state whole")
        elif replica.journal_path(self.paths).exists():
            state = "an earlier change is not in the bucket yet, and nothing was changed now"
        else:
            return BucketError(f"{exc}: nothing was changed; run the command again once the "
                               "bucket answers")
        shared = " (unless another publisher writes the bucket first: the next write here " \
            "then drops it)" if self.config.database else ""
        return BucketError(f"{exc}: {state}; 'custody-repo sync {self.paths.root}' finishes "
                           f"the upload once the bucket answers{shared}")

    # -- reading the current state ----------------------------------------
    def _read(self, role: str) -> Metadata | None:
        if role not in self._disk:
            self._disk[role] = self._read_from_disk(role)
        return self._disk[role]

    def _read_from_disk(self, role: str) -> Metadata | None:
        if role == Root.type:
            path = self.paths.newest_root()
        elif role == Timestamp.type:
            path = self.paths.metadata_file(role)
        elif role == Snapshot.type:
            timestamp = self._read(Timestamp.type)
            if timestamp is None:
                return None
            version = timestamp.signed.snapshot_meta.version  # type: ignore[attr-defined]
            path = self.paths.metadata_file(role, version)
        else:
            snapshot = self._read(Snapshot.type)
            meta = snapshot.signed.meta.get(f"{role}.json") if snapshot else None  # type: ignore[attr-defined]
            path = self.paths.metadata_file(role, meta.version) if meta else None
        if path is None or not path.exists():
            return None
        return Metadata.from_bytes(path.read_bytes())

    def version(self, role: str) -> int:
        """The role's version in this transaction, without loading it when avoidable.

        Snapshot lists every targets role (all hash bins included), so reading
        each one's file at every publish would make publishing grow with the
        number of bins; the current snapshot already knows their versions.
        """
        staged = self._staged.get(role)
        if staged is not None:
            return staged.signed.version
        if role not in TOP_LEVEL and role not in self._disk:
            snapshot = self._read(Snapshot.type)
            meta = snapshot.signed.meta.get(f"{role}.json") if snapshot else None  # type: ignore[attr-defined]
            if meta is not None:
                return meta.version
        return self.open(role).signed.version

    def published(self, role: str) -> Metadata | None:
        """The role as last committed (not as staged in this transaction)."""
        return self._read(role)

    def staged(self, role: str) -> Metadata | None:
        """The role as this transaction staged it, if it did."""
        return self._staged.get(role)

    def staged_targets(self) -> dict[str, Path | bytes]:
        """Target files this transaction will write, by target path."""
        return dict(self._targets)

    def stage_signed(self, role: str, md: Metadata, targets: Mapping[str, bytes] = {}) -> None:
        """Stage metadata signed elsewhere (a ceremony) as is, with the files it lists.

        It must verify as it stands: nothing here re-signs or bumps it.
        """
        self.check_signed(role, md)
        self._staged[role] = md
        self._bumped.add(role)
        self._targets.update(targets)

    def use_config(self, config: RepoConfig) -> None:
        """Sign with ``config``'s online keys from now on; it is saved with the commit."""
        self.config = config
        self.config_changed = True
        self._online = None

    def exists(self, role: str) -> bool:
        return role in self._staged or self._read(role) is not None

    # -- python-tuf Repository interface -------------------------------------
    def open(self, role: str) -> Metadata:
        """The role's metadata as staged in this transaction, else as published, else new."""
        md = self._staged.get(role) or self._read(role)
        if md is not None:
            return copy.deepcopy(md)
        self._bumped.add(role)  # a new role starts at version 1, not 2
        signed: Root | Targets | Snapshot | Timestamp
        if role == Root.type:
            signed = Root(consistent_snapshot=True)
        elif role == Snapshot.type:
            signed = Snapshot()
        elif role == Timestamp.type:
            signed = Timestamp()
        else:
            signed = Targets()
        return Metadata(signed)

    def close(self, role: str, md: Metadata) -> None:
        """Bump the version (once per transaction), set expiry, sign, check the threshold."""
        if not self._in_transaction:
            raise RepositoryError(f"editing {role} needs a transaction")
        if role not in self._bumped:
            md.signed.version += 1
            self._bumped.add(role)
        days = self.config.expiry_days[expiry_class(role)]
        md.signed.expires = (self.now() + timedelta(days=days)).replace(microsecond=0)
        md.signatures.clear()
        self._staged[role] = md  # first: a new root names the keys that must sign it
        for signer in self.signers_for(role):
            md.sign(signer, append=True)
        try:
            self.check_signed(role, md)
        except SigningError as exc:
            stale = self._untrusted_online_keys(role) \
                if role not in OFFLINE_ROLES and self._genesis is None else None
            if stale is not None:
                raise stale from exc
            if self._genesis is not None and role in OFFLINE_ROLES:
                self._genesis.add(role)
                return
            if not (self.collect_pending and role in OFFLINE_ROLES):
                raise
            # The rest of the operation still runs (an online key's configuration, the
            # files the role lists): the commit saves all of it for the ceremony.
            self._short.add(role)
        else:
            self._short.discard(role)

    def _untrusted_online_keys(self, role: str) -> SigningError | None:
        """Why this publisher's online keys do not sign ``role``, if it holds stale ones."""
        trusted = self.trusted_keyids(role)
        ours = {s.public_key.keyid for s in self.signers_for(role)}
        if not ours or ours & trusted:
            return None
        cls = expiry_class(role)
        return SigningError(
            f"this publisher signs {role} with key(s) {', '.join(sorted(k[:8] for k in ours))}, "
            f"which {self.delegator(role)} no longer trusts for it (it trusts "
            f"{', '.join(sorted(k[:8] for k in trusted))}; another publisher rotated them?): "
            f"give this one the new key with custody-keys online --repo {self.paths.root} "
            f"--role {cls} --key KEY")

    @property
    def targets_infos(self) -> dict[str, MetaFile]:
        """Versions of every targets role (targets, layouts, releases, bins) for snapshot."""
        return {f"{role}.json": MetaFile(self.version(role)) for role in self.targets_roles()}

    @property
    def snapshot_info(self) -> MetaFile:
        return MetaFile(self.open(Snapshot.type).signed.version)

    # -- roles and keys -------------------------------------------------
    def bin_roles(self) -> list[str]:
        succinct = self.succinct()
        return list(succinct.get_roles()) if succinct else []

    def succinct(self) -> SuccinctRoles | None:
        if not self.config.bins:
            return None
        current = self._staged.get(RELEASES) or self._read(RELEASES)
        if current is None:
            return None
        delegations = current.signed.delegations  # type: ignore[attr-defined]
        return delegations.succinct_roles if delegations else None

    def targets_roles(self) -> list[str]:
        return [Targets.type, LAYOUTS, RELEASES, *self.bin_roles()]

    def role_for_target(self, target_path: str) -> str:
        """The role that lists ``target_path``: ``layouts``, ``releases`` or its hash bin."""
        if target_path.startswith("in-toto/layouts/"):
            return LAYOUTS
        succinct = self.succinct()
        return succinct.get_role_for_target(target_path) if succinct else RELEASES

    def delegator(self, role: str) -> str:
        if role in TOP_LEVEL:
            return Root.type
        if role in (LAYOUTS, RELEASES):
            return Targets.type
        return RELEASES

    def trusted_keyids(self, role: str) -> set[str]:
        """Key ids that may sign ``role``: its delegator's (and, for root, the old root's)."""
        if role == Root.type:
            ids = set(self.open(Root.type).signed.roles[Root.type].keyids)  # type: ignore[attr-defined]
            previous = self._read(Root.type)
            if previous is not None:
                ids |= set(previous.signed.roles[Root.type].keyids)  # type: ignore[attr-defined]
            return ids
        delegator = self.open(self.delegator(role)).signed
        return set(delegator.get_delegated_role(role).keyids)  # type: ignore[attr-defined]

    def signers_for(self, role: str) -> list[Signer]:
        """Offline signers brought for this operation, then the configured online keys."""
        if role in self._offline:
            return self._offline[role]
        if self.pool and role in OFFLINE_ROLES:
            trusted = self.trusted_keyids(role)
            signers = [s for s in self.pool if s.public_key.keyid in trusted]
            self._pool_used.update(s.public_key.keyid for s in signers)
            return signers
        if self._online is None:
            self._online = {
                name: [spec.signer(self.paths) for spec in specs]
                for name, specs in self.config.online_keys.items()
            }
        return self._online.get(expiry_class(role), [])

    def check_signed(self, role: str, md: Metadata) -> None:
        """Refuse metadata that its delegator's keys do not sign to threshold."""
        delegator = self.open(self.delegator(role)) if role != Root.type else md
        try:
            delegator.signed.verify_delegate(role, md.signed_bytes, md.signatures)  # type: ignore[attr-defined]
            if role == Root.type:
                previous = self._read(Root.type)
                if previous is not None and previous.signed.version < md.signed.version:
                    previous.signed.verify_delegate(role, md.signed_bytes, md.signatures)
        except UnsignedMetadataError as exc:
            raise SigningError(
                f"{role} is not signed by a threshold of its keys: {exc} (bring the offline "
                f"key(s) for {role}, or see docs/keys.md for signing ceremonies)"
            ) from exc

    def expectations(self, role: str, md: Metadata,
                     delegators: Mapping[str, Metadata] = {}) -> list[Expectation]:
        """Whose keys must sign ``md`` for ``role``, how many, and which already do.

        One entry per delegator that must agree: the role's delegator (as
        staged, or as ``delegators`` gives it: a pending change's own), and for
        a new root both the new root and the previous one (TUF 5.3.4).
        """
        if role == Root.type:
            checks = [("new root", md.signed)]
            previous = self._read(Root.type)
            if previous is not None and previous.signed.version < md.signed.version:
                checks.append(("previous root", previous.signed))
        else:
            name = self.delegator(role)
            checks = [(name, (delegators.get(name) or self.open(name)).signed)]
        return [expectation(name, delegator, role, md)  # type: ignore[arg-type]
                for name, delegator in checks]

    def describe_signatures(self, role: str, md: Metadata,
                            delegators: Mapping[str, Metadata] = {}) -> str:
        """``0/1 by the new root's keys (1a2b3c4d), ...``: what ``md`` has and needs."""
        return ", ".join(e.line() for e in self.expectations(role, md, delegators))

    def _save_pending(self) -> PendingSignaturesError:
        """Save this transaction whole for a signing ceremony; the error that says so.

        Only offline roles wait: online roles (``releases``, bins, snapshot,
        timestamp) are re-signed when the change completes, from what is
        published then, so the change never carries stale online metadata.
        """
        # Delegators first (root, targets, layouts): completing the change stages each
        # role after the one whose keys it is checked against.
        offline = {role: self._staged[role] for role in OFFLINE_ROLES if role in self._staged}
        targets: dict[str, bytes] = {}
        for path, source in self._targets.items():
            if self.role_for_target(path) not in offline:
                raise RepositoryError(
                    f"{path} belongs to an online role and cannot wait for a ceremony: "
                    "publish it separately")
            targets[path] = source if isinstance(source, bytes) else Path(source).read_bytes()
        before = self._config_at_start.online_keys
        online_keys = {cls: specs for cls, specs in self.config.online_keys.items()
                       if specs != before.get(cls)}
        resign = [role for role in sorted(self._staged, key=_write_order)
                  if role not in OFFLINE_ROLES and role not in (Snapshot.type, Timestamp.type)]
        change = PendingChange(offline, targets, online_keys, resign, list(self.summary))
        change.save(self.paths)
        short = [role for role in offline if role in self._short]
        lines = [f"{role} v{offline[role].signed.version} has signatures "
                 f"{self.describe_signatures(role, offline[role])}" for role in short]
        unused = [s.public_key.keyid[:8] for s in self.pool
                  if s.public_key.keyid not in self._pool_used]
        if unused:
            lines.append(f"the key(s) you brought ({', '.join(unused)}) sign none of the roles "
                         "this change edits")
        counts = [e for role in short for e in self.expectations(role, offline[role])]
        return PendingSignaturesError(
            f"{'; '.join(lines)}. The change is saved as pending: for "
            f"{' and '.join(short)}, custody-keys export --repo {self.paths.root} --role ROLE "
            "-o ROLE.json, then custody-keys sign ROLE.json --key KEY where the key is, then "
            f"custody-keys import --repo {self.paths.root} ROLE.json (custody-keys pending "
            "show or drop it)",
            short[0], min(len(e.signed) for e in counts), max(e.threshold for e in counts))

    def use_online_keys(self, online_keys: Mapping[str, Sequence[KeySpec]]) -> None:
        """Sign the online role classes named with these keys; saved with the commit."""
        if online_keys:
            config = copy.deepcopy(self.config)
            config.online_keys.update({cls: list(specs) for cls, specs in online_keys.items()})
            self.use_config(config)

    def role_keys(self, role: str) -> tuple[list[Key], int]:
        """The keys trusted for ``role`` and their threshold, from its delegator."""
        delegator = self.open(self.delegator(role)).signed
        delegated = delegator.get_delegated_role(role)  # type: ignore[attr-defined]
        keys = [delegator.get_key(k) for k in delegated.keyids]  # type: ignore[attr-defined]
        return keys, delegated.threshold

    # -- targets ------------------------------------------------------
    def add_target(self, target_path: str, source: Path | bytes,
                   custom: dict | None = None) -> TargetFile:
        """Stage a target file and list it in the role responsible for its path."""
        if isinstance(source, bytes):
            info = TargetFile.from_data(target_path, source)
        else:
            info = TargetFile.from_file(target_path, str(source))
        if custom:
            info.unrecognized_fields["custom"] = custom
        role = self.role_for_target(target_path)
        with self.edit_targets(role) as targets:
            targets.targets[target_path] = info
        self._targets[target_path] = source
        if role in OFFLINE_ROLES:
            self.summary.append(f"adds {target_path} to {role}")
        return info

    def remove_target(self, target_path: str) -> TargetFile:
        role = self.role_for_target(target_path)
        with self.edit_targets(role) as targets:
            info = targets.targets.pop(target_path, None)
            if info is None:
                raise NotFoundError(f"no target {target_path} in role {role}")
        self._targets.pop(target_path, None)
        if role in OFFLINE_ROLES:
            self.summary.append(f"removes {target_path} from {role}")
        return info

    def find_target(self, target_path: str) -> TargetFile | None:
        return self.open(self.role_for_target(target_path)).signed.targets.get(target_path)  # type: ignore[attr-defined]

    def _find_staged_target(self, target_path: str) -> TargetFile:
        info = self.find_target(target_path)
        if info is None:
            raise RepositoryError(f"staged target {target_path} vanished from its role")
        return info

    def read_target(self, target_path: str) -> bytes:
        """The bytes of a published (or staged) target."""
        staged = self._targets.get(target_path)
        if isinstance(staged, bytes):
            return staged
        if staged is not None:
            return staged.read_bytes()
        info = self.find_target(target_path)
        if info is None:
            raise NotFoundError(f"no target {target_path}")
        return self.paths.target_file(target_path, info.hashes["sha256"]).read_bytes()

    def publish_metadata(self) -> None:
        """Snapshot and timestamp after target edits (python-tuf's own logic)."""
        self.do_snapshot()
        self.do_timestamp()


def expiry_class(role: str) -> str:
    return "bins" if role.startswith(BINS_PREFIX + "-") else role
