"""Signing ceremonies: offline roles that need more signatures than one person brings.

When an edit of root, targets or layouts is short of signatures, the new
version is saved under ``private/pending/<role>/`` with the signatures it
has, together with the target files it adds and the configuration it needs.
Then, in any order and on any machines:

1. ``custody-keys export --repo DIR --role ROLE -o ROLE.json`` writes it out;
2. ``custody-keys sign ROLE.json --key K`` adds a signature (repeat per key
   holder; the file is plain TUF metadata, so any TUF signing tool works);
3. ``custody-keys import --repo DIR ROLE.json`` keeps the valid signatures by
   keys the role trusts, and publishes once the threshold is met (for root:
   the thresholds of both the previous and the new root, as TUF requires).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, Root
from tuf.api.serialization.json import JSONSerializer

from repository.config import RepoConfig
from repository.errors import NotFoundError, PendingSignaturesError, RepositoryError
from repository.repo import signature_valid
from repository.storage import write_atomic

_SERIALIZER = JSONSerializer(compact=False)


def read_metadata(data: bytes, where: str) -> Metadata:
    """TUF metadata from a file a person carried around, or a one-sentence refusal."""
    from tuf.api.serialization import DeserializationError

    try:
        return Metadata.from_bytes(data)
    except DeserializationError as exc:
        raise RepositoryError(f"{where} is not TUF metadata: {exc}") from exc


def pending_dir(repo, role: str) -> Path:  # repo: CustodyRepository
    return repo.paths.private / "pending" / role


def _counts(repo, role: str, md: Metadata) -> list[tuple[str, int, int]]:
    """``(whose keys, valid signatures, threshold)`` for each delegator that must agree."""
    checks = []
    if role == Root.type:
        delegators = [("new root", md.signed)]
        previous = repo.published(Root.type)
        if previous is not None and previous.signed.version < md.signed.version:
            delegators.append(("previous root", previous.signed))
    else:
        delegators = [(repo.delegator(role), repo.open(repo.delegator(role)).signed)]
    for name, delegator in delegators:
        result = delegator.get_verification_result(role, md.signed_bytes, md.signatures)
        checks.append((name, len(result.signed), result.threshold))
    return checks


def describe(repo, role: str, md: Metadata) -> str:
    return ", ".join(f"{have}/{need} by the {name}'s keys" for name, have, need in
                     _counts(repo, role, md))


def save_pending(repo, role: str, md: Metadata) -> PendingSignaturesError:
    """Save ``md`` (and what the transaction staged for it) for a ceremony."""
    folder = pending_dir(repo, role)
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "targets").mkdir(parents=True)
    manifest = {}
    for i, (path, source) in enumerate(sorted(repo.staged_targets().items())):
        if repo.role_for_target(path) != role:
            continue
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        write_atomic(folder / "targets" / str(i), data)
        manifest[path] = str(i)
    write_atomic(folder / "targets.json", json.dumps(manifest, indent=1).encode())
    write_atomic(folder / "config.json", json.dumps(repo.config.to_dict(), indent=1).encode(),
                 0o600)
    write_atomic(folder / "metadata.json", md.to_bytes(_SERIALIZER))
    counts = _counts(repo, role, md)
    have = min(c[1] for c in counts)
    need = max(c[2] for c in counts)
    return PendingSignaturesError(
        f"{role} v{md.signed.version} has signatures {describe(repo, role, md)}; it is saved "
        f"for signing: custody-keys export --repo {repo.paths.root} --role {role}, then "
        "custody-keys sign and custody-keys import",
        role, have, need)


@dataclass
class Pending:
    role: str
    metadata: Metadata
    targets: dict[str, bytes]
    config: RepoConfig


def load_pending(repo, role: str) -> Pending:
    folder = pending_dir(repo, role)
    try:
        md = Metadata.from_bytes((folder / "metadata.json").read_bytes())
    except FileNotFoundError as exc:
        raise NotFoundError(f"nothing is pending for {role}") from exc
    manifest = json.loads((folder / "targets.json").read_text())
    targets = {path: (folder / "targets" / name).read_bytes() for path, name in manifest.items()}
    config = RepoConfig.from_dict(json.loads((folder / "config.json").read_text()))
    return Pending(role, md, targets, config)


def pending_roles(repo) -> list[str]:
    base = repo.paths.private / "pending"
    return sorted(p.name for p in base.iterdir() if (p / "metadata.json").exists()) \
        if base.exists() else []


def export_pending(repo, role: str) -> bytes:
    return load_pending(repo, role).metadata.to_bytes(_SERIALIZER)


def sign_file(path: Path, signers: list[Signer]) -> list[str]:
    """Add each signer's signature to the TUF metadata file ``path`` (the offline step)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RepositoryError(f"cannot read {path}: {exc.strerror}") from exc
    md = read_metadata(data, str(path))
    for signer in signers:
        md.sign(signer, append=True)
    write_atomic(path, md.to_bytes(_SERIALIZER))
    return [s.public_key.keyid for s in signers]


def import_signatures(repo, data: bytes) -> tuple[str, bool]:
    """Merge the valid signatures in ``data`` into the pending role it matches.

    Returns (role, published). Runs inside a transaction; publishes the role
    (and re-signs snapshot and timestamp) when every threshold is met.
    """
    incoming = read_metadata(data, "the file")
    for role in pending_roles(repo):
        pending = load_pending(repo, role)
        if pending.metadata.signed_bytes == incoming.signed_bytes:
            break
    else:
        raise NotFoundError("the file matches no pending role (export it again?)")
    trusted = repo_trusted_for_pending(repo, role, pending.metadata)
    md = pending.metadata
    for keyid, signature in incoming.signatures.items():
        if keyid in trusted and signature_valid(trusted[keyid], signature, md.signed_bytes):
            md.signatures[keyid] = signature
    write_atomic(pending_dir(repo, role) / "metadata.json", md.to_bytes(_SERIALIZER))
    if any(have < need for _, have, need in _counts(repo, role, md)):
        return role, False
    publish_pending(repo, pending)
    return role, True


def repo_trusted_for_pending(repo, role: str, md: Metadata) -> dict:
    if role == Root.type:
        keys = {k: md.signed.keys[k] for k in md.signed.roles[Root.type].keyids}
        previous = repo.published(Root.type)
        if previous is not None:
            keys.update({k: previous.signed.keys[k]
                         for k in previous.signed.roles[Root.type].keyids})
        return keys
    delegator = repo.open(repo.delegator(role)).signed
    return {k: delegator.get_key(k) for k in delegator.get_delegated_role(role).keyids}


def publish_pending(repo, pending: Pending) -> None:
    role, md = pending.role, pending.metadata
    current = repo.published(role)
    if current is not None and current.signed.version != md.signed.version - 1:
        raise RepositoryError(
            f"{role} changed since this version was prepared (now v{current.signed.version}); "
            "prepare it again")
    repo.use_config(pending.config)  # the online keys the new version expects
    repo.stage_signed(role, md, pending.targets)
    repo.do_snapshot(force=True)
    repo.do_timestamp(force=True)
    repo.after_commit.append(lambda: shutil.rmtree(pending_dir(repo, role), ignore_errors=True))
