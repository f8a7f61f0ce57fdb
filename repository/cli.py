"""``custody-repo``: the repository operators' command line.

Exit codes (the table of `custody.repository.errors`): 0 success, 1 a refused or
failed operation (one sentence on stderr), 2 usage errors, 3 saved as a
pending change that needs offline signatures, 4 the bucket failed
(credentials, network): the change is committed in the local tree (or
nothing changed) and ``custody-repo sync DIR`` finishes the upload.
Offline keys are named on the command line for the operation that needs them
and never stored; ``CUSTODY_KEY_PASSWORD`` (or a prompt) unlocks encrypted
ones.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from securesystemslib.signer import Key, Signer

from custody.intoto.errors import IntotoError
from custody.keys_tooling.clickutil import PORT, POSITIVE, Seconds, fails_cleanly
from custody.keys_tooling.cliutil import guarded
from custody.keys_tooling.errors import KeyToolingError
from custody.keys_tooling.keys import (
    PASSWORD_ENV,
    generate_key,
    is_signer_uri,
    key_password,
    load_public_key,
    open_signer,
    password_variable,
    write_key_pair,
)
from custody.repository import maintenance
from custody.repository.config import ONLINE_ROLES, KeySpec, RepoConfig
from custody.repository.errors import EXIT_PENDING, RepositoryError, exit_code_help
from custody.repository.repo import CustodyRepository
from custody.repository.storage import RepoPaths, locked

_fails_cleanly = fails_cleanly("custody-repo", RepositoryError, KeyToolingError, IntotoError)


def _key_or_signer(spec: str) -> tuple[Key, Signer | None]:
    """A private key path or signer URI gives a signer; a public key file only a key."""
    if is_signer_uri(spec):
        signer = open_signer(spec)
        return signer.public_key, signer
    data = Path(spec).read_bytes() if Path(spec).is_file() else b""
    if b"PRIVATE KEY" in data:
        signer = open_signer(spec)
        return signer.public_key, signer
    return load_public_key(spec), None


def _new_key(path: Path, encrypt: bool, said: list[str]) -> Signer:
    password = key_password(path, new=True) if encrypt else None
    if encrypt and password is None:
        raise RepositoryError(f"set {password_variable(path)} (or {PASSWORD_ENV}) to encrypt "
                              f"the generated key {path.name}, or pass --no-password")
    signer = generate_key()
    write_key_pair(signer, path, password)
    said.append(f"generated {path.name} key {signer.public_key.keyid[:8]} at "
                f"{{directory}}/offline-keys/{path.name} "
                f"({'encrypted' if password else 'NOT encrypted'})")
    return signer


@click.group(help=exit_code_help(
    "Operate a custody repository: TUF metadata for artifacts and their in-toto evidence."))
@click.version_option(package_name="custody", prog_name="custody-repo")
def main() -> None:
    pass


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--bins", type=click.IntRange(0, 1 << 16), default=0, show_default=True,
              help="Hash-bin delegations under 'releases' (a power of two; 0 for none).")
@click.option("--root-key", "root_keys", multiple=True, help="Root key (private, URI or .pub).")
@click.option("--root-threshold", type=POSITIVE, default=1, show_default=True)
@click.option("--targets-key", help="Targets key (private, URI or .pub).")
@click.option("--layout-key", "layout_keys", multiple=True,
              help="Project owner key (private, URI or .pub) for the 'layouts' role.")
@click.option("--layout-threshold", type=POSITIVE, default=1, show_default=True)
@click.option("--online-key", help="Private key for the online roles (copied into private/).")
@click.option("--expires", "expiry", multiple=True, metavar="ROLE=DAYS",
              help="Expiry period of a role, e.g. timestamp=1.")
@click.option("--no-password", is_flag=True, help="Write generated offline keys unencrypted.")
@click.option("--public", "public_url", metavar="s3://BUCKET[/PREFIX]",
              help="Also publish the served tree to this S3-compatible bucket (credentials "
                   "from the AWS environment); every write command keeps it in step.")
@click.option("--endpoint-url", help="The object store's endpoint (MinIO, Ceph, Swift, GCS).")
@_fails_cleanly
def init(directory: Path, bins: int, root_keys: tuple[str, ...], root_threshold: int,
         targets_key: str | None, layout_keys: tuple[str, ...], layout_threshold: int,
         online_key: str | None, expiry: tuple[str, ...], no_password: bool,
         public_url: str | None, endpoint_url: str | None) -> None:
    """Create a repository in DIRECTORY, generating every key not given.

    Offline keys may be given as public keys (.pub): the repository is then
    created with its first version awaiting a signing ceremony (exit 3), and
    published when the ceremony completes. All or nothing: the repository is
    built beside DIRECTORY and moved into place at the end, so a failure (or
    a kill) leaves DIRECTORY as it was and a re-run starts afresh.
    """
    if RepoPaths(directory).config.exists():
        raise RepositoryError(f"{directory} already holds a repository")
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise RepositoryError(f"{directory} exists and is not an empty directory")
    directory.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{directory.name}.init-", dir=directory.parent))
    said: list[str] = []
    try:
        if public_url:
            from custody.repository.bucket import check_bucket

            said.append(check_bucket(public_url, endpoint_url))
        pending = _build(stage, bins, root_keys, root_threshold, targets_key, layout_keys,
                         layout_threshold, online_key, expiry, not no_password, said,
                         public_url, endpoint_url)
        if directory.exists():
            directory.rmdir()  # empty, checked above
        os.rename(stage, directory)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    for line in said:
        click.echo(line.format(directory=directory))
    paths = RepoPaths(directory)
    if (directory / "offline-keys").exists():
        click.echo(f"move the keys in {directory / 'offline-keys'} offline (see docs/keys.md)")
    if pending:
        from custody.repository.genesis import describe

        click.echo(f"custody-repo: repository created in {directory}, not yet published: "
                   f"{'; '.join(describe(paths))}. For each of {', '.join(pending)}: "
                   f"custody-keys export --repo {directory} --role ROLE -o ROLE.json, then "
                   "custody-keys sign ROLE.json --key KEY where the key is, then "
                   f"custody-keys import --repo {directory} ROLE.json", err=True)
        sys.exit(EXIT_PENDING)
    click.echo(f"repository created in {directory}: serve {paths.public}; clients trust "
               f"{paths.metadata_file('root', 1)}")


def _build(directory: Path, bins: int, root_keys: tuple[str, ...], root_threshold: int,
           targets_key: str | None, layout_keys: tuple[str, ...], layout_threshold: int,
           online_key: str | None, expiry: tuple[str, ...], encrypt: bool,
           said: list[str], public_url: str | None = None,
           endpoint_url: str | None = None) -> list[str]:
    """Make the repository in ``directory``; the offline roles left pending, if any."""
    from custody.repository import genesis

    paths = RepoPaths(directory)
    offline_dir = directory / "offline-keys"

    def keys_for(specs: Sequence[str], name: str) -> tuple[list[Key], list[Signer]]:
        if not specs:
            signer = _new_key(offline_dir / name, encrypt, said)
            return [signer.public_key], [signer]
        pairs = [_key_or_signer(s) for s in specs]
        return [k for k, _ in pairs], [s for _, s in pairs if s is not None]

    root_public, root_signers = keys_for(root_keys, "root")
    targets_public, targets_signers = keys_for([targets_key] if targets_key else [], "targets")
    layout_public, layout_signers = keys_for(layout_keys, "owner")
    paths.keys.mkdir(parents=True, exist_ok=True)
    online_spec = KeySpec(path="keys/online")
    if online_key and is_signer_uri(online_key):  # a KMS or HSM key: the URI is enough
        online = open_signer(online_key)
        online_spec = KeySpec(uri=online_key, public={**online.public_key.to_dict(),
                                                      "keyid": online.public_key.keyid})
    else:
        online = open_signer(online_key) if online_key else generate_key()
        # The server signs unattended: its copy of the key is unencrypted, mode 0600.
        write_key_pair(online, paths.keys / "online", None)  # type: ignore[arg-type]
        said.append(f"online key {online.public_key.keyid[:8]} at {{directory}}/private/keys/"
                    "online (unencrypted: the server signs with it unattended)")
    config = RepoConfig(bins=bins, online_keys={role: [online_spec] for role in ONLINE_ROLES},
                        public_url=public_url, endpoint_url=endpoint_url)
    for item in expiry:
        role, _, days = item.partition("=")
        if role not in config.expiry_days or not days.isdigit():
            raise click.UsageError(f"--expires takes ROLE=DAYS for a known role, got {item!r}")
        config.expiry_days[role] = int(days)
    root_ids = {s.public_key.keyid for s in root_signers}
    targets_ids = {s.public_key.keyid for s in targets_signers}
    genesis.create(
        directory, root_signers=root_signers, root_threshold=root_threshold,
        extra_root_keys=[k for k in root_public if k.keyid not in root_ids],
        targets_signers=targets_signers,
        extra_targets_keys=[k for k in targets_public if k.keyid not in targets_ids],
        layout_keys=layout_public, layout_threshold=layout_threshold,
        layout_signers=layout_signers, online={role: [online] for role in ONLINE_ROLES},
        config=config, allow_offline_pending=True,
    )
    return genesis.pending_roles(paths)


_OWNER_KEYS = click.option(
    "--key", "keys", multiple=True,
    help="Owner key(s) that sign the 'layouts' role (private key or URI). A public key "
         "(.pub), or none, when the owners' keys are offline: the change is saved for a "
         "signing ceremony (exit 3).")


def _owner_signers(specs: Sequence[str]) -> list[Signer]:
    """The private owner keys among ``specs``; a ``.pub`` says "the key is offline"."""
    return [signer for _, signer in map(_key_or_signer, specs) if signer is not None]


def _as_owners(repo: CustodyRepository, operation: Callable[[], str]) -> str:
    """Run ``operation`` in a transaction the owners sign.

    Short of their signatures, the transaction is saved as a pending change
    and `custody.repository.errors.PendingSignaturesError` ends the command with exit
    code 3 (``_fails_cleanly``).
    """
    with repo.transaction():
        return operation()


@main.group()
def layout() -> None:
    """Layouts of the project owners (the 'layouts' role)."""


@layout.command("add")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("layout_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@_OWNER_KEYS
@click.option("--name", help="Package the layout is for (default: the file name's stem).")
@click.option("--new", "new_package", is_flag=True,
              help="The package has no layout yet: start it (a new package is never implied).")
@click.option("--yes", is_flag=True,
              help="Publish even if a channel's current version would no longer verify.")
@_fails_cleanly
def layout_add(directory: Path, layout_file: Path, keys: tuple[str, ...],
               name: str | None, new_package: bool, yes: bool) -> None:
    """Publish LAYOUT_FILE as the newest layout of its package.

    Clients verify every release against the newest layout, so the published
    versions it no longer verifies are listed first (channels' versions
    first); if a channel's current version is among them, --yes is needed.
    A package that has no layout yet needs --new, so that a file named
    differently (hello-v2.layout) never starts a package by accident. The
    package's newest layout added again (a script run twice) publishes
    nothing and succeeds, with --new or without.
    """
    from custody.repository.releases import add_layout, layout_versions, releases_unverified_by

    package = name or layout_file.name.split(".")[0]
    layout_bytes = layout_file.read_bytes()
    repo = CustodyRepository(directory, pool=_owner_signers(keys), collect_pending=True)
    repo.catch_up()  # what follows reads the tree: another publisher may have moved it on
    existing = layout_versions(repo, package)
    if existing and repo.read_target(existing[-1][1]) == layout_bytes:
        click.echo(f"kept {existing[-1][1]}: {package}'s newest layout is this file already; "
                   "nothing published")  # the same command run again (--new or not)
        return
    if not existing and not new_package:
        known = _packages_with_layouts(repo)
        raise RepositoryError(
            f"package {package} has no layout yet: pass --new to start it, or --name to add "
            f"the layout to an existing package ({', '.join(known) or 'none has a layout'})")
    if existing and new_package:
        raise RepositoryError(f"package {package} already has {len(existing)} layout(s); "
                              "drop --new to add the next one")
    stranded = releases_unverified_by(repo, package, layout_bytes)
    for item in stranded:
        held = f" (the {', '.join(item.channels)} channel's version)" if item.channels else ""
        click.echo(f"custody-repo: {package} {item.version}{held} would no longer install: "
                   f"{item.reason}", err=True)
    on_channels = [s for s in stranded if s.channels]
    if on_channels and not yes:
        raise RepositoryError(
            f"not published: {len(on_channels)} channel version(s) of {package} would become "
            "uninstallable for every client; point those channels at versions the new layout "
            "verifies (custody-repo channel; re-record and publish one after the layout if "
            "none is), or pass --yes to accept that clients refuse them meanwhile")
    path = _as_owners(repo, lambda: add_layout(repo, package, layout_bytes))
    click.echo(f"published {path}")


def _packages_with_layouts(repo: CustodyRepository) -> list[str]:
    from custody.repository.releases import LAYOUT_PATH

    return sorted({m["name"] for p in repo.open("layouts").signed.targets  # type: ignore[attr-defined]
                   if (m := LAYOUT_PATH.match(p))})


@layout.command("remove")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("name")
@_OWNER_KEYS
@_fails_cleanly
def layout_remove(directory: Path, name: str, keys: tuple[str, ...]) -> None:
    """Withdraw every layout of package NAME (one that has no published release).

    For a layout published by mistake (a new package started by a typo). A
    package with releases keeps its layouts: clients verify the releases
    with them; remove the releases first (custody-repo remove).
    """
    from custody.repository.releases import remove_layouts

    repo = CustodyRepository(directory, pool=_owner_signers(keys), collect_pending=True)
    removed = _as_owners(repo, lambda: remove_layouts(repo, name))
    click.echo(f"removed {removed}")


@main.group("sigstore-root")
def sigstore_root() -> None:
    """The Sigstore trusted root keyless steps are verified with (the 'layouts' role)."""


@sigstore_root.command("set")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("root_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@_OWNER_KEYS
@click.option("--expires-in", "days", type=POSITIVE, default=365, show_default=True,
              metavar="DAYS", help="Days the owners vouch for this root.")
@_fails_cleanly
def sigstore_root_set(directory: Path, root_file: Path, keys: tuple[str, ...],
                      days: int) -> None:
    """Publish ROOT_FILE (Sigstore's trusted_root.json) for clients to verify bundles with.

    Signed by the owners' offline keys like a layout; clients never contact
    Sigstore, so rotating the root is this command again. Take the file from
    Sigstore's own TUF repository (the target trusted_root.json of
    tuf-repo-cdn.sigstore.dev, which sigstore-python also caches).
    """
    from datetime import UTC, datetime

    from custody.repository.releases import set_sigstore_root

    repo = CustodyRepository(directory, pool=_owner_signers(keys), collect_pending=True)
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=days)
    path = _as_owners(repo, lambda: set_sigstore_root(repo, root_file.read_bytes(), expires))
    click.echo(f"published {path}, vouched for until {expires:%Y-%m-%d}")


def _release_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options that describe a release, shared by ``publish`` and ``push``."""
    for option in reversed([
        click.argument("artifact", type=click.Path(dir_okay=False, exists=True,
                                                   path_type=Path)),
        click.option("--name", required=True),
        click.option("--version", required=True),
        click.option("--layout", "layout_file", required=True,
                     type=click.Path(dir_okay=False, exists=True, path_type=Path)),
        click.option("--links", "link_dir", required=True,
                     type=click.Path(file_okay=False, exists=True, path_type=Path)),
        click.option("--attestation", "attestations", multiple=True,
                     type=click.Path(dir_okay=False, exists=True, path_type=Path),
                     help="An attestation filed beside the links: a Sigstore bundle named "
                          "STEP.NAME.sigstore.json or a signed statement STEP.KEYID8.link "
                          "(repeatable)."),
        click.option("--channel", default="stable", show_default=True),
        click.option("--no-channel", is_flag=True,
                     help="Publish without moving any channel (a backport)."),
        click.option("--allow-channel-downgrade", is_flag=True,
                     help="Let the channel move to a version lower than it names."),
        click.option("--platform", default=None, metavar="OS-MACHINE",
                     help="Publish ARTIFACT as this platform's build of the version "
                          "(linux-x86_64, linux-aarch64, darwin-arm64): once per build, "
                          "each with its own links; hosts of other platforms never get it."),
    ]):
        func = option(func)
    return func


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@_release_options
@_fails_cleanly
def publish(directory: Path, artifact: Path, name: str, version: str, layout_file: Path,
            link_dir: Path, attestations: tuple[Path, ...], channel: str, no_channel: bool,
            allow_channel_downgrade: bool, platform: str | None) -> None:
    """Verify a release's supply chain, then publish ARTIFACT with its links.

    The channel never moves to a lower version than it names unless
    --allow-channel-downgrade says so: publish a backport with --no-channel.
    A version of platform builds takes one publish per build (--platform);
    hosts whose platform has no build of the version find none, so publish
    the builds with --no-channel and move the channel with the last one.
    Versions are immutable: a published version is refused, except the very
    same file again (a script run twice), which publishes nothing and succeeds.
    """
    from custody.repository.releases import (
        Release,
        publish_release,
        published_as_is,
        release_evidence,
    )

    repo = CustodyRepository(directory)
    release = Release(name, version, artifact, layout_file.read_bytes(),
                      release_evidence(link_dir, attestations), None if no_channel else channel,
                      allow_channel_downgrade=allow_channel_downgrade, platform=platform)
    with repo.transaction():  # the check too: on the tree as caught up with the bucket
        kept = published_as_is(repo, release)
        target = kept or publish_release(repo, release)
    if kept is not None:  # the same command run again: versions are immutable, and it is
        click.echo(f"kept {kept}: {name} {version} is published with this very file "
                   "already; nothing published, no channel moved")
        return
    click.echo(f"published {target}")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("name")
