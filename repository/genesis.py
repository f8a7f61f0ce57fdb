"""A new repository: its first version, and the first signing ceremony when its
offline keys never came online.

`create` writes the first version of every role in one transaction (root,
targets delegating to ``layouts`` and ``releases``, the hash bins, snapshot,
timestamp).

docs/keys.md tells operators to keep root, targets and the owners' keys
offline. ``custody-repo init`` therefore accepts them as public keys; the
first version of every role is then built with the keys at hand (the online
key, any offline key given privately) and the offline roles short of
signatures are saved as a *draft* under ``private/genesis/``, with nothing in
the served tree. The ceremony is the usual one (docs/keys.md):

1. ``custody-keys export --repo DIR --role ROLE -o ROLE.json``,
2. ``custody-keys sign ROLE.json --key KEY`` on the machine that holds KEY,
3. ``custody-keys import --repo DIR ROLE.json``,

and when every draft role carries the signatures its delegator requires
(root by itself, targets by root, layouts by targets, all from the draft),
the whole repository is published in one transaction, snapshot and timestamp
signed afresh. Until then clients have nothing to trust, by design.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from securesystemslib.signer import Key, Signer
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    Root,
    Snapshot,
    SuccinctRoles,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from custody.repository.ceremony import (
    ImportResult,
    merge_signatures,
    read_metadata,
    with_expectations,
)
from custody.repository.config import BINS_PREFIX, RepoConfig
from custody.repository.errors import NotFoundError, RepositoryError
from custody.repository.pending import draft_dir, is_draft
from custody.repository.repo import LAYOUTS, RELEASES, CustodyRepository
from custody.repository.signatures import Expectation, expectation
from custody.repository.storage import RepoPaths, write_atomic

_SERIALIZER = JSONSerializer(compact=False)
_DELEGATOR = {"root": "root", "targets": "root", "layouts": "targets"}
LAYOUT_PATHS = ["in-toto/layouts/*"]
# TUF path patterns match segment by segment ("*" never crosses "/"), so each
# depth is listed: indexes, artifacts, links, and links of nested sublayouts.
RELEASE_PATHS = ["packages/*/index.json", "packages/*/*/*",
                 *("in-toto/links/*" + "/*" * depth for depth in range(1, 6))]


def create(
    path: str | Path,
    *,
    root_signers: Sequence[Signer],
    root_threshold: int,
    targets_signers: Sequence[Signer],
    layout_keys: Sequence[Key],
    layout_threshold: int,
    layout_signers: Sequence[Signer],
    online: Mapping[str, Sequence[Signer]],
    config: RepoConfig,
    extra_root_keys: Sequence[Key] = (),
    extra_targets_keys: Sequence[Key] = (),
    allow_offline_pending: bool = False,
) -> CustodyRepository:
    """Write a new repository: root v1, targets, layouts, releases, bins, snapshot, timestamp.

    ``online`` maps each online role class (timestamp, snapshot, releases,
    bins) to its signers, whose keys must be named in ``config``. With
    ``allow_offline_pending``, offline keys may be given as public keys
    only (``extra_*_keys``, ``layout_keys`` without signers): the roles
    they must sign are saved as a draft for a signing ceremony
    (below) and nothing is published until it completes.
    """
    paths = RepoPaths(Path(path))
    if paths.config.exists():
        raise RepositoryError(f"{paths.root} already holds a repository")
    if config.bins and config.bins & (config.bins - 1):
        raise RepositoryError(f"--bins must be a power of two, got {config.bins}")
    if not 1 <= root_threshold <= len(root_signers) + len(extra_root_keys):
        raise RepositoryError(f"root threshold {root_threshold} is impossible")
    if not 1 <= layout_threshold <= len(layout_keys):
        raise RepositoryError(f"layout threshold {layout_threshold} is impossible")
    paths.metadata.mkdir(parents=True, exist_ok=True)
    paths.targets.mkdir(parents=True, exist_ok=True)
    config.save(paths)
    signers = {Root.type: list(root_signers), Targets.type: list(targets_signers),
               LAYOUTS: list(layout_signers)}
    repo = CustodyRepository(path, signers, online=online, draft=allow_offline_pending)
    with repo.transaction():
        with repo.edit_root() as root:
            for signer in root_signers:
                root.add_key(signer.public_key, Root.type)
            for key in extra_root_keys:
                root.add_key(key, Root.type)
            root.roles[Root.type].threshold = root_threshold
            for signer in targets_signers:
                root.add_key(signer.public_key, Targets.type)
            for key in extra_targets_keys:
                root.add_key(key, Targets.type)
            for role in (Snapshot.type, Timestamp.type):
                for signer in online[role]:
                    root.add_key(signer.public_key, role)
        with repo.edit_targets() as targets:
            targets.delegations = Delegations(keys={}, roles={})
            _delegate(targets, LAYOUTS, layout_keys, layout_threshold, LAYOUT_PATHS)
            _delegate(targets, RELEASES, [s.public_key for s in online[RELEASES]], 1,
                      RELEASE_PATHS)
        with repo.edit_targets(LAYOUTS):
            pass
        with repo.edit_targets(RELEASES) as releases:
            if config.bins:
                bin_keys = [s.public_key for s in online["bins"]]
                releases.delegations = Delegations(
                    keys={k.keyid: k for k in bin_keys},
                    succinct_roles=SuccinctRoles([k.keyid for k in bin_keys], 1,
                                                 config.bit_length, BINS_PREFIX),
                )
        for role in repo.bin_roles():
            with repo.edit_targets(role):
                pass
        repo.publish_metadata()
    return CustodyRepository(path)


def _delegate(targets: Targets, name: str, keys: Sequence[Key], threshold: int,
              paths: list[str]) -> None:
    assert targets.delegations is not None and targets.delegations.roles is not None
    for key in keys:
        targets.delegations.keys[key.keyid] = key
    targets.delegations.roles[name] = DelegatedRole(
        name, [k.keyid for k in keys], threshold, True, paths)


def _load(paths: RepoPaths) -> tuple[dict[str, Metadata], list[str]]:
    folder = draft_dir(paths)
    try:
        pending = json.loads((folder / "pending.json").read_text())
    except FileNotFoundError as exc:
        raise NotFoundError(f"{paths.root} has no unpublished first version") from exc
    drafts = {p.name[: -len(".json")]: Metadata.from_bytes(p.read_bytes())
              for p in folder.glob("*.json") if p.name != "pending.json"}
    return drafts, pending


def draft_expectation(drafts: dict[str, Metadata], role: str) -> Expectation:
    """Whose keys must sign a draft role, by its draft delegator, and which do."""
    return expectation(f"draft {_DELEGATOR[role]}", drafts[_DELEGATOR[role]].signed,  # type: ignore[arg-type]
                       role, drafts[role])


def counts(drafts: dict[str, Metadata], role: str) -> tuple[int, int]:
    """``(valid signatures, threshold)`` of a draft role, by its draft delegator's keys."""
    found = draft_expectation(drafts, role)
    return len(found.signed), found.threshold


