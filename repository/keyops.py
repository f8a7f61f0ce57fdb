"""Key rotation and revocation: operations on the roles that trust keys.

Every key is trusted by exactly one kind of delegator: root trusts the keys
of root, targets, snapshot and timestamp; targets trusts those of ``layouts``
and ``releases``; ``releases`` trusts the hash bins' key. Rotating a role's
keys edits its delegator, then re-signs the role with its new keys, then
snapshot and timestamp, all in one transaction, so clients pick the change
up on their next refresh. A new root is signed by a threshold of the old
root keys and of the new ones (TUF 5.3.4); with too few offline keys at
hand the edit becomes a signing ceremony (`custody.repository.ceremony`).

Online keys (snapshot, timestamp, releases, bins) must be usable by the
server: their new private keys are stored under ``private/keys/`` and the
configuration names them, effective with the root or targets that trusts
them.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

from securesystemslib.signer import Key, Signer
from tuf.api.metadata import Root, Snapshot, Targets, Timestamp

from custody.intoto.errors import IntotoError
from custody.intoto.metadata import metadata_from_bytes
from custody.repository.config import KeySpec
from custody.repository.errors import NotFoundError, RepositoryError
from custody.repository.releases import LAYOUT_PATH
from custody.repository.repo import LAYOUTS, RELEASES, TOP_LEVEL, CustodyRepository

ONLINE = {Snapshot.type: "snapshot", Timestamp.type: "timestamp", RELEASES: "releases",
          "bins": "bins"}


@dataclass
class Rotation:
    """What a rotation or revocation changed, for the operator to read."""

    role: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    threshold: int = 1
    resigned: list[str] = field(default_factory=list)


def _role_entry(repo: CustodyRepository, role: str):  # -> tuf Role
    if role in TOP_LEVEL:
        return repo.open(Root.type).signed.roles[role]  # type: ignore[attr-defined]
    if role == "bins":
        succinct = repo.succinct()
        if succinct is None:
            raise NotFoundError("this repository has no hash bins")
        return succinct
    return repo.open(Targets.type).signed.get_delegated_role(role)  # type: ignore[attr-defined]


def rotate(repo: CustodyRepository, role: str, add: Sequence[Key] = (),
           remove: Sequence[str] = (), threshold: int | None = None,
           online_signers: Sequence[tuple[Signer, KeySpec]] = ()) -> Rotation:
    """Change the keys and threshold trusted for ``role``; re-sign what must be.

    ``role`` is root, targets, snapshot, timestamp, layouts, releases or bins.
    ``online_signers`` are the new private keys of an online role, with how the
    configuration names them.
    """
    entry = _role_entry(repo, role)
    keyids = list(entry.keyids)
    unknown = [k for k in remove if k not in keyids]
    if unknown:
        raise NotFoundError(f"{role} does not trust key(s) {', '.join(k[:8] for k in unknown)}")
    new_ids = [k for k in keyids if k not in remove] + [
        k.keyid for k in add if k.keyid not in keyids]
    new_threshold = threshold if threshold is not None else entry.threshold
    if not 1 <= new_threshold <= len(new_ids):
        raise RepositoryError(
            f"{role} would have {len(new_ids)} key(s) for a threshold of {new_threshold}; "
            "add keys or lower --threshold")
    result = Rotation(role, [k.keyid for k in add if k.keyid not in keyids], list(remove),
                      new_threshold)
    repo.summary.append(
        f"{role} keys: added {', '.join(k[:8] for k in result.added) or 'none'}, removed "
        f"{', '.join(k[:8] for k in result.removed) or 'none'}, threshold {new_threshold}")
    if role in TOP_LEVEL:
        with repo.edit_root() as root:
            for keyid in remove:
                root.revoke_key(keyid, role)
            for key in add:
                root.add_key(key, role)
            root.roles[role].threshold = new_threshold
    elif role in (LAYOUTS, RELEASES):
        with repo.edit_targets() as targets:
            for keyid in remove:
                targets.revoke_key(keyid, role)
            for key in add:
                targets.add_key(key, role)
            targets.get_delegated_role(role).threshold = new_threshold
    else:  # bins: one SuccinctRoles entry names the keys of every bin
        with repo.edit_targets(RELEASES) as releases:
            for keyid in remove:
                releases.revoke_key(keyid)
            for key in add:
                releases.add_key(key)
            assert releases.delegations and releases.delegations.succinct_roles
            releases.delegations.succinct_roles.threshold = new_threshold
    if role in ONLINE:
        _configure_online(repo, ONLINE[role], remove, online_signers, new_ids)
    result.resigned = _resign(repo, role)
    return result


def _configure_online(repo: CustodyRepository, name: str, remove: Sequence[str],
                      online_signers: Sequence[tuple[Signer, KeySpec]],
                      trusted: Sequence[str]) -> None:
    specs = [spec for spec in repo.config.online_keys.get(name, [])
             if spec.signer(repo.paths).public_key.keyid not in remove]
    specs += [spec for signer, spec in online_signers if signer.public_key.keyid in trusted]
    if not specs:
        raise RepositoryError(f"{name} is an online role: give the new private key so the "
                              "server can sign it")
    config = copy.deepcopy(repo.config)
    config.online_keys[name] = specs
    repo.use_config(config)


def use_online(repo: CustodyRepository, role: str,
               online_signers: Sequence[tuple[Signer, KeySpec]]) -> list[str]:
    """Sign online ``role`` with these keys from now on, here; the key ids.

    For a publisher whose keys another publisher rotated (docs/deploy.md,
    "Two publishers"): nothing is re-signed, and each key must be one the
    metadata already trusts for the role, so this changes what this machine
    holds, never what clients trust.
    """
    if role not in ONLINE:
        raise RepositoryError(f"{role} is an offline role: its keys stay with people, "
                              "not on a publisher")
    trusted = set(_role_entry(repo, role).keyids)
    stranger = [s.public_key.keyid[:8] for s, _ in online_signers
                if s.public_key.keyid not in trusted]
    if stranger or not online_signers:
        raise RepositoryError(
            f"{role} trusts key(s) {', '.join(sorted(k[:8] for k in trusted))}, not "
            f"{', '.join(stranger) or 'none given'}: 'custody-keys rotate' changes what it "
            "trusts")
    config = copy.deepcopy(repo.config)
    config.online_keys[ONLINE[role]] = [spec for _, spec in online_signers]
    repo.use_config(config)
    return [s.public_key.keyid for s, _ in online_signers]


def _resign(repo: CustodyRepository, role: str) -> list[str]:
    """Re-sign the rotated role with its new keys, then snapshot and timestamp."""
    resigned = []
    if role == Targets.type or role in (LAYOUTS, RELEASES):
        with repo.edit_targets(role):
            pass
        resigned.append(role)
    elif role == "bins":
        for bin_role in repo.bin_roles():
            with repo.edit_targets(bin_role):
                pass
        resigned.append("bins")
    repo.do_snapshot(force=True)
    repo.do_timestamp(force=True)
    return [*resigned, Snapshot.type, Timestamp.type]


def resolve_keyid(repo: CustodyRepository, prefix: str, role: str | None = None) -> str:
    """The full key id a prefix (as ``status`` prints them) names.

    Looked up among the keys of ``role`` (or of every TUF role) and, without a
    role, the functionaries of the newest published layouts, so that a
    functionary key is found by the prefix the docs allow, as a role's key is.
    An ambiguous prefix is refused; one that matches nothing is returned as is
    (the caller says what trusts it: nothing).
    """
    roles = [role] if role else [*TOP_LEVEL, LAYOUTS, RELEASES] + (
        ["bins"] if repo.config.bins else [])
    matches = {k for r in roles for k in _role_entry(repo, r).keyids if k.startswith(prefix)}
    if role is None:
        matches |= {k for k in functionary_keyids(repo) if k.startswith(prefix)}
    if len(matches) > 1:
        raise RepositoryError(f"key id prefix {prefix} is ambiguous: it matches "
                              f"{', '.join(sorted(k[:12] for k in matches))}; give more of it")
    return matches.pop() if matches else prefix


def where_trusted(repo: CustodyRepository, keyid: str) -> list[str]:
    """Every role that trusts ``keyid``."""
    roles = [role for role in TOP_LEVEL if keyid in _role_entry(repo, role).keyids]
    roles += [role for role in (LAYOUTS, RELEASES) if keyid in _role_entry(repo, role).keyids]
    if repo.config.bins and keyid in _role_entry(repo, "bins").keyids:
        roles.append("bins")
    return roles


def _newest_layouts(repo: CustodyRepository) -> list[tuple[str, object]]:
    """``(target path, layout)`` of the newest published layout of each package."""
    newest: dict[str, tuple[int, str]] = {}
    for path in repo.open(LAYOUTS).signed.targets:  # type: ignore[attr-defined]
        if (match := LAYOUT_PATH.match(path)) and \
                int(match["n"]) > newest.get(match["name"], (-1, ""))[0]:
            newest[match["name"]] = (int(match["n"]), path)
    found: list[tuple[str, object]] = []
    for _, path in sorted(newest.values(), key=lambda item: item[1]):
        try:
            found.append((path, metadata_from_bytes(repo.read_target(path), where=path).payload))
        except (IntotoError, OSError):
            continue
    return found


def functionary_keyids(repo: CustodyRepository) -> set[str]:
    """Every key id the newest published layouts name as functionaries."""
    return {k for _, layout in _newest_layouts(repo) for k in getattr(layout, "keys", {})}


def layouts_naming(repo: CustodyRepository, keyid: str) -> list[str]:
    """The newest published layout of each package that names ``keyid`` as a functionary."""
    return [path for path, layout in _newest_layouts(repo)
            if keyid in getattr(layout, "keys", {})]


def revoke(repo: CustodyRepository, keyid: str,
           online_signers: Sequence[tuple[Signer, KeySpec]] = ()) -> list[Rotation]:
    """Remove ``keyid`` from every role that trusts it; say where that was.

    A role left with fewer keys than its threshold is refused: rotate a
    replacement in first (or lower the threshold) so nothing becomes unsignable.
    """
    roles = where_trusted(repo, keyid)
    if not roles:
        layouts = layouts_naming(repo, keyid)
        if layouts:
            raise NotFoundError(
                f"key {keyid[:8]} is an in-toto functionary key (in {', '.join(layouts)}), not "
                "a TUF role's: revoke it by publishing a layout without it ('custody-intoto "
                "layout new', then 'custody-repo layout add'); clients refuse its links from "
                "their next refresh")
        raise NotFoundError(f"no TUF role trusts key {keyid[:8]}, and no published layout "
                            "names it as a functionary")
    return [rotate(repo, role, remove=[keyid], online_signers=online_signers)
            for role in roles]