@click.argument("version")
@_fails_cleanly
def remove(directory: Path, name: str, version: str) -> None:
    """Withdraw NAME VERSION (channels pointing at it move to the newest left)."""
    from custody.repository.releases import remove_release

    repo = CustodyRepository(directory)
    with repo.transaction():
        remove_release(repo, name, version)
    click.echo(f"removed {name} {version}")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("name")
@click.argument("channel_name", metavar="CHANNEL")
@click.argument("version")
@click.option("--allow-channel-downgrade", is_flag=True,
              help="Let the channel move to a version lower than it names.")
@_fails_cleanly
def channel(directory: Path, name: str, channel_name: str, version: str,
            allow_channel_downgrade: bool) -> None:
    """Point CHANNEL of package NAME at VERSION (never lower, unless asked)."""
    from custody.repository.releases import set_channel

    repo = CustodyRepository(directory)
    with repo.transaction():
        set_channel(repo, name, channel_name, version, allow_channel_downgrade)
    click.echo(f"{name} {channel_name} -> {version}")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Re-sign every online role now.")
@_fails_cleanly
def bump(directory: Path, force: bool) -> None:
    """Re-sign online roles that are close to expiry (run it from a timer).

    Offline roles (root, targets, layouts) cannot be re-signed here: one that
    has expired is named and the exit code is 1, since clients refuse every
    update until a signing ceremony re-signs it (docs/keys.md).
    """
    from datetime import UTC, datetime

    from custody.repository.repo import OFFLINE_ROLES
    from custody.repository.status import is_bin

    repo = CustodyRepository(directory)
    with repo.transaction():
        bumped = maintenance.bump_online(repo, force)
    bins = [role for role in bumped if is_bin(role)]
    named = [role for role in bumped if not is_bin(role)]
    if bins:
        named.insert(1 if named and named[0] == "releases" else 0, f"{len(bins)} bins")
    click.echo(f"re-signed {', '.join(named)}" if bumped else "nothing due")
    now = datetime.now(UTC)
    expired = [(role, md.signed.expires) for role in OFFLINE_ROLES
               if (md := repo.published(role)) is not None and md.signed.expires <= now]
    if expired:
        raise RepositoryError(
            f"{', '.join(f'{role} expired at {when:%Y-%m-%d %H:%M} UTC' for role, when in expired)}"
            ": clients refuse every update until a signing ceremony re-signs "
            f"{'it' if len(expired) == 1 else 'them'} (custody-keys rotate with no change, "
            "docs/keys.md)")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@click.option("--bins", "all_bins", is_flag=True, help="One line per hash bin, not a summary.")
