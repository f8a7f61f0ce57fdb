"""A new repository whose offline keys never came online: the first signing ceremony.

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

from tuf.api.metadata import Metadata
from tuf.api.serialization.json import JSONSerializer

from repository.ceremony import ImportResult, merge_signatures, read_metadata, with_expectations
from repository.errors import NotFoundError, RepositoryError
from repository.pending import draft_dir, is_draft
from repository.repo import CustodyRepository, Expectation
from repository.storage import RepoPaths, write_atomic

_SERIALIZER = JSONSerializer(compact=False)
_DELEGATOR = {"root": "root", "targets": "root", "layouts": "targets"}


def _load(paths: RepoPaths) -> tuple[dict[str, Metadata], list[str]]:
    folder = draft_dir(paths)
    try:
        pending = json.loads((folder / "pending.json").read_text())
    except FileNotFoundError as exc:
        raise NotFoundError(f"{paths.root} has no unpublished first version") from exc
    drafts = {p.name[: -len(".json")]: Metadata.from_bytes(p.read_bytes())
              for p in folder.glob("*.json") if p.name != "pending.json"}
    return drafts, pending


def expectation(drafts: dict[str, Metadata], role: str) -> Expectation:
    """Whose keys must sign a draft role, by its draft delegator, and which do."""
    md = drafts[role]
    delegator = drafts[_DELEGATOR[role]].signed
    result = delegator.get_verification_result(  # type: ignore[attr-defined]
        role, md.signed_bytes, md.signatures)
    return Expectation(f"draft {_DELEGATOR[role]}", role, sorted(result.signed | result.unsigned),
                       result.threshold, sorted(result.signed))


def counts(drafts: dict[str, Metadata], role: str) -> tuple[int, int]:
    """``(valid signatures, threshold)`` of a draft role, by its draft delegator's keys."""
    found = expectation(drafts, role)
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
    return with_expectations(drafts[role], role, [expectation(drafts, role)])


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
    ignored = merge_signatures(md, incoming, keys, [expectation(drafts, role)], role)
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
