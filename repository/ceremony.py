"""Signing ceremonies: completing a transaction that waits for offline signatures.

A transaction whose root, targets or ``layouts`` edit the keys at hand cannot
sign to threshold is saved whole as a pending change (`custody.repository.pending`).
Then, in any order and on any machines (docs/keys.md):

1. ``custody-keys export --repo DIR --role ROLE -o ROLE.json`` writes the
   role's metadata out, with the keys it expects (a top-level
   ``x-custody-expects`` field, which TUF tools carry along and ignore);
2. ``custody-keys sign ROLE.json --key K`` adds a signature (repeat per key
   holder), and refuses a key the role does not expect, naming the ones it
   does; the file is plain TUF metadata, so any TUF signing tool works too;
3. ``custody-keys import --repo DIR ROLE.json`` keeps the valid signatures by
   keys the role trusts, names the ones it ignores, and once every role of
   the change meets its thresholds (for root: those of both the previous and
   the new root, as TUF requires) commits the same change: its roles, target
   files and online keys, then snapshot and timestamp signed afresh.

``custody-keys pending list|show|drop`` lists, explains and abandons changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from securesystemslib.signer import Key, Signer
from tuf.api.metadata import Metadata
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import JSONSerializer

from custody.repository.errors import NotFoundError, RepositoryError
from custody.repository.pending import PendingChange, change_for, load_all
from custody.repository.repo import CustodyRepository
from custody.repository.signatures import Expectation, signature_valid
from custody.repository.storage import write_atomic

_SERIALIZER = JSONSerializer(compact=False)
EXPECTS = "x-custody-expects"


def read_metadata(data: bytes, where: str) -> Metadata:
    """TUF metadata from a file a person carried around, or a one-sentence refusal."""
    try:
        return Metadata.from_bytes(data)
    except DeserializationError as exc:
        raise RepositoryError(f"{where} is not TUF metadata: {exc}") from exc


@dataclass
class ImportResult:
    """What an import did: the role it matched, whether the change is now published,
    the signatures it ignored (one sentence each) and what is still missing."""

    role: str
    published: bool
    ignored: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)


def with_expectations(md: Metadata, role: str, expectations: list[Expectation]) -> bytes:
    """``md`` as exported: plus the keys that may sign it, for `sign_file` to check."""
    copy = Metadata.from_bytes(md.to_bytes(_SERIALIZER))
    copy.unrecognized_fields[EXPECTS] = {
        "role": role, "version": md.signed.version,
        "by": [{"delegator": e.by, "keyids": e.keyids, "threshold": e.threshold}
               for e in expectations]}
    return copy.to_bytes(_SERIALIZER)


def expected_line(expects: dict) -> str:
    return " and ".join(f"{entry['threshold']} of {', '.join(k[:8] for k in entry['keyids'])}"
                        f" ({entry['delegator']})" for entry in expects["by"])


def _delegators(change: PendingChange) -> dict[str, Metadata]:
    return dict(change.roles)


def _expectations(repo: CustodyRepository, change: PendingChange,
                  role: str) -> list[Expectation]:
    return repo.expectations(role, change.roles[role], _delegators(change))


def pending_lines(repo: CustodyRepository) -> list[tuple[str, int, str]]:
    """``(role, version, signatures)`` for each role of every pending change.

    A role signed to threshold is listed too while its change waits (for
    another role, or because it can no longer be published: `complete`).
    """
    return [(role, md.signed.version,
             repo.describe_signatures(role, md, _delegators(change)))
            for change in load_all(repo.paths) if not change.published_by(repo.published)
            for role, md in change.roles.items()]


def _complete(repo: CustodyRepository, change: PendingChange, role: str) -> bool:
    return all(e.met for e in _expectations(repo, change, role))


def export_pending(repo: CustodyRepository, role: str) -> bytes:
    change = change_for(repo.paths, role)
    return with_expectations(change.roles[role], role, _expectations(repo, change, role))


def show(repo: CustodyRepository, role: str) -> list[str]:
    """The pending change that edits ``role``, in lines for ``custody-keys pending show``."""
    change = change_for(repo.paths, role)
    lines = [f"pending change {change.name}, prepared {change.created}:"]
    lines += [f"  {line}" for line in change.summary]
    for name, md in change.roles.items():
        lines.append(f"  {name} v{md.signed.version}: signatures "
                     f"{repo.describe_signatures(name, md, _delegators(change))}")
    for path, data in sorted(change.targets.items()):
        lines.append(f"  file {path} ({len(data)} bytes)")
    for cls, specs in sorted(change.online_keys.items()):
        lines.append(f"  online keys of {cls}: "
                     f"{', '.join(spec.path or spec.uri or '?' for spec in specs)}")
    if change.resign:
        lines.append(f"  re-signs {', '.join(change.resign)} with their new keys")
    return lines


def drop(repo: CustodyRepository, role: str) -> PendingChange:
    """Abandon the pending change that edits ``role``; nothing published changes."""
    change = change_for(repo.paths, role)
    change.remove(repo.paths)
    return change


def sign_file(path: Path, signers: list[Signer]) -> list[str]:
    """Add each signer's signature to the TUF metadata file ``path`` (the offline step).

    A file exported by custody names the keys that may sign it; a key that is
    not among them is refused, before anything is written, with those keys
    named: a signature the import would drop is better caught by the key holder.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RepositoryError(f"cannot read {path}: {exc.strerror}") from exc
    md = read_metadata(data, str(path))
    expects = md.unrecognized_fields.get(EXPECTS)
    if isinstance(expects, dict) and isinstance(expects.get("by"), list):
        allowed = {k for entry in expects["by"] for k in entry.get("keyids", [])}
        for signer in signers:
            if signer.public_key.keyid not in allowed:
                raise RepositoryError(
                    f"key {signer.public_key.keyid[:8]} is not one that "
                    f"{expects.get('role', 'this role')} v{expects.get('version', '?')} "
                    f"expects: it needs {expected_line(expects)}; nothing was signed")
    for signer in signers:
        md.sign(signer, append=True)
    write_atomic(path, md.to_bytes(_SERIALIZER))
    return [s.public_key.keyid for s in signers]