@click.option("--check", "check_days", type=Seconds(allow_zero=True), metavar="DAYS",
              help="Exit 1 if a role expires within DAYS, is under-signed, or a ceremony "
                   "is pending (for cron and CI).")
@_fails_cleanly
def status(directory: Path, as_json: bool, all_bins: bool, check_days: float | None) -> None:
    """Roles: version, expiry, keys, threshold, signatures; hash bins in one line."""
    from custody.repository import genesis
    from custody.repository.ceremony import pending_lines
    from custody.repository.status import is_bin, problems, summarize_bins

    repo = CustodyRepository(directory)
    if genesis.is_draft(repo.paths):  # created, but the first ceremony is not done
        click.echo(f"{directory} is not published yet: "
                   + "; ".join(genesis.describe(repo.paths)))
        if check_days is not None:
            click.echo("custody-repo status: the first signing ceremony is pending", err=True)
            sys.exit(1)
        return
    rows = maintenance.status(repo)
    pending = {role: (version, signatures)
               for role, version, signatures in pending_lines(repo)}
    if as_json:
        click.echo(json.dumps({"roles": rows, "pending": {
            role: {"version": v, "signatures": d} for role, (v, d) in pending.items()}},
            indent=1))
    else:
        for row in rows:
            if is_bin(row["role"]) and not all_bins:
                continue
            keys = ",".join(k[:8] for k in row["keys"])
            click.echo(f"{row['role']:<12} v{row['version']:<5} expires {row['expires']}  "
                       f"signed {row['signatures']}/{row['threshold']}  keys {keys}")
        summary = summarize_bins(rows)
        if summary is not None and not all_bins:
            click.echo(summary.line())
        for role, (version, signatures) in pending.items():
            click.echo(f"pending: {role} v{version} has signatures {signatures}")
    if check_days is not None:
        margin = timedelta(hours=repo.config.bump_margin_hours / 2)
        found = problems(rows, list(pending), check_days, margin)
        for sentence in found:
            click.echo(f"custody-repo status: {sentence}", err=True)
        if found:
            sys.exit(1)


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--keep", type=click.IntRange(min=1), default=3, show_default=True,
              help="Snapshots whose files are kept (the newest always is).")
