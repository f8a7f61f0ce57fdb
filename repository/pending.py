"""Transactions that wait for offline signatures, saved whole on disk.

A repository transaction (`custody.repository.repo.CustodyRepository.transaction`)
whose offline roles (root, targets, ``layouts``) its keys at hand cannot sign
to threshold is not published and not thrown away: it is saved here, with
*everything* it changes, so that ``custody-keys import`` can complete the
very same change later (`custody.repository.ceremony`):

- the offline roles it edited, with the signatures they already carry;
- the target files those roles list and the transaction added (a layout, the
  Sigstore trusted root): without them the role would name files that are
  nowhere (issue 22, item 1);
- the online-key configuration it brings (a rotated timestamp, snapshot or
  releases key), effective only with the role that trusts it (item 2);
- the online roles to re-sign on completion (``releases`` after its key
  changed); snapshot and timestamp are always re-signed.

Layout on disk: ``private/pending/<name>/change.json`` (the manifest),
``<role>.json`` (TUF metadata) and ``targets/<n>``. A change is written to a
temporary folder and renamed into place, so a kill leaves it whole or absent.

The first version of a repository whose offline keys never came online is
saved the same way, as a *draft* (``private/genesis/``, `custody.repository.genesis`),
because nothing is published yet for it to change.

This module knows files, not signing: it sits below the transaction.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tuf.api.metadata import Metadata
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import JSONSerializer

from custody.repository.config import KeySpec
from custody.repository.errors import NotFoundError, RepositoryError
from custody.repository.storage import RepoPaths, fsync_dir, write_atomic

_SERIALIZER = JSONSerializer(compact=False)
_MANIFEST = "change.json"


def pending_root(paths: RepoPaths) -> Path:
    return paths.private / "pending"


@dataclass
class PendingChange:
    """One transaction short of offline signatures, as the transaction left it.

    ``roles`` are the offline roles it edited, delegators first (a delegator
    before the roles it delegates to), each with the signatures collected so
    far; ``summary`` says in words what the change does, for ``pending show``.
    """

    roles: dict[str, Metadata]
    targets: dict[str, bytes] = field(default_factory=dict)
    online_keys: dict[str, list[KeySpec]] = field(default_factory=dict)
    resign: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    created: str = field(default_factory=lambda: datetime.now(UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"))

    @property
    def name(self) -> str:
        """The folder name: the roles it edits, e.g. ``root`` or ``targets+layouts``."""
        return "+".join(self.roles)

    def folder(self, paths: RepoPaths) -> Path:
        return pending_root(paths) / self.name

    def save(self, paths: RepoPaths) -> None:
        """Write a new change whole (temporary folder, then rename).

        A change whose roles already wait in another change is refused: both
        would be version N+1 of the same role, and completing one would make
        the other unpublishable; silently replacing the first would lose the
        signatures it collected.
        """
        base = pending_root(paths)
        base.mkdir(parents=True, exist_ok=True)
        final = self.folder(paths)
        for other in load_all(paths):
            if set(other.roles) & set(self.roles):
                role = sorted(set(other.roles) & set(self.roles))[0]
                raise RepositoryError(
                    f"{role} already has a pending change ({'; '.join(other.summary) or 'v'})"
                    f": complete it with custody-keys import, or drop it with 'custody-keys "
                    f"pending drop --repo {paths.root} {role}', then try again")
        stage = base / f".{self.name}.{os.getpid()}.tmp"
        shutil.rmtree(stage, ignore_errors=True)
        (stage / "targets").mkdir(parents=True)
        names: dict[str, str] = {}
        manifest = {
            "roles": list(self.roles),
            "targets": names,
            "online_keys": {cls: [spec.to_dict() for spec in specs]
                            for cls, specs in self.online_keys.items()},
            "resign": self.resign,
            "summary": self.summary,
            "created": self.created,
        }
        for i, (path, data) in enumerate(sorted(self.targets.items())):
            write_atomic(stage / "targets" / str(i), data)
            names[path] = str(i)
        for role, md in self.roles.items():
            write_atomic(stage / f"{role}.json", md.to_bytes(_SERIALIZER))
        write_atomic(stage / _MANIFEST, json.dumps(manifest, indent=1).encode(), 0o600)
        shutil.rmtree(final, ignore_errors=True)  # only an unreadable leftover gets here
        os.rename(stage, final)
        fsync_dir(base)

    def published_by(self, read: Callable[[str], Metadata | None]) -> bool:
        """Whether every role is published exactly as saved here, ``read`` giving the
        published role: the commit completed and a kill came before its clean-up."""
        for role, md in self.roles.items():
            current = read(role)
            if current is None or current.signed_bytes != md.signed_bytes:
                return False
        return True

    def save_role(self, paths: RepoPaths, role: str) -> None:
        """Rewrite one role's metadata in place (signatures imported)."""
        write_atomic(self.folder(paths) / f"{role}.json", self.roles[role].to_bytes(_SERIALIZER))

    def remove(self, paths: RepoPaths) -> None:
        shutil.rmtree(self.folder(paths), ignore_errors=True)

    @classmethod
    def load(cls, folder: Path) -> PendingChange:
        try:
            manifest = json.loads((folder / _MANIFEST).read_text())
            roles = {role: Metadata.from_bytes((folder / f"{role}.json").read_bytes())
                     for role in manifest["roles"]}
            targets = {path: (folder / "targets" / name).read_bytes()
                       for path, name in manifest["targets"].items()}
            online = {cls_: [KeySpec(**spec) for spec in specs]
                      for cls_, specs in manifest["online_keys"].items()}
        except (OSError, ValueError, KeyError, TypeError, DeserializationError) as exc:
            raise RepositoryError(f"the pending change in {folder} is unreadable ({exc}): "
                                  "remove that folder to abandon it") from exc
        return cls(roles, targets, online, list(manifest["resign"]),
                   list(manifest["summary"]), manifest["created"])


