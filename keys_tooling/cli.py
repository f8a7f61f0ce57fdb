"""``custody-keys``: the key holders' command line.

``generate`` and ``show`` work on key files; ``rotate``, ``revoke``,
``export``, ``import`` are the operator's face for the repository's key
operations (`custody.repository.keyops`, `custody.repository.ceremony`), and ``sign`` is the
offline step of a signing ceremony, run wherever the key lives.

Exit codes (repository.errors): 0 done, 1 refused or failed, 2 usage error,
3 saved for a signing ceremony (more signatures needed before anything is
published), 4 the bucket failed: the change is committed locally (or nothing
changed) and ``custody-repo sync`` finishes the upload.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import click
from securesystemslib.signer import Key, Signer

from custody.keys_tooling.cliutil import guarded
from custody.keys_tooling.errors import KeyToolingError
from custody.keys_tooling.keys import (
    KEY_TYPES,
    PASSWORD_ENV,
    generate_key,
    is_signer_uri,
    load_private_pem,
    load_public_key,
    open_signer,
    password_from_env,
    write_key_pair,
)
from custody.repository.errors import exit_code_help


def _fail(message: str) -> NoReturn:
    click.echo(f"custody-keys: {message}", err=True)
    sys.exit(1)


@click.group(help=exit_code_help(
    "Generate and inspect custody keys (securesystemslib key ids, PEM files); rotate, "
    "revoke and sign them through the repository's roles."))
@click.version_option(package_name="custody", prog_name="custody-keys")
def main() -> None:
    pass


@main.command()
@click.argument("name", type=click.Path(dir_okay=False))
@click.option("--type", "key_type", type=click.Choice(sorted(KEY_TYPES)), default="ed25519",
              show_default=True, help="Key algorithm.")
@click.option("--no-password", is_flag=True, help="Write the private key unencrypted.")
@click.option("--password-env", default=PASSWORD_ENV, show_default=True,
              help="Environment variable holding the password (else you are prompted).")
def generate(name: str, key_type: str, no_password: bool, password_env: str) -> None:
    """Write NAME (private, PKCS#8 PEM, encrypted) and NAME.pub (public PEM)."""
    password: bytes | None = None
    if not no_password:
        value = os.environ.get(password_env)
        if value is None:
            if not sys.stdin.isatty():
                _fail(f"no password for {name}: set {password_env}, or pass --no-password")
            value = click.prompt(f"Password for {name}", hide_input=True,
                                 confirmation_prompt=True)
        if not value:
            _fail("an empty password is not allowed; use --no-password for an unencrypted key")
        password = value.encode()
    try:
        signer = generate_key(key_type)
        private, public = write_key_pair(signer, name, password)
    except KeyToolingError as exc:
        _fail(str(exc))
    key = signer.public_key
    click.echo(f"{key_type} key {key.keyid}")
    click.echo(f"  private: {private} ({'encrypted' if password else 'NOT encrypted'})")
    click.echo(f"  public:  {public}")


@main.command()
@click.argument("file")
@click.option("--json", "as_json", is_flag=True, help="Print the securesystemslib key JSON.")
@click.option("--password-env", default=PASSWORD_ENV, show_default=True,
              help="Environment variable holding a private key's password.")
def show(file: str, as_json: bool, password_env: str) -> None:
    """Print the key id, type and scheme of a public or private key FILE."""
    try:
        if is_signer_uri(file):
            _fail(f"{file} is a signer URI; show its public key file instead")
        data = Path(file).read_bytes() if Path(file).is_file() else b""
        key: Key
        if b"PRIVATE KEY" in data:
            key = load_private_pem(file, password_from_env(password_env)).public_key
        else:
            key = load_public_key(file)
    except KeyToolingError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps({**key.to_dict(), "keyid": key.keyid}, indent=1, sort_keys=True))
        return
    click.echo(f"keyid:   {key.keyid}")
    click.echo(f"type:    {key.keytype}")
    click.echo(f"scheme:  {key.scheme}")


