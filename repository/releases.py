"""Layouts, releases, package indexes and channels: what a repository publishes.

A release is an artifact plus the in-toto evidence of how it was made. Before
anything is staged, the release is checked as a client will check it:
the layout must be one its owners published through the ``layouts`` role,
every link must parse and belong to a step of that layout, and in-toto
verification of the artifact must pass (inspections are not executed unless
the repository is configured to). A broken release is refused here, before
any client sees it.

Target paths (all below the ``targets/`` URL):

- ``packages/<name>/<version>/<artifact file>``, with ``custom["in-toto"]``;
- ``packages/<name>/<version>/<platform>.<artifact file>`` for a version
  published as platform builds (``--platform linux-x86_64``), one per build,
  each with its own links (filed under its own hash) and its own final
  product (`custody.formats.index.build_target`);
- ``in-toto/layouts/<name>.<n>.layout``, n = 1, 2, ... per ``layout add``;
- ``in-toto/links/<artifact sha256>/<link path>`` (sublayout links keep their
  ``<step>.<keyid8>/`` folder);
- ``packages/<name>/<version>/<artifact file>.from-<base version>.zst``: a
  patch that reconstructs the artifact from an earlier version's
  (`custody.formats.delta`), listed in the artifact's ``custom["patches"]``;
- ``packages/<name>/index.json``: versions, their targets, channels.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from packaging.version import Version
from tuf.api.metadata import TargetFile

from custody.formats.custom import InTotoCustom
from custody.formats.delta import DEFAULT_LEVEL, make_patch, patchable
from custody.formats.errors import FormatError
from custody.formats.index import (
    CHANNEL,
    NAME,
    Build,
    PackageIndex,
    VersionEntry,
    artifact_filename,
    build_target,
    parse_version,
)
from custody.formats.patches import Patch, patches_from_custom, patches_to_custom
from custody.formats.platforms import check_platform
from custody.formats.python import PythonRelease, describe_distribution
from custody.formats.sigstore import ROOT_PATH as SIGSTORE_ROOT
from custody.formats.sigstore import SigstoreRootCustom
from custody.intoto.errors import IntotoError
from custody.intoto.keyless import BUNDLE_SUFFIX, SigstoreTrust
from custody.intoto.metadata import Metadata as IntotoMetadata
from custody.intoto.metadata import metadata_from_bytes
from custody.intoto.models import Layout, link_filename
from custody.intoto.verify import InspectionPolicy, MemoryLinks, Verifier, bind_product
from custody.repository.errors import (
    ChannelDowngradeError,
    DuplicateReleaseError,
    InvalidReleaseError,
    NotFoundError,
    SupplyChainError,
)
from custody.repository.repo import LAYOUTS, CustodyRepository

#: Patches are made from this many earlier versions (the newest below the release).
PATCH_BASES = 3
#: A patch this close to the artifact's size saves too little for a request of its own.
MAX_PATCH_SHARE = 0.9
#: The quick first try that tells whether a pair is worth a patch at all.
PROBE_LEVEL = 1
FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}\Z")
LAYOUT_PATH = re.compile(r"in-toto/layouts/(?P<name>[a-z0-9._-]+)\.(?P<n>\d+)\.layout\Z")


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise InvalidReleaseError(
            f"package name {name!r} must be 1-64 lowercase letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    return name


def check_version(version: str) -> str:
    """A PEP 440 version of bounded length (the index's rule), written normalized."""
    try:
        parsed = parse_version(version, "version")
    except FormatError as exc:
        raise InvalidReleaseError(str(exc)) from exc
    if str(parsed) != version:
        raise InvalidReleaseError(f"version {version!r} must be written as {parsed}")
    return version


def check_channel(channel: str) -> str:
    if not CHANNEL.match(channel):
        raise InvalidReleaseError(f"channel {channel!r} must be lowercase letters, digits, '-'")
    return channel


def check_link_path(path: str) -> str:
    """Evidence's relative path: ``<step>.<keyid8>.link`` (maybe in sublayout folders) or
    a keyless functionary's Sigstore bundle ``<step>.<name>.sigstore.json``."""
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or not path or "\\" in path:
        raise InvalidReleaseError(f"link path {path!r} must be relative, without '..'")
    if not pure.name.endswith((".link", BUNDLE_SUFFIX)) or len(pure.parts) > 8:
        raise InvalidReleaseError(f"link file {path!r} must be named <step>.<keyid8>.link "
                                  f"(or <step>.<name>{BUNDLE_SUFFIX} for a Sigstore bundle)")
    return str(pure)


# -- package index -------------------------------------------------------------

def _links_of(info: TargetFile) -> list[str]:
    custom = InTotoCustom.from_custom(info.custom)
    return custom.links if custom else []


def load_index(repo: CustodyRepository, name: str) -> PackageIndex:
    """The package's published (or staged) index; an empty one for a new package."""
    try:
        return PackageIndex.from_bytes(repo.read_target(PackageIndex.target_path(name)),
                                       PackageIndex.target_path(name))
    except NotFoundError:
        return PackageIndex(name)


# -- layouts -------------------------------------------------------------------

def layout_versions(repo: CustodyRepository, name: str) -> list[tuple[int, str]]:
    """``(n, target path)`` of the package's layouts in the ``layouts`` role, oldest first."""
    found = []
    for path in repo.open(LAYOUTS).signed.targets:  # type: ignore[attr-defined]
        match = LAYOUT_PATH.match(path)
        if match and match["name"] == name:
            found.append((int(match["n"]), path))
    return sorted(found)


def _verify_layout_signature(repo: CustodyRepository, layout: IntotoMetadata) -> Layout:
    """The layout must carry a threshold of signatures by the ``layouts`` role's keys."""
    keys, threshold = repo.role_keys(LAYOUTS)
    try:
        layout.verify_threshold(keys, threshold, "layout")
        payload = layout.payload
    except IntotoError as exc:
        raise InvalidReleaseError(f"layout refused: {exc}") from exc
    if not isinstance(payload, Layout):
        raise InvalidReleaseError("the layout file holds a link, not a layout")
    return payload


def add_layout(repo: CustodyRepository, name: str, layout_bytes: bytes) -> str:
    """Publish a new layout version for package ``name``; return its target path.

    Runs inside a transaction whose signers include the ``layouts`` role's
    offline keys (the project owners').
    """
    check_name(name)
    try:
        metadata = metadata_from_bytes(layout_bytes, where="layout")
    except IntotoError as exc:
        raise InvalidReleaseError(f"layout refused: {exc}") from exc
    layout = _verify_layout_signature(repo, metadata)
    if layout.expires_at <= datetime.now(UTC):
        raise InvalidReleaseError(f"layout expired on {layout.expires}")
    existing = layout_versions(repo, name)
    target_path = f"in-toto/layouts/{name}.{existing[-1][0] + 1 if existing else 1}.layout"
    repo.add_target(target_path, layout_bytes)
    repo.publish_metadata()
    return target_path


@dataclass
class Stranded:
    """A published version that a new layout would no longer verify, and why."""

    version: str
    channels: list[str]
    reason: str


def releases_unverified_by(repo: CustodyRepository, name: str,
                           layout_bytes: bytes) -> list[Stranded]:
    """The published versions of ``name`` that ``layout_bytes`` would not verify.

    Clients verify every release against the newest layout (docs/concepts.md),
    so publishing a layout that drops a functionary makes the releases that
    functionary built uninstallable at once. This is the check an owner needs
    before that happens: each version is verified as a client would (links
    from the repository, keys and threshold of the ``layouts`` role,
    inspections skipped) against the new layout. Versions a channel points at
    come first, then the newest.
    """
    try:
        layout = metadata_from_bytes(layout_bytes, where="the new layout")
    except IntotoError as exc:
        raise InvalidReleaseError(f"layout refused: {exc}") from exc
    _verify_layout_signature(repo, layout)  # an unsigned layout is refused, not "stranding"
    keys, threshold = repo.role_keys(LAYOUTS)
    index = load_index(repo, name)
    channels: dict[str, list[str]] = {}
    for channel, version in index.channels.items():
        channels.setdefault(version, []).append(channel)
    stranded = []
    sigstore = sigstore_trust(repo)  # one trusted root (and its sigstore verifier) for all
    for version, entry in index.versions.items():
        for platform, target in entry.targets().items():  # every build must verify
            info = repo.find_target(target)
            if info is None:
                continue
            digest = info.hashes["sha256"]
            prefix = f"in-toto/links/{digest}/"
            links = {path[len(prefix):]: repo.read_target(path)
                     for path in _links_of(info)}
            filename = artifact_filename(target, platform)
            try:
                summary = Verifier(inspections=InspectionPolicy.SKIP, quiet=True,
                                   sigstore=sigstore).verify(
                    layout, keys, MemoryLinks(links), threshold=threshold,
                    parameters=layout_parameters(name, version, filename, platform))
                bind_product(summary, Path(filename), filename, sha256=digest)
            except IntotoError as exc:
                said = f"the {platform} build: {exc}" if platform else str(exc)
                stranded.append(Stranded(version, sorted(channels.get(version, [])), said))
                break
    stranded.sort(key=lambda s: Version(s.version), reverse=True)
    stranded.sort(key=lambda s: not s.channels)  # stable: channels' versions first
    return stranded


def set_sigstore_root(repo: CustodyRepository, data: bytes, expires: datetime) -> str:
    """Publish the Sigstore trusted root keyless steps verify with (``layouts`` role).

    Runs inside a transaction whose signers include the ``layouts`` role's
    offline keys, as `add_layout`. The root must be one the sigstore library
    loads; ``expires`` is when the owners stop vouching for it.
    """
    try:
        SigstoreTrust(data).verifier()
    except IntotoError as exc:
        raise InvalidReleaseError(str(exc)) from exc
    if expires <= datetime.now(UTC):
        raise InvalidReleaseError("the trusted root's expiry must be in the future")
    repo.add_target(SIGSTORE_ROOT, data, custom=SigstoreRootCustom(expires).to_custom())
    repo.publish_metadata()
    return SIGSTORE_ROOT


def sigstore_trust(repo: CustodyRepository) -> SigstoreTrust | None:
    """The published Sigstore trusted root, as the client will use it; None when absent."""
    info = repo.find_target(SIGSTORE_ROOT)
    if info is None:
        return None
    try:
        expires = SigstoreRootCustom.from_custom(info.custom).expires
    except FormatError as exc:
        raise InvalidReleaseError(str(exc)) from exc
    return SigstoreTrust(repo.read_target(SIGSTORE_ROOT), expires=expires)


def remove_layout(repo: CustodyRepository, target_path: str) -> None:
    repo.remove_target(target_path)
    repo.publish_metadata()


def remove_layouts(repo: CustodyRepository, name: str) -> str:
    """Withdraw every layout of package ``name``, which must have no published release.

    Runs inside a transaction whose signers include the owners' keys (or that
    collects a pending change). Returns the paths removed, in words.
    """
    found = layout_versions(repo, name)
    if not found:
        raise NotFoundError(f"package {name} has no layout")
    index = load_index(repo, name)
    if index.versions:
        raise InvalidReleaseError(
            f"package {name} has published versions ({', '.join(sorted(index.versions))}) "
            "that clients verify with its layouts: remove them first (custody-repo remove)")
    for _, path in found:
        repo.remove_target(path)
    repo.publish_metadata()
    return ", ".join(path for _, path in found)


# -- releases ------------------------------------------------------------------

@dataclass
class Release:
    """What a release engineer hands the repository."""

    name: str
    version: str
    artifact: Path
    layout: bytes
    links: Mapping[str, bytes]
    channel: str | None = "stable"
    artifact_name: str | None = None
    allow_channel_downgrade: bool = False
    # One platform's build of the version (linux-x86_64): hosts of other platforms
    # never see it. None: one artifact for every host.
    platform: str | None = None
    # Earlier versions to publish patches from (0: none), and the zstd level.
    patch_bases: int = PATCH_BASES
    patch_level: int = DEFAULT_LEVEL

    @property
    def filename(self) -> str:
        return self.artifact_name or self.artifact.name


def verify_release(repo: CustodyRepository, release: Release) -> tuple[str, str]:
    """Check a release as a client will; return (layout target path, artifact sha256)."""
    check_name(release.name)
    check_version(release.version)
    if release.channel is not None:
        check_channel(release.channel)
    if release.platform is not None:
        check_release_platform(release.platform)
    if not FILENAME.match(release.filename):
        raise InvalidReleaseError(f"artifact file name {release.filename!r} is not allowed")
    digest = hashlib.sha256(release.layout).hexdigest()
    layout_path = next(
        (path for _, path in reversed(layout_versions(repo, release.name))
         if repo.find_target(path).hashes.get("sha256") == digest),  # type: ignore[union-attr]
        None,
    )
    if layout_path is None:
        raise InvalidReleaseError(
            f"the layout is not one published for {release.name!r} in the layouts role; "
            f"its owners add it first with 'custody-repo layout add'"
        )
    layout_md = metadata_from_bytes(release.layout, where=layout_path)
    layout = _verify_layout_signature(repo, layout_md)
    if not release.links:
        raise InvalidReleaseError("a release needs the links of its supply chain")
    steps = {step.name for step in layout.steps}
    for path, data in release.links.items():
        check_link_path(path)
        if path.endswith(BUNDLE_SUFFIX):  # verified with the chain, below
            if not any(path.startswith(f"{step}.") for step in steps):
                raise InvalidReleaseError(f"bundle {path} names no step of the layout "
                                          f"(steps: {', '.join(sorted(steps))})")
        elif "/" not in path:  # a top-level link names a step of this layout
            try:
                payload = metadata_from_bytes(data, where=path).payload
            except IntotoError as exc:
                raise InvalidReleaseError(f"link {path} refused: {exc}") from exc
            step = path.rsplit(".", 2)[0]
            if step not in steps:
                raise InvalidReleaseError(f"link {path} names no step of the layout "
                                          f"(steps: {', '.join(sorted(steps))})")
            if hasattr(payload, "name") and payload.name != step:  # sublayouts have none
                raise InvalidReleaseError(f"link {path} records step {payload.name!r}")
    keys, threshold = repo.role_keys(LAYOUTS)
    policy = InspectionPolicy.RUN if repo.config.run_inspections else InspectionPolicy.SKIP
    # Inspections (when allowed) run in a fresh directory holding only the artifact.
    with tempfile.TemporaryDirectory(prefix="custody-verify-") as tmp:
        workdir = Path(tmp)
        if policy is InspectionPolicy.RUN:
            shutil.copyfile(release.artifact, workdir / release.filename)
        try:
            verifier = Verifier(inspections=policy, workdir=workdir,
                                sigstore=sigstore_trust(repo))
            summary = verifier.verify(
                layout_md, keys, MemoryLinks(dict(release.links)), threshold=threshold,
                parameters=layout_parameters(release.name, release.version, release.filename,
                                             release.platform))
            artifact_digest = bind_product(summary, release.artifact, release.filename)
        except IntotoError as exc:
            raise SupplyChainError(f"in-toto verification of {release.name} "
                                   f"{release.version} failed: {exc}") from exc
    return layout_path, artifact_digest


def layout_parameters(name: str, version: str, filename: str,
                      platform: str | None = None) -> dict[str, str]:
    """Substitution parameters a layout may use; derived from what was asked for.

    A platform build adds ``platform``, so that one layout can say which
    build step made which platform's artifact."""
    parameters = {"name": name, "version": version, "artifact": filename}
    if platform is not None:
        parameters["platform"] = platform
    return parameters


def check_release_platform(platform: str) -> str:
    try:
        return check_platform(platform)
    except FormatError as exc:
        raise InvalidReleaseError(str(exc)) from exc


def _check_channel_move(index: PackageIndex, channel: str, version: str,
                        allowed: bool) -> None:
    """A channel never moves to a lower version unless the operator asked for it.

    Clients refuse to move backwards, so a channel moved back strands every
    client already past the new version and gives fresh clients an older
    build: almost always a backport published to the wrong place.
    """
    current = index.channels.get(channel)
    if current is None or allowed:
        return
    if Version(version) < Version(current):
        raise ChannelDowngradeError(
            f"{index.name} {channel} is at {current}, newer than {version}; publish a backport "
            "with --no-channel or to another channel, or move the channel back on purpose "
            "with --allow-channel-downgrade")


def _python_release(release: Release) -> PythonRelease | None:
    """A wheel or sdist: its project must be the package, its version the release's."""
    try:
        python = describe_distribution(release.artifact, release.filename)
    except FormatError as exc:
        raise InvalidReleaseError(str(exc)) from exc
    if python is None:
        return None
    if release.platform is not None:
        raise InvalidReleaseError(
            f"{release.filename} is a Python distribution: its own tags say which platforms "
            "it is for (pip chooses); publish it without --platform")
    if python.project != release.name:
        raise InvalidReleaseError(
            f"{release.filename} is project {python.project!r}; publish it as package "
            f"{python.project!r} (the normalized name pip and uv ask for)")
    if Version(python.version) != Version(release.version):
        raise InvalidReleaseError(f"{release.filename} is version {python.version}, not "
                                  f"{release.version}")
    return python


def publish_release(repo: CustodyRepository, release: Release) -> str:
    """Verify, then stage the artifact, its links and the updated index; return its path."""
    index = load_index(repo, release.name)
    check_version(release.version)
    wanted = Version(release.version)
    same = next((v for v in index.versions if Version(v) == wanted), None)
    existing = index.versions.get(same) if same is not None else None
    if same is not None and not _adds_a_build(index.versions[same], release):
        spelled = "" if same == release.version else f" (as {same}; PEP 440 equal)"
        build = f" for {release.platform}" if release.platform else ""
        raise DuplicateReleaseError(f"{release.name} {release.version}{build} is already "
                                    f"published{spelled}; versions are immutable")
    if release.channel:
        _check_channel_move(index, release.channel, release.version,
                            release.allow_channel_downgrade)
    python = _python_release(release)
    layout_path, digest = verify_release(repo, release)
    link_paths = []
    for path, data in sorted(release.links.items()):
        target = f"in-toto/links/{digest}/{path}"
        repo.add_target(target, data)
        link_paths.append(target)
    artifact_path = build_target(release.name, release.version, release.platform,
                                 release.filename)
    custom = InTotoCustom(layout_path, link_paths).to_custom()
    if python is not None:
        custom.update(python.to_custom())
    custom.update(patches_to_custom(_publish_patches(repo, index, release, artifact_path)))
    repo.add_target(artifact_path, release.artifact, custom=custom)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if release.platform is None:
        index.versions[release.version] = VersionEntry(artifact_path, now)
    else:
        entry = existing or VersionEntry(None, now)
        entry.builds[release.platform] = Build(artifact_path)
        index.versions[release.version] = entry
    if release.channel:
        index.channels[release.channel] = release.version
    repo.add_target(PackageIndex.target_path(release.name), index.to_bytes())
    repo.publish_metadata()
    return artifact_path


def published_as_is(repo: CustodyRepository, release: Release) -> str | None:
    """The target path under which this very release is published already, else None.

    The same version (as spelled), platform and file name, and the same bytes
    (length and sha256): ``publish`` run again, as a release script run twice
    does. Anything else of an existing version is a `DuplicateReleaseError`
    of `publish_release`: versions are immutable.
    """
    entry = load_index(repo, release.name).versions.get(release.version)
    target = build_target(release.name, release.version, release.platform, release.filename)
    if entry is None or target not in entry.targets().values():
        return None
    info = repo.find_target(target)
    data = release.artifact.read_bytes()
    if info is None or info.length != len(data) or \
            info.hashes.get("sha256") != hashlib.sha256(data).hexdigest():
        return None
    return target


def _publish_patches(repo: CustodyRepository, index: PackageIndex, release: Release,
                     artifact_path: str) -> list[Patch]:
    """Stage patches to the release from its newest earlier versions; list them.

    The bases are the artifacts of the ``patch_bases`` newest versions below
    the release that a host of the release's platform installs (the same
    build, or a version for every host). A patch that saves little
    (`MAX_PATCH_SHARE`) is not published. Each is a target of its own, so
    TUF checks the patch as it arrives, and the host checks what it
    reconstructs against the artifact's own length and hashes.
    """
    if release.patch_bases <= 0:
        return []
    lower = sorted((v for v in index.versions if Version(v) < Version(release.version)),
                   key=Version, reverse=True)
    bases = [(version, target) for version in lower
             if (target := index.versions[version].target_for(release.platform)
                 if release.platform is not None else index.versions[version].target)
             ][:release.patch_bases]
    if not bases:
        return []
    new = release.artifact.read_bytes()
    worth = MAX_PATCH_SHARE * len(new)
    patches = []
    for version, target in bases:
        info = repo.find_target(target)
        if info is None or not patchable(info.length, len(new)):
            continue
        base = repo.read_target(target)
        # zstd -1 first (about 6x faster than -12): releases that share nothing (random
        # payloads, gzip archives) cost a publish a fraction of a second per base.
        if len(make_patch(base, new, PROBE_LEVEL)) >= worth:
            continue
        patch = make_patch(base, new, release.patch_level)
        if len(patch) >= worth:
            continue
        path = f"{artifact_path}.from-{version}.zst"
        repo.add_target(path, patch)
        patches.append(Patch(target, info.hashes["sha256"], path))
    return patches


def _adds_a_build(entry: VersionEntry, release: Release) -> bool:
    """Whether ``release`` is a new platform build of the published version ``entry``.

    A version is immutable once published, build by build: a platform's build
    is added once, and a version for every host takes no builds (nor the
    other way round), so a host never has two artifacts to choose from.
    """
    if release.platform is None or entry.target is not None:
        return False
    return release.platform not in entry.builds


def remove_release(repo: CustodyRepository, name: str, version: str) -> None:
    """Withdraw a version (every build of it): its targets leave metadata; channels
    pointing at it move back."""
    index = load_index(repo, name)
    entry = index.versions.pop(version, None)
    if entry is None:
        raise NotFoundError(f"{name} {version} is not published")
    removed = [repo.remove_target(target) for target in entry.targets().values()]
    for info in removed:  # its patches go with it
        for patch in patches_from_custom(info.custom):
            if repo.find_target(patch.patch) is not None:
                repo.remove_target(patch.patch)
    # Links are filed under the artifact's hash: another version of the same bytes (a
    # re-release under a new number, a build shared by two platforms) shares them,
    # and keeps them.
    shared = {link for other in index.versions.values()
              for target in other.targets().values()
              if (found := repo.find_target(target)) is not None
              for link in _links_of(found)}
    for link in {link for info in removed for link in _links_of(info)}:
        if link not in shared:
            repo.remove_target(link)
    for channel, pinned in list(index.channels.items()):
        if pinned == version:
            latest = index.latest()
            if latest is None:
                del index.channels[channel]
            else:
                index.channels[channel] = latest
    repo.add_target(PackageIndex.target_path(name), index.to_bytes())
    repo.publish_metadata()


def set_channel(repo: CustodyRepository, name: str, channel: str, version: str,
                allow_downgrade: bool = False) -> None:
    """Point a channel at a published version (never lower, unless ``allow_downgrade``)."""
    check_channel(channel)
    index = load_index(repo, name)
    if version not in index.versions:
        raise NotFoundError(f"{name} {version} is not published")
    _check_channel_move(index, channel, version, allow_downgrade)
    index.channels[channel] = version
    repo.add_target(PackageIndex.target_path(name), index.to_bytes())
    repo.publish_metadata()


def links_from_dir(link_dir: Path) -> dict[str, bytes]:
    """Every ``*.link`` and ``*.sigstore.json`` below a directory, keyed by relative path.

    Sublayout folders are kept; Sigstore bundles are keyless functionaries' evidence.
    """
    found = {}
    paths = [*link_dir.rglob("*.link"), *link_dir.glob(f"*{BUNDLE_SUFFIX}")]
    for path in sorted(paths):
        rel = path.relative_to(link_dir).as_posix()
        found[check_link_path(rel)] = path.read_bytes()
    return found


def release_evidence(link_dir: Path, attestations: Sequence[Path] = ()) -> dict[str, bytes]:
    """The links of ``link_dir`` plus attestation files given one by one (``--attestation``).

    An attestation is a key-signed statement (``<step>.<keyid8>.link``) or a
    keyless functionary's Sigstore bundle (``<step>.<name>.sigstore.json``),
    filed under its own name beside the links.
    """
    found = links_from_dir(link_dir)
    for path in attestations:
        name = check_link_path(path.name)
        if name in found:
            raise InvalidReleaseError(f"{name} is given twice (in {link_dir} and as "
                                      "--attestation)")
        found[name] = path.read_bytes()
    return found


__all__ = ["Release", "add_layout", "link_filename", "load_index", "publish_release",
           "published_as_is"]