@click.option("--retention", type=Seconds(allow_zero=True), metavar="HOURS",
              help="Keep what a snapshot current in the last HOURS reaches (default: the "
                   "configuration's gc_retention_hours, 24).")
@_fails_cleanly
def gc(directory: Path, keep: int, retention: float | None) -> None:
    """Delete metadata and targets that no recent snapshot reaches (and from the bucket)."""
    repo = CustodyRepository(directory)
    with repo.transaction():
        removed = maintenance.gc(
            repo, keep, None if retention is None else timedelta(hours=retention))
    click.echo(f"removed {len(removed)} file(s)")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("output", type=click.Path(file_okay=False, path_type=Path))
@click.option("--package", "packages", multiple=True, required=True,
              help="A package to include (repeat).")
@_fails_cleanly
def export(directory: Path, output: Path, packages: tuple[str, ...]) -> None:
    """Write a self-contained mirror of PACKAGES into OUTPUT, for hosts with no network.

    Clients read it with 'custody init --url file:///path/to/OUTPUT'; every TUF and
    in-toto check applies unchanged.
    """
    from custody.repository.export import export_mirror

    repo = CustodyRepository(directory)
    with locked(repo.paths):
        files, size = export_mirror(repo, output, packages)
    click.echo(f"exported {files} files ({size / 2**20:.1f} MiB) to {output}: hosts use "
               f"custody init --url {output.resolve().as_uri()} --root ROOT, where ROOT is the "
               "1.root.json shipped with the client, never the copy on the medium "
               "(docs/deploy.md)")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--delete", is_flag=True,
              help="Also delete at once what the tree does not have (a bucket that must be "
                   "exactly this tree); by default gc removes old versions, after the "
                   "retention window.")