def load_all(paths: RepoPaths) -> list[PendingChange]:
    """Every saved change, oldest first."""
    base = pending_root(paths)
    if not base.exists():
        return []
    changes = [PendingChange.load(p) for p in sorted(base.iterdir())
               if not p.name.startswith(".") and (p / _MANIFEST).exists()]
    return sorted(changes, key=lambda c: (c.created, c.name))


def clear_leftovers(paths: RepoPaths) -> None:
    """Remove the temporary folders of saves a kill interrupted (call under the lock)."""
    base = pending_root(paths)
    if base.exists():
        for folder in base.glob(".*.tmp"):
            shutil.rmtree(folder, ignore_errors=True)


def change_for(paths: RepoPaths, role: str) -> PendingChange:
    """The saved change that edits ``role``; a one-sentence refusal if none does."""
    if is_draft(paths):
        raise NotFoundError(f"{paths.root} is not published yet: its first version waits for "
                            "signatures (custody-keys pending list), not a change")
    for change in load_all(paths):
        if role in change.roles:
            return change
    waiting = sorted({r for c in load_all(paths) for r in c.roles})
    raise NotFoundError(f"nothing is pending for {role}"
                        + (f" (pending: {', '.join(waiting)})" if waiting else ""))


# -- the first version of a repository (a draft) -----------------------------

def draft_dir(paths: RepoPaths) -> Path:
    return paths.private / "genesis"


def save_draft(paths: RepoPaths, staged: Mapping[str, Metadata], short: Sequence[str]) -> None:
    """Save every role of a new repository; ``short`` are the roles awaiting signatures."""
    folder = draft_dir(paths)
    folder.mkdir(parents=True, exist_ok=True)
    for role, md in staged.items():
        write_atomic(folder / f"{role}.json", md.to_bytes(_SERIALIZER))
    write_atomic(folder / "pending.json", json.dumps(sorted(short)).encode())


def is_draft(paths: RepoPaths) -> bool:
    return (draft_dir(paths) / "pending.json").exists()