def describe(paths: RepoPaths) -> list[str]:
    """One line per role of the draft that still needs signatures."""
    drafts, pending = _load(paths)
    lines = []
    for role in pending:
        have, need = counts(drafts, role)
        lines.append(f"{role} v1 has {have}/{need} signatures")
    return lines


def pending_roles(paths: RepoPaths) -> list[str]:
    return _load(paths)[1] if is_draft(paths) else []


def export(paths: RepoPaths, role: str) -> bytes:
    drafts, pending = _load(paths)
    if role not in pending:
        raise NotFoundError(f"{role} needs no signatures (pending: {', '.join(pending)})")
    return with_expectations(drafts[role], role, [draft_expectation(drafts, role)])


def import_signatures(paths: RepoPaths, data: bytes) -> ImportResult:
    """Merge the valid signatures of ``data`` into its draft role; publish when all are met.

    Signatures by keys the role's draft delegator does not trust, or that do
    not verify, are ignored, each named in the result.
    """
    drafts, pending = _load(paths)
    incoming = read_metadata(data, "the file")
    role = next((r for r in pending if drafts[r].signed_bytes == incoming.signed_bytes), None)
    if role is None:
        raise NotFoundError("the file matches no role of the unpublished repository "
                            "(export it again?)")
    md = drafts[role]
    delegator = drafts[_DELEGATOR[role]].signed
    keys = {k: delegator.get_key(k)  # type: ignore[attr-defined]
            for k in delegator.get_delegated_role(role).keyids}  # type: ignore[attr-defined]
    ignored = merge_signatures(md, incoming, keys, [draft_expectation(drafts, role)], role)
    write_atomic(draft_dir(paths) / f"{role}.json", md.to_bytes(_SERIALIZER))
    if any(have < need for have, need in (counts(drafts, r) for r in pending)):
        return ImportResult(role, False, ignored, describe(paths))
    publish(paths, drafts)
    return ImportResult(role, True, ignored)


def publish(paths: RepoPaths, drafts: dict[str, Metadata]) -> None:
    """Publish the complete first version: every role as signed, snapshot and timestamp anew."""
    repo = CustodyRepository(paths.root)
    repo.completing_genesis = True
    with repo.transaction():
        first = ("root", "targets", "layouts", "releases")  # each delegator before its roles
        for role in first:
            repo.stage_signed(role, drafts[role])
        for role, md in sorted(drafts.items()):
            if role not in (*first, "snapshot", "timestamp"):
                repo.stage_signed(role, md)
        repo.do_snapshot(force=True)
        repo.do_timestamp(force=True)
        repo.after_commit.append(lambda: shutil.rmtree(draft_dir(paths), ignore_errors=True))
    if not paths.metadata_file("root", 1).exists():  # pragma: no cover - commit failed
        raise RepositoryError("the first version could not be published")