@_fails_cleanly
def sync(directory: Path, delete: bool) -> None:
    """Upload what the bucket lacks of the local served tree (safe order, timestamp last)."""
    from custody.repository.bucket import sync as sync_bucket

    repo = CustodyRepository(directory)
    bucket = repo.bucket()
    if bucket is None:
        raise RepositoryError(f"{directory} publishes to no bucket (custody-repo init --public)")
    with repo.coordinated(behind_ok=True):  # another publisher's newer state first
        uploaded, deleted, left = sync_bucket(repo.paths, bucket, delete)
    kept = f"; left {left} object(s) this tree does not have (--delete removes them)" \
        if left else ""
    click.echo(f"{bucket.location}: uploaded {uploaded}, deleted {deleted}{kept}")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=PORT, default=8080, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--bump-interval", type=Seconds(allow_zero=True), default=3600.0,
              show_default=True,
              help="Seconds between checks for online roles to re-sign (0: never).")
@_fails_cleanly
def serve(directory: Path, host: str, port: int, workers: int, bump_interval: float) -> None:
    """Serve DIRECTORY's tree and publish API under gunicorn."""
    from custody.repository.server import serve as run

    run(directory, host, port, workers, bump_interval or None)


@main.command()
@_release_options
@click.option("--server", required=True, help="Repository URL, e.g. http://127.0.0.1:8080")
@click.option("--token", envvar="CUSTODY_TOKEN", required=True,
              help="API token (or CUSTODY_TOKEN).")