# -- key lifecycle: operations on repository roles ---------------------------

PENDING_EXIT = 3


def _load_specs(specs: tuple[str, ...]) -> list[Signer]:
    try:
        return [open_signer(spec) for spec in specs]
    except KeyToolingError as exc:
        _fail(str(exc))


def _repo_operation(repo_dir: Path, sign_with: tuple[str, ...], operation,
                    store: Sequence[tuple[Signer, Path]] = ()):
    """Run ``operation(repo)`` in a transaction, with the offline keys brought as a pool.

    ``store``: new online private keys, written where the configuration will name
    them before the transaction, and removed again unless it is committed or saved
    as a pending change (which names them): a refusal leaves no key file behind.
    """
    from custody.repository.errors import PendingSignaturesError, RepositoryError
    from custody.repository.repo import CustodyRepository

    made = [target for signer, target in store if not target.exists()]
    for signer, target in store:
        if target in made:
            write_key_pair(signer, target, None)  # type: ignore[arg-type]
    kept = False
    try:
        repo = CustodyRepository(repo_dir, pool=_load_specs(sign_with), collect_pending=True)
        with repo.transaction():
            result = operation(repo)
        kept = True
        return result
    except PendingSignaturesError as exc:
        kept = True
        click.echo(f"custody-keys: {exc}", err=True)
        sys.exit(PENDING_EXIT)
    except RepositoryError as exc:  # the exit code of repository.errors' table
        click.echo(f"custody-keys: {exc}", err=True)
        sys.exit(exc.exit_code)
    finally:
        if not kept:
            for target in made:
                target.unlink(missing_ok=True)
                target.with_name(f"{target.name}.pub").unlink(missing_ok=True)


def _new_keys(repo_dir: Path, role: str, specs: tuple[str, ...]):
    """Public keys to add; private ones of online roles, with how the configuration names
    them and where `_repo_operation` stores them for the server: (keys, online, store)."""
    from custody.repository.config import KeySpec

    keys, online, store = [], [], []
    for spec in specs:
        data = Path(spec).read_bytes() if Path(spec).is_file() else b""
        if b"PRIVATE KEY" in data or is_signer_uri(spec):
            signer = open_signer(spec)
            keys.append(signer.public_key)
            if role in ("snapshot", "timestamp", "releases", "bins"):
                if is_signer_uri(spec):
                    public = {**signer.public_key.to_dict(), "keyid": signer.public_key.keyid}
                    online.append((signer, KeySpec(uri=spec, public=public)))
                else:
                    name = f"{role}-{signer.public_key.keyid[:8]}"
                    # named by key id: a file there already is this key
                    store.append((signer, repo_dir / "private" / "keys" / name))
                    online.append((signer, KeySpec(path=f"keys/{name}")))
        else:
            keys.append(load_public_key(spec))
    return keys, online, store


@main.command()
@click.option("--repo", "repo_dir", required=True, type=click.Path(file_okay=False,
              exists=True, path_type=Path))
@click.option("--role", required=True,
              type=click.Choice(["root", "targets", "snapshot", "timestamp", "layouts",
                                 "releases", "bins"]))
@click.option("--add", "add", multiple=True,
              help="Key to trust (public; private or URI for online roles).")
@click.option("--remove", "remove", multiple=True, metavar="KEYID", help="Key id to drop.")
@click.option("--threshold", type=click.IntRange(min=1))
@click.option("--sign-with", "sign_with", multiple=True,
              help="Offline private keys you hold (root, targets, owners').")