def merge_signatures(md: Metadata, incoming: Metadata, keys: dict[str, Key],
                     expectations: list[Expectation], role: str) -> list[str]:
    """Copy ``incoming``'s valid signatures by ``keys`` into ``md``; a sentence per other one.

    ``keys`` are the keys that may sign ``role`` (by key id), ``expectations``
    how many of whose keys it needs, for the sentence.
    """
    need = " and ".join(f"{e.threshold} of {', '.join(k[:8] for k in e.keyids)} ({e.by})"
                        for e in expectations)
    ignored = []
    for keyid, signature in incoming.signatures.items():
        if keyid not in keys:
            ignored.append(f"ignored the signature by key {keyid[:8]}: {role} "
                           f"v{md.signed.version} needs {need}")
        elif not signature_valid(keys[keyid], signature, md.signed_bytes):
            ignored.append(f"ignored the signature by key {keyid[:8]}: it does not verify "
                           f"over {role} v{md.signed.version}")
        else:
            md.signatures[keyid] = signature
    return ignored


def import_signatures(repo: CustodyRepository, data: bytes) -> ImportResult:
    """Merge the valid signatures in ``data`` into the pending change it belongs to.

    Runs inside a transaction; commits the whole change (`complete`) once
    every role of it meets its thresholds.
    """
    incoming = read_metadata(data, "the file")
    for change in load_all(repo.paths):
        role = next((r for r, md in change.roles.items()
                     if md.signed_bytes == incoming.signed_bytes), None)
        if role is not None:
            break
    else:
        raise NotFoundError("the file matches no pending change (export it again, or see "
                            "custody-keys pending list)")
    md = change.roles[role]
    expectations = _expectations(repo, change, role)
    ignored = merge_signatures(md, incoming, _trusted_keys(repo, change, role), expectations,
                               role)
    change.save_role(repo.paths, role)
    left = [f"{name} v{other.signed.version} has signatures "
            f"{repo.describe_signatures(name, other, _delegators(change))}"
            for name, other in change.roles.items() if not _complete(repo, change, name)]
    if left:
        return ImportResult(role, False, ignored, left)
    complete(repo, change)
    return ImportResult(role, True, ignored)


def _trusted_keys(repo: CustodyRepository, change: PendingChange,
                  role: str) -> dict[str, Key]:
    """Key objects of every key that may sign ``role`` in this change, by key id."""
    md = change.roles[role]
    if role == "root":
        keys = {k: md.signed.keys[k] for k in md.signed.roles["root"].keyids}
        previous = repo.published("root")
        if previous is not None:
            keys.update({k: previous.signed.keys[k]
                         for k in previous.signed.roles["root"].keyids})
        return keys
    name = repo.delegator(role)
    delegator = (change.roles.get(name) or repo.open(name)).signed
    return {k: delegator.get_key(k)  # type: ignore[attr-defined]
            for k in delegator.get_delegated_role(role).keyids}  # type: ignore[attr-defined]


def complete(repo: CustodyRepository, change: PendingChange) -> None:
    """Stage the whole change in ``repo``'s transaction; it is removed after the commit.

    Its roles must still be the next version of what is published: a change
    prepared before another one of the same role was published is refused
    (drop it and make it again).
    """
    for role, md in change.roles.items():
        current = repo.published(role)
        if current is not None and current.signed.version != md.signed.version - 1:
            raise RepositoryError(
                f"{role} changed since this version was prepared (now v{current.signed.version}"
                f", this is v{md.signed.version}): drop it with 'custody-keys pending drop "
                f"--repo {repo.paths.root} {role}' and make the change again")
    repo.use_online_keys(change.online_keys)  # effective with the role that trusts them
    for role, md in change.roles.items():
        repo.stage_signed(role, md, {p: d for p, d in change.targets.items()
                                     if repo.role_for_target(p) == role})
    for role in change.resign:
        if repo.published(role) is not None:
            with repo.edit_targets(role):
                pass
    repo.do_snapshot(force=True)
    repo.do_timestamp(force=True)
    paths = repo.paths
    repo.after_commit.append(lambda: change.remove(paths))


__all__ = ["EXPECTS", "ImportResult", "complete", "drop", "export_pending",
           "import_signatures", "pending_lines", "read_metadata", "show", "sign_file",
           "with_expectations"]