@_fails_cleanly
def push(artifact: Path, server: str, token: str, name: str, version: str,
         layout_file: Path, link_dir: Path, attestations: tuple[Path, ...], channel: str,
         no_channel: bool, allow_channel_downgrade: bool, platform: str | None) -> None:
    """Upload a release to a repository server's publish API."""
    from custody.repository.push import push_release

    body = push_release(server, token, name, version, artifact, layout_file, link_dir,
                        None if no_channel else channel,
                        allow_channel_downgrade=allow_channel_downgrade,
                        attestations=attestations, platform=platform)
    click.echo(f"published {body['target']}")


@main.group()
def rollout() -> None:
    """Staged rollouts: a channel's new version for a growing share of hosts."""


def _rollout_op(directory: Path, operation: Callable[..., Any], *args: Any) -> Any:
    repo = CustodyRepository(directory)
    with repo.transaction():
        return operation(repo, *args)


def _on_rollout(func: Callable[..., Any]) -> Callable[..., Any]:
    """The arguments every rollout command takes: DIRECTORY NAME CHANNEL."""
    for argument in (click.argument("channel"), click.argument("name"),
                     click.argument("directory", type=click.Path(file_okay=False,
                                                                 path_type=Path))):
        func = argument(func)
    return func


def _show(result: Any) -> None:
    click.echo(f"{result.version} at {result.percent:g}% ({result.state}"
               f"{': ' + result.reason if result.reason else ''})")