def rotate(repo_dir: Path, role: str, add: tuple[str, ...], remove: tuple[str, ...],
           threshold: int | None, sign_with: tuple[str, ...]) -> None:
    """Change the keys (and threshold) of a role; clients follow on their next refresh."""
    from custody.repository.keyops import rotate as do_rotate

    try:
        keys, online, store = _new_keys(repo_dir, role, add)
    except KeyToolingError as exc:
        _fail(str(exc))
    result = _repo_operation(repo_dir, sign_with, lambda repo: do_rotate(
        repo, role, keys, _full_keyids(repo, role, remove), threshold, online), store)
    click.echo(f"{role}: added {_short(result.added)}, removed {_short(result.removed)}, "
               f"threshold {result.threshold}; re-signed {', '.join(result.resigned)}")


@main.command()
@click.option("--repo", "repo_dir", required=True, type=click.Path(file_okay=False,
              exists=True, path_type=Path))
@click.option("--role", required=True,
              type=click.Choice(["snapshot", "timestamp", "releases", "bins"]))
@click.option("--key", "keys", multiple=True, required=True,
              help="Private key file or signer URI the role already trusts.")
def online(repo_dir: Path, role: str, keys: tuple[str, ...]) -> None:
    """Sign an online role with these keys on this publisher (after another rotated them).

    Changes only what this repository directory signs with: each key must be
    one the metadata already trusts for the role. 'rotate' changes the trust.
    """
    from custody.repository.keyops import use_online

    try:
        _, signers, store = _new_keys(repo_dir, role, keys)
    except KeyToolingError as exc:
        _fail(str(exc))
    if len(signers) < len(keys):
        _fail("give private keys or signer URIs: a public key cannot sign")
    ids = _repo_operation(repo_dir, (), lambda repo: use_online(repo, role, signers), store)
    click.echo(f"{role}: this publisher now signs with {_short(ids)}")


def _short(keyids: list[str]) -> str:
    return ", ".join(k[:8] for k in keyids) or "none"


def _full_keyids(repo, role: str, prefixes: tuple[str, ...]) -> list[str]:
    from custody.repository.keyops import resolve_keyid

    return [resolve_keyid(repo, prefix, role) for prefix in prefixes]


@main.command()
@click.option("--repo", "repo_dir", required=True, type=click.Path(file_okay=False,
              exists=True, path_type=Path))
@click.argument("keyid")
@click.option("--sign-with", "sign_with", multiple=True,
              help="Offline private keys you hold (root, targets, owners').")
def revoke(repo_dir: Path, keyid: str, sign_with: tuple[str, ...]) -> None:
    """Stop trusting KEYID everywhere; prints every role it was removed from."""
    from custody.repository.keyops import resolve_keyid
    from custody.repository.keyops import revoke as do_revoke

    def operation(repo):
        return do_revoke(repo, resolve_keyid(repo, keyid))

    results = _repo_operation(repo_dir, sign_with, operation)
    for result in results:
        click.echo(f"revoked {_short(result.removed)} from {result.role} "
                   f"(threshold {result.threshold})")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--key", "keys", multiple=True, required=True, help="Private key or signer URI.")
def sign(file: Path, keys: tuple[str, ...]) -> None:
    """Add signatures to exported TUF metadata (the offline step of a ceremony)."""
    from custody.repository.ceremony import sign_file
    from custody.repository.errors import RepositoryError

    try:
        signed = sign_file(file, _load_specs(keys))
    except RepositoryError as exc:
        _fail(str(exc))
    click.echo(f"signed {file} with {_short(signed)}")


_REPO = click.option("--repo", "repo_dir", required=True,
                     type=click.Path(file_okay=False, exists=True, path_type=Path))


@main.command()
@_REPO
@click.option("--role", required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path))
def export(repo_dir: Path, role: str, output: Path | None) -> None:
    """Write the pending (unsigned or partly signed) metadata of ROLE for signing."""
    from custody.repository import genesis
    from custody.repository.ceremony import export_pending
    from custody.repository.errors import RepositoryError
    from custody.repository.repo import CustodyRepository
    from custody.repository.storage import RepoPaths

    try:
        paths = RepoPaths(repo_dir)
        data = genesis.export(paths, role) if genesis.is_draft(paths) else \
            export_pending(CustodyRepository(repo_dir), role)
    except RepositoryError as exc:
        _fail(str(exc))
    out = output or Path(f"{role}.json")
    out.write_bytes(data)
    click.echo(f"wrote {out}: sign it with 'custody-keys sign {out} --key KEY'")


@main.command("import")
@_REPO
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
def import_(repo_dir: Path, file: Path) -> None:
    """Collect the signatures in FILE; publish the change once its thresholds are met.

    Signatures by keys the role does not trust are ignored, each named with
    the keys the role expects.
    """
    from custody.repository import genesis
    from custody.repository.ceremony import import_signatures
    from custody.repository.errors import RepositoryError
    from custody.repository.storage import RepoPaths

    paths = RepoPaths(repo_dir)
    if genesis.is_draft(paths):  # the first version of a new repository
        try:
            result = genesis.import_signatures(paths, file.read_bytes())
        except RepositoryError as exc:
            _fail(str(exc))
        for sentence in result.ignored:
            click.echo(f"custody-keys: {sentence}", err=True)
        if result.published:
            click.echo(f"{result.role} signed; every role is signed: the repository is "
                       f"published (clients trust {paths.metadata_file('root', 1)})")
            return
        click.echo(f"{result.role} imported; still unpublished: {'; '.join(result.left)}",
                   err=True)
        sys.exit(PENDING_EXIT)

    result = _repo_operation(repo_dir, (),
                             lambda repo: import_signatures(repo, file.read_bytes()))
    for sentence in result.ignored:
        click.echo(f"custody-keys: {sentence}", err=True)
    if result.published:
        click.echo(f"{result.role} published")
        return
    click.echo(f"{result.role} imported; the change still needs signatures: "
               f"{'; '.join(result.left)}", err=True)
    sys.exit(PENDING_EXIT)


@main.group()
def pending() -> None:
    """Changes waiting for offline signatures: list, show, drop."""


@pending.command("list")
@_REPO
def pending_list(repo_dir: Path) -> None:
    """One line per role waiting for signatures (nothing printed: nothing pending)."""
    from custody.repository import genesis
    from custody.repository.ceremony import pending_lines
    from custody.repository.errors import RepositoryError
    from custody.repository.repo import CustodyRepository
    from custody.repository.storage import RepoPaths

    try:
        paths = RepoPaths(repo_dir)
        if genesis.is_draft(paths):
            for line in genesis.describe(paths):
                click.echo(f"first version: {line}")
            return
        for role, version, signatures in pending_lines(CustodyRepository(repo_dir)):
            click.echo(f"{role} v{version}: signatures {signatures}")
    except RepositoryError as exc:
        _fail(str(exc))


@pending.command("show")
@_REPO
@click.argument("role")
def pending_show(repo_dir: Path, role: str) -> None:
    """What the pending change that edits ROLE does, and the signatures it has."""
    from custody.repository.ceremony import show
    from custody.repository.errors import RepositoryError
    from custody.repository.repo import CustodyRepository

    try:
        lines = show(CustodyRepository(repo_dir), role)
    except RepositoryError as exc:
        _fail(str(exc))
    for line in lines:
        click.echo(line)


@pending.command("drop")
@_REPO
@click.argument("role")
def pending_drop(repo_dir: Path, role: str) -> None:
    """Abandon the pending change that edits ROLE (nothing published changes)."""
    from custody.repository.ceremony import drop
    from custody.repository.errors import RepositoryError
    from custody.repository.repo import CustodyRepository
    from custody.repository.storage import locked

    try:
        repo = CustodyRepository(repo_dir)
        with locked(repo.paths):
            change = drop(repo, role)
    except RepositoryError as exc:
        _fail(str(exc))
    click.echo(f"dropped the pending change {change.name}"
               + (f" ({'; '.join(change.summary)})" if change.summary else ""))


#: The console script: bugs exit 70 with one sentence (keys_tooling.cliutil.guarded).
console = guarded("custody-keys", main)