@rollout.command("start")
@_on_rollout
@click.argument("version")
@click.option("--percent", type=click.FloatRange(0, 100), required=True)
@click.option("--max-failure-rate", type=click.FloatRange(0, 1),
              help="Pause by itself when more of the reporting hosts fail their health check.")
@click.option("--min-reports", type=POSITIVE, default=20, show_default=True,
              help="Hosts that must report before the failure rate counts.")
@_fails_cleanly
def rollout_start(directory: Path, name: str, channel: str, version: str, percent: float,
                  max_failure_rate: float | None, min_reports: int) -> None:
    """Move CHANNEL of NAME to VERSION for PERCENT of the hosts."""
    from custody.repository import rollouts

    _show(_rollout_op(directory, rollouts.start, name, channel, version, percent,
                      max_failure_rate, min_reports))


@rollout.command("raise")
@_on_rollout
@click.argument("percent", type=click.FloatRange(0, 100))
@_fails_cleanly
def rollout_raise(directory: Path, name: str, channel: str, percent: float) -> None:
    """Give the new version to PERCENT of the hosts (only adds hosts)."""
    from custody.repository import rollouts

    _show(_rollout_op(directory, rollouts.set_percent, name, channel, percent))


@rollout.command("pause")
@_on_rollout
@click.option("--reason", default="paused by hand", show_default=True)
@_fails_cleanly
def rollout_pause(directory: Path, name: str, channel: str, reason: str) -> None:
    """Stop adding hosts (those on the new version stay)."""
    from custody.repository import rollouts

    _show(_rollout_op(directory, rollouts.pause, name, channel, reason))


@rollout.command("resume")
@_on_rollout
@_fails_cleanly
def rollout_resume(directory: Path, name: str, channel: str) -> None:
    """Continue a paused rollout."""
    from custody.repository import rollouts

    _show(_rollout_op(directory, rollouts.resume, name, channel))


@rollout.command("complete")
@_on_rollout
@_fails_cleanly
def rollout_complete(directory: Path, name: str, channel: str) -> None:
    """Every host gets the new version: the channel moves to it."""
    from custody.repository import rollouts

    version = _rollout_op(directory, rollouts.complete, name, channel)
    click.echo(f"{name} {channel} -> {version}")


@rollout.command("abort")
@_on_rollout
@_fails_cleanly
def rollout_abort(directory: Path, name: str, channel: str) -> None:
    """End the rollout, the channel unchanged (hosts that moved stay)."""
    from custody.repository import rollouts

    version = _rollout_op(directory, rollouts.abort, name, channel)
    click.echo(f"rollout of {name} {version} on {channel} ended; {channel} unchanged")


@rollout.command("status")
@_on_rollout
@_fails_cleanly
def rollout_status(directory: Path, name: str, channel: str) -> None:
    """Hosts in the rollout, reported successes and failures by reason, why it paused."""
    from custody.repository import rollouts
    from custody.repository.reports import ReportStore

    repo = CustodyRepository(directory)
    store = ReportStore.open(repo.paths)
    try:
        for line in rollouts.status(repo, store, name, channel).lines():
            click.echo(line)
    finally:
        store.close()


@main.group()
def token() -> None:
    """API tokens: publishing, health reports, operators."""


@token.command("create")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("name")
@click.option("--scope", type=click.Choice(["publish", "report", "operator", "metrics"]),
              default="publish", show_default=True,
              help="publish: releases and rollouts (CI); report: health reports only (give "
                   "it to the fleet); operator: everything, and the dashboard; metrics: "
                   "/metrics only (Prometheus's scrape).")
@_fails_cleanly
def token_create(directory: Path, name: str, scope: str) -> None:
    """Create a token for NAME (shown once; stored hashed)."""
    from custody.repository.tokens import create_token

    RepoConfig.load(RepoPaths(directory))
    token_id, secret = create_token(RepoPaths(directory), name, scope)
    click.echo(secret)
    click.echo(f"token id {token_id} for {name}", err=True)


@token.command("revoke")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("token_id")
@_fails_cleanly
def token_revoke(directory: Path, token_id: str) -> None:
    """Revoke the token with TOKEN_ID."""
    from custody.repository.tokens import revoke_token

    revoke_token(RepoPaths(directory), token_id)
    click.echo(f"revoked {token_id}")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@_fails_cleanly
def backup(directory: Path, out: Path) -> None:
    """Write DIRECTORY (tree, private state, reports, tokens) to OUT, a .tar.gz.

    Taken under the writers' lock, so no change is half in it; OUT appears
    whole or not at all. Keep it where the online key is safe: it holds it.
    """
    from custody.repository.backup import backup as take

    summary = take(RepoPaths(directory), out)
    click.echo(f"backed up {summary.files} files, {summary.reports} report(s) to {out} "
               f"(timestamp v{summary.versions.get('timestamp')}, "
               f"snapshot v{summary.versions.get('snapshot')})")


@main.command()
@click.argument("archive", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@_fails_cleanly
def restore(archive: Path, directory: Path) -> None:
    """Restore a backup into DIRECTORY (new or empty), every file checked first.

    Restore the newest backup: publishing from an older one would sign
    version numbers that clients already hold.
    """
    from custody.repository.backup import restore as put_back

    summary = put_back(archive, directory)
    click.echo(f"restored {summary.files} files, {summary.reports} report(s) into "
               f"{directory} (timestamp v{summary.versions.get('timestamp')}, "
               f"snapshot v{summary.versions.get('snapshot')}); serve or publish from it")


@main.group()
def database() -> None:
    """Where reports and tokens live: SQLite in private/ (default) or a PostgreSQL server."""


@database.command("show")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@_fails_cleanly
def database_show(directory: Path) -> None:
    """Print where the fleet state lives (a server's URL without its password)."""
    from custody.repository.database import redact

    config = RepoConfig.load(RepoPaths(directory))
    click.echo(redact(config.database) if config.database
               else f"sqlite: {RepoPaths(directory).private / 'reports.sqlite'}")


@database.command("set")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("url")
@_fails_cleanly
def database_set(directory: Path, url: str) -> None:
    """Move reports and tokens to the PostgreSQL server URL (postgresql://USER@HOST/DB).

    The server is checked first and the state copied before the
    configuration names it: a failure leaves the repository as it was.
    Every serve of this repository (and a second publisher) then shares it.
    """
    from custody.repository.database import redact
    from custody.repository.maintenance import move_fleet_state

    paths = RepoPaths(directory)
    with locked(paths):
        tokens, reports = move_fleet_state(paths, url)
    click.echo(f"fleet state now in {redact(url)}: {tokens} token(s) and {reports} report(s) "
               "copied; restart custody-repo serve")


#: The console script: bugs exit 70 with one sentence (keys_tooling.cliutil.guarded).
console = guarded("custody-repo", main)
