"""TUF refresh, then in-toto verification of each artifact: the client pipeline.

`SecureUpdater` wraps `tuf.ngclient.Updater` (it does not re-implement TUF)
and adds what DESIGN.md's pipeline asks of every artifact:

1. one TUF refresh per session, a session being one command or one poll
   (root chain, timestamp, snapshot, targets: freshness, rollback,
   mix-and-match, lengths), retried on the next mirror when one answers
   with something that does not verify;
2. the target's ``custom["in-toto"]``; none means refusal unless the caller
   opts out;
3. the layout and links downloaded through TUF too;
4. in-toto verification in a fresh private directory holding only the
   artifact, with the layout keys and threshold of the ``layouts``
   delegation (or keys pinned in the client's configuration), and layout
   parameters derived from what the caller asked for;
5. the delivered file bound to a product of the layout's final step.

An artifact may arrive as a patch against one the cache holds
(`download_artifact`): transport only, the reconstructed bytes pass step 1's
length and hash checks before anything reads them.

Which layout: the newest one the owners published for the package in the
``layouts`` role, whatever layout the release was published with. A new
layout (for instance one that drops a revoked functionary) therefore
governs every release from the next refresh on: older releases stay
installable only while the current layout still verifies them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from securesystemslib.signer import Key
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, Root, TargetFile, Targets
from tuf.ngclient import Updater, UpdaterConfig

from custody.client.config import ClientConfig
from custody.client.errors import (
    ClientError,
    IntotoRefusal,
    MissingSupplyChainError,
    PackageNotFoundError,
    RepositoryUnreachable,
    TufRefusal,
)
from custody.client.fetcher import VIRTUAL, MirrorFetcher, MirrorsUnreachable
from custody.formats.custom import InTotoCustom
from custody.formats.errors import FormatError
from custody.formats.index import PackageIndex, VersionEntry, artifact_filename, parse_version
from custody.formats.patches import Patch, patches_from_custom
from custody.formats.sigstore import ROOT_PATH as SIGSTORE_ROOT
from custody.formats.sigstore import SigstoreRootCustom

if TYPE_CHECKING:  # imported when used: a poll that finds nothing new never needs it
    from custody.intoto.keyless import SigstoreTrust

log = logging.getLogger(__name__)
LAYOUTS_ROLE = "layouts"
LAYOUT_PATH = re.compile(r"in-toto/layouts/(?P<name>[a-z0-9._-]+)\.(?P<n>\d+)\.layout\Z")
LINK_PREFIX = "in-toto/links/"


@dataclass
class Resolved:
    """A package version the repository offers, found through its TUF-protected index."""

    name: str
    version: str
    target: TargetFile
    platform: str | None = None  # the build's platform; None: the version's one artifact

    @property
    def filename(self) -> str:
        """The artifact's own name (a build's target path adds its platform in front)."""
        return artifact_filename(self.target.path, self.platform)


@dataclass
class Verified:
    """An artifact that passed TUF and in-toto: where it is and what proved it."""

    resolved: Resolved
    path: Path
    sha256: str
    layout: str
    warnings: list[str]


def layout_parameters(resolved: Resolved) -> dict[str, str]:
    """What a layout's ``{name}``-style parameters mean for ``resolved``: what the host
    asked for, as the repository checked it (`custody.repository.releases`)."""
    parameters = {"name": resolved.name, "version": resolved.version,
                  "artifact": resolved.filename}
    if resolved.platform is not None:
        parameters["platform"] = resolved.platform
    return parameters


def _refusal(exc: Exception, doing: str) -> TufRefusal:
    return TufRefusal(f"TUF refused {doing}: {type(exc).__name__}: {exc}")


def _is_outage(exc: Exception) -> bool:
    """Whether a failure is the network's (nothing was received that failed a check)."""
    return isinstance(exc, MirrorsUnreachable | tuf_errors.DownloadHTTPError)


def lost_root_link(metadata_dir: Path) -> bytes | None:
    """The oldest kept root when ``root.json`` is gone, else None (ngclient reads it).

    ngclient re-points ``root.json`` at ``root_history/N.root.json`` on every
    start by removing the link and then making it again: a process killed
    between the two (seen with SIGKILL during an update) leaves no root.json,
    and every later start would fail (python-tuf PR #3010, open, makes the
    link atomically; until a release has it, this repairs it). The history
    itself is written atomically, so the client starts again from its oldest
    root, the one it was given at init or the oldest it verified after, and
    ngclient verifies each newer local version on the next refresh: nothing
    that was not verified before becomes trusted, and no root version is lost.
    """
    if (metadata_dir / "root.json").exists():
        return None
    versions = sorted(
        (int(p.name.split(".", 1)[0]), p)
        for p in (metadata_dir / "root_history").glob("*.root.json")
        if p.name.split(".", 1)[0].isdigit())
    if not versions:
        return None
    log.warning("%s/root.json was lost (interrupted); starting again from root "
                "version %d of its history", metadata_dir, versions[0][0])
    return versions[0][1].read_bytes()


class _Sink:
    """Hands downloaded chunks to consumers on their own threads, while the next ones arrive.

    One thread per consumer (each hash): hashlib releases the GIL, so on two
    cores hashing overlaps the download and the file's write (which stays on
    the receiving thread: a third thread only added hand-offs, ~10% slower).
    Each queue is bounded (at most 16 chunks in flight), so memory stays flat
    whatever the artifact's size. A consumer's failure is raised in the caller.
    """

    def __init__(self, consumers: list[Any]) -> None:
        self._error: BaseException | None = None
        self._queues: list[queue.Queue[bytes | None]] = []
        self._threads: list[threading.Thread] = []
        for consume in consumers:
            feed: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
            thread = threading.Thread(target=self._drain, args=(feed, consume), daemon=True)
            self._queues.append(feed)
            self._threads.append(thread)
            thread.start()

    def _drain(self, feed: queue.Queue[bytes | None], consume: Any) -> None:
        try:
            while (chunk := feed.get()) is not None:
                consume(chunk)
        except BaseException as exc:
            self._error = exc
            while feed.get() is not None:  # keep the producer from blocking
                pass

    def put(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        for feed in self._queues:
            feed.put(chunk)

    def _stop(self) -> None:
        for feed, thread in zip(self._queues, self._threads, strict=True):
            if thread.is_alive():
                feed.put(None)
        for thread in self._threads:
            thread.join()

    def close(self) -> None:
        """Wait until every chunk is consumed; raise a consumer's failure."""
        self._stop()
        if self._error is not None:
            raise self._error

    def __enter__(self) -> _Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()


def _signed_mismatch(info: TargetFile, length: int, hashers: dict[str, Any]) -> str | None:
    """How bytes of ``length`` with these running hashes differ from what TUF signed, if so.

    One check for a download and for a patch's rebuild: either is kept only when it is,
    to the byte, the target the online keys signed.
    """
    if length != info.length:
        return f"has {length} bytes, its signed length is {info.length}"
    for algorithm, hasher in hashers.items():
        if hasher.hexdigest() != info.hashes[algorithm]:
            return f"does not match its signed {algorithm} hash"
    return None


class SecureUpdater:
    """One session of the client pipeline over a client home (see module docstring).

    A session is one TUF refresh, as python-tuf's `Updater` is made for one
    refresh cycle: the first lookup refreshes from the trusted metadata on
    disk, every later lookup of the session reuses that refresh, and an
    outage met by it ends the session's lookups at once (no second round of
    timeouts). Whatever lives longer than one command or one poll (an agent,
    the supervisor) makes a new session each time instead of keeping one.
    """

    def __init__(self, home: Path, config: ClientConfig | None = None,
                 fetcher: MirrorFetcher | None = None, progress: Any = None) -> None:
        self.home = home
        self.config = config or ClientConfig.load(home)
        self.metadata_dir = home / "metadata"
        self.cache_dir = home / "cache"
        self.fetcher = fetcher or MirrorFetcher(
            self.config.urls, self.config.timeout, self.config.min_rate,
            self.config.slow_grace, progress=progress, network=self.config.network())
        self._updater: Updater | None = None
        self._outage: RepositoryUnreachable | None = None
        # The refreshed root's consistent_snapshot (one refresh per session; _target_path).
        self._hash_prefixed: bool | None = None
        self._platform: str | None = None  # read when a version of builds is met

    @property
    def platform(self) -> str:
        """The platform whose builds this host installs (`ClientConfig.host_platform`)."""
        if self._platform is None:
            self._platform = self.config.host_platform()
        return self._platform

    # -- TUF ------------------------------------------------------------
    def _new_updater(self) -> Updater:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        return Updater(str(self.metadata_dir), VIRTUAL + "metadata/", str(self.cache_dir),
                       VIRTUAL + "targets/", fetcher=self.fetcher, config=UpdaterConfig(),
                       bootstrap=lost_root_link(self.metadata_dir))

    def _with_mirrors(self, doing: str, operation: Any) -> Any:
        """Run a TUF operation; on a refusal, retry it with each other mirror first."""
        refusal: Exception | None = None
        last: Exception | None = None
        attempts = len(self.fetcher.mirrors)
        for attempt in range(attempts):
            try:
                return operation()
            except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as exc:
                last = exc
                if not _is_outage(exc):
                    refusal = exc
            if attempt + 1 < attempts:
                log.warning("mirror %s: %s; trying the next mirror",
                            self.fetcher.order()[0], last)
            self.fetcher.rotate()
            self._updater = None
        assert last is not None
        if refusal is not None:  # some mirror answered with something that did not verify
            raise _refusal(refusal, doing)
        raise RepositoryUnreachable(
            f"the repository is unreachable, try later: {doing} failed on "
            f"{', '.join(self.fetcher.mirrors)} ({last})")

    def refresh(self) -> Updater:
        """One TUF refresh per session (later calls reuse it)."""
        if self._outage is not None:  # one outage per session: no second round of timeouts
            raise self._outage
        if self._updater is None:
            def operation() -> Updater:
                updater = self._new_updater()
                updater.refresh()
                return updater

            try:
                self._updater = self._with_mirrors("the repository metadata", operation)
            except RepositoryUnreachable as exc:
                self._outage = exc
                raise
        return self._updater

    def target(self, path: str) -> TargetFile | None:
        return self._with_mirrors(f"the lookup of {path}",
                                  lambda: self.refresh().get_targetinfo(path))

    def download(self, info: TargetFile) -> Path:
        """The target's verified bytes on disk; a cached verified copy is not fetched again."""
        def operation() -> Path:
            updater = self.refresh()
            local = self.cache_dir / info.path
            local.parent.mkdir(parents=True, exist_ok=True)
            cached = updater.find_cached_target(info, str(local))
            return Path(cached) if cached else self._stream_target(info, local)

        return self._with_mirrors(f"the download of {info.path}", operation)

    def download_artifact(self, info: TargetFile) -> Path:
        """An artifact's verified bytes on disk: cached, else rebuilt from a patch, else
        downloaded whole.

        A patch (``custom["patches"]``, `custody.formats.patches`) is tried when
        the cache holds its base, the artifact of an earlier version with the
        hash the patch names. Whatever goes wrong with it (refused by TUF,
        corrupt, truncated, made from another base, unreachable) only costs
        the patch's download: the artifact is then downloaded whole, as
        without patches.
        """
        local = self.cache_dir / info.path
        local.parent.mkdir(parents=True, exist_ok=True)
        cached = self.refresh().find_cached_target(info, str(local))
        if cached:
            return Path(cached)
        try:
            patches = patches_from_custom(info.custom)
        except FormatError as exc:
            log.info("%s lists patches this client cannot read (%s); downloading it whole",
                     info.path, exc)
            patches = []
        if not patches:
            return self.download(info)
        # zstd is imported here, not at start-up: only a host with a patch to apply needs it.
        from custody.formats.delta import PatchError

        for patch in patches:
            base = self.cache_dir / patch.base
            try:
                base_bytes = base.read_bytes() if base.is_file() else None
            except OSError:
                continue
            if base_bytes is None or hashlib.sha256(base_bytes).hexdigest() != patch.base_sha256:
                continue
            try:
                return self._rebuild(info, patch, base_bytes)
            except (ClientError, PatchError, OSError) as exc:
                # Transport, not a verdict: said with -v; the whole download's own
                # refusal (if any) is the one sentence the host sees.
                log.info("%s: the patch %s did not rebuild it (%s); downloading it whole",
                         info.path, patch.patch, exc)
                break
        return self.download(info)

    def _rebuild(self, info: TargetFile, patch: Patch, base: bytes) -> Path:
        """Apply a patch (a TUF target itself) to ``base``; keep the result only if it is
        the artifact: its signed length (never exceeded while writing) and every hash."""
        from custody.formats.delta import CHUNK, PatchError, apply_patch

        patch_info = self.target(patch.patch)
        if patch_info is None:
            raise TufRefusal(f"{patch.patch} is listed as a patch but not in TUF metadata")
        patch_file = self.download(patch_info)
        local = self.cache_dir / info.path
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            hashers = {algorithm: hashlib.new(algorithm) for algorithm in info.hashes}
        except ValueError as exc:
            raise PatchError(f"{info.path} lists a hash algorithm this client lacks") from exc

        try:
            with tempfile.NamedTemporaryFile(dir=local.parent, prefix=".patched-",
                                             delete=False) as out:
                def write(data: bytes) -> None:
                    out.write(data)
                    for hasher in hashers.values():
                        hasher.update(data)

                try:
                    with open(patch_file, "rb") as source:
                        written = apply_patch(base, iter(lambda: source.read(CHUNK), b""),
                                              info.length, write)
                    mismatch = _signed_mismatch(info, written, hashers)
                    if mismatch:
                        raise PatchError(f"what the patch rebuilt {mismatch}")
                    out.flush()
                    os.replace(out.name, local)
                except BaseException:
                    os.unlink(out.name)
                    raise
        finally:
            patch_file.unlink(missing_ok=True)  # transport only: never kept in the cache
        log.info("%s rebuilt from %s (%d bytes instead of %d)", info.path, patch.patch,
                 patch_info.length, info.length)
        return local

    def _stream_target(self, info: TargetFile, local: Path) -> Path:
        """Download a target, checking its length and hashes as the bytes arrive.

        What ngclient's ``download_target`` checks, in one pass: ngclient
        writes the body to a temporary file, reads it back to hash it and
        reads it again to copy it into place (three passes over a 1 GiB
        artifact). Here each chunk is counted, handed to one thread per hash
        algorithm the target lists (`_Sink`) and written; more bytes than the
        signed length stop the download at once; the file takes its name only
        after the length and every hash matched. The URL is ngclient's
        (`_target_path`).
        """
        path = self._target_path(info)
        try:
            hashers = {algorithm: hashlib.new(algorithm) for algorithm in info.hashes}
        except ValueError as exc:
            raise tuf_errors.LengthOrHashMismatchError(
                f"{info.path} lists a hash algorithm this client lacks: {exc}") from exc
        received = 0
        with tempfile.NamedTemporaryFile(dir=local.parent, prefix=".download-",
                                         delete=False) as out, \
                _Sink([h.update for h in hashers.values()]) as sink:
            try:
                for chunk in self.fetcher.fetch(VIRTUAL + "targets/" + path):
                    received += len(chunk)
                    if received > info.length:
                        raise tuf_errors.DownloadLengthMismatchError(
                            f"{info.path} is longer than its signed {info.length} bytes")
                    sink.put(chunk)
                    out.write(chunk)
                sink.close()
                mismatch = _signed_mismatch(info, received, hashers)
                if mismatch:
                    raise tuf_errors.LengthOrHashMismatchError(f"{info.path} {mismatch}")
                out.flush()
                os.replace(out.name, local)
            except BaseException:
                os.unlink(out.name)
                raise
        return local

    def _target_path(self, info: TargetFile) -> str:
        """The target's path on the mirror: hash-prefixed under consistent snapshots, as
        ngclient names it. The root is read once per session (after its one refresh)."""
        if self._hash_prefixed is None:
            self._hash_prefixed = self._trusted_role(Root.type).signed.consistent_snapshot
        if not self._hash_prefixed:
            return info.path
        folder, sep, basename = info.path.rpartition("/")
        return f"{folder}{sep}{next(iter(info.hashes.values()))}.{basename}"

    def _trusted_role(self, role: str) -> Metadata:
        """A role's metadata as ngclient verified and stored it (after a lookup loaded it)."""
        path = self.metadata_dir / f"{role}.json"
        try:
            return Metadata.from_bytes(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise TufRefusal(f"TUF has no verified {role} metadata: {exc}") from exc

    # -- packages ---------------------------------------------------------
    def index(self, name: str) -> PackageIndex:
        """The package's index, downloaded through TUF and parsed as hostile input."""
        path = PackageIndex.target_path(name)
        info = self.target(path)
        if info is None:
            raise PackageNotFoundError(f"the repository has no package {name!r}")
        try:
            index = PackageIndex.from_bytes(self.download(info).read_bytes(), path)
        except FormatError as exc:
            raise TufRefusal(f"TUF refused {path}: {exc}") from exc
        if index.name != name:
            raise TufRefusal(f"the index of {name!r} names another package")
        return index

    def resolve_version(self, name: str, version: str | None = None,
                        channel: str = "stable", installed: str | None = None,
                        ) -> tuple[str, VersionEntry]:
        """The version ``name``, ``name==version`` or a channel means, and its index entry.

        Only the (TUF-verified) index is read: a poll that finds the installed
        version looks nothing else up. The index's own spelling is returned:
        ``2.4`` asks for ``2.4.0`` (PEP 440 equality). A version published as
        platform builds without one for this host is not found here, whatever
        other platforms have.
        """
        index = self.index(name)
        if version is None:  # a staged rollout may give this host the new version already
            version = index.channel_version(channel, self.config.client_id, installed)
            if version is None:
                raise PackageNotFoundError(f"{name} has no {channel!r} channel")
        try:
            parse_version(version, "the version asked for")
        except FormatError as exc:
            raise PackageNotFoundError(str(exc)) from exc
        found = index.find(version)
        if found is None:
            raise PackageNotFoundError(f"{name} {version} is not in the repository")
        entry = index.versions[found]
        if entry.target_for(self.platform) is None:
            raise PackageNotFoundError(
                f"{name} {found} has no build for {self.platform} (only for "
                f"{', '.join(sorted(entry.builds))})")
        return found, entry

    def resolve(self, name: str, version: str | None = None,
                channel: str = "stable") -> Resolved:
        """``name``, ``name==version`` or a channel, through the package index."""
        return self.target_of(name, *self.resolve_version(name, version, channel))

    def target_of(self, name: str, wanted: str, entry: VersionEntry) -> Resolved:
        """The TUF target of the index entry `resolve_version` found for ``wanted``: the
        version's artifact, or its build for this host's platform."""
        target_path = entry.target_for(self.platform)
        if target_path is None:
            raise PackageNotFoundError(f"{name} {wanted} has no build for {self.platform}")
        # The index is signed by online keys only: it may say which versions
        # exist, but a version's artifact must live under that very version (and
        # a build be named after its platform), so a compromised index cannot pass
        # an older artifact off as a newer one, nor one platform's build off as
        # another's.
        platform = None if entry.target is not None else self.platform
        folder, _, filename = target_path.rpartition("/")
        prefix = f"{platform}." if platform is not None else ""
        if folder != f"packages/{name}/{wanted}" or not filename.startswith(prefix) \
                or len(filename) == len(prefix):
            raise TufRefusal(f"the index of {name} maps {wanted} to {target_path}, not to an "
                             f"artifact {prefix}* under packages/{name}/{wanted}/")
        info = self.target(target_path)
        if info is None:
            raise TufRefusal(f"{target_path} is listed in the index but not in TUF metadata")
        return Resolved(name, wanted, info, platform)

    # -- in-toto ----------------------------------------------------------
    def sigstore_trust(self) -> SigstoreTrust:
        """The Sigstore trusted root the owners publish, for keyless steps (`intoto.keyless`).

        Only the ``layouts`` role's entry counts (offline keys, as for layouts):
        the root is looked up through TUF, then taken from that role's own
        verified metadata, so no other role can substitute one.
        """
        from custody.intoto.keyless import SigstoreTrust

        self.target(SIGSTORE_ROOT)  # loads and verifies the 'layouts' role through TUF
        listed = self._trusted_role(LAYOUTS_ROLE).signed.targets.get(  # type: ignore[attr-defined]
            SIGSTORE_ROOT)
        if listed is None:
            raise IntotoRefusal("the layout names keyless functionaries but the repository "
                                "publishes no Sigstore trusted root (its owners add one with "
                                "'custody-repo sigstore-root set')")
        try:
            expires = SigstoreRootCustom.from_custom(listed.custom).expires
        except FormatError as exc:
            raise TufRefusal(f"TUF refused {SIGSTORE_ROOT}: {exc}") from exc
        return SigstoreTrust(self.download(listed).read_bytes(), expires=expires)

    def layout_keys(self) -> tuple[list[Key], int]:
        """Pinned layout keys, else the ``layouts`` delegation's keys and threshold."""
        from custody.intoto.metadata import key_from_dict

        if self.config.layout_keys:
            keys = [key_from_dict(k["keyid"], k) for k in self.config.layout_keys]
            return keys, self.config.layout_threshold or len(keys)
        targets = self._trusted_role(Targets.type).signed
        role = targets.get_delegated_role(LAYOUTS_ROLE)  # type: ignore[attr-defined]
        return [targets.get_key(k) for k in role.keyids], role.threshold  # type: ignore[attr-defined]

    def package_names(self) -> set[str]:
        """The packages the verified ``layouts`` role has a layout for.

        Every package is published under its project owners' layout, so this
        lists them without walking a thousand hash bins.
        """
        self.target("in-toto/layouts/.index")  # loads and verifies 'layouts' through TUF
        layouts = self._trusted_role(LAYOUTS_ROLE).signed
        return {m["name"] for path in layouts.targets  # type: ignore[attr-defined]
                if (m := LAYOUT_PATH.match(path))}

    def newest_layout(self, name: str, named: str) -> TargetFile:
        """The newest layout for ``name`` in the (verified) ``layouts`` role."""
        if self.target(named) is None:  # loads and verifies 'layouts' through TUF
            raise TufRefusal(f"layout {named} is not in the layouts role")
        layouts = self._trusted_role(LAYOUTS_ROLE).signed
        newest = max(
            ((int(m["n"]), path) for path in layouts.targets  # type: ignore[attr-defined]
             if (m := LAYOUT_PATH.match(path)) and m["name"] == name),
            default=None,
        )
        if newest is None:
            raise TufRefusal(f"the layouts role has no layout for {name}")
        info = self.target(newest[1])
        assert info is not None
        return info

    def verify(self, resolved: Resolved, allow_unverified: bool = False) -> Verified:
        """Steps 2-5 of the pipeline for a resolved package; the artifact stays cached."""
        # in-toto is imported here, not at start-up: a poll that finds nothing
        # new never needs it.
        from custody.intoto.errors import IntotoError
        from custody.intoto.metadata import metadata_from_bytes
        from custody.intoto.verify import InspectionPolicy, MemoryLinks, Verifier, bind_product

        info = resolved.target
        try:
            custom = InTotoCustom.from_custom(info.custom)
        except FormatError as exc:
            raise TufRefusal(f"TUF refused the metadata of {info.path}: {exc}") from exc
        artifact = self.download_artifact(info)
        sha256 = info.hashes.get("sha256", "")
        if not custom:
            if allow_unverified:
                log.warning("%s has no in-toto metadata; installing on TUF alone, as asked",
                            info.path)
                return Verified(resolved, artifact, sha256, "", ["no in-toto metadata"])
            raise MissingSupplyChainError(
                f"{info.path} carries no in-toto metadata, so its supply chain cannot be "
                "verified (refused)")
        named = custom.layout
        match = LAYOUT_PATH.match(named)
        if not match or match["name"] != resolved.name:
            raise IntotoRefusal(f"{info.path} names layout {named!r}, not a layout of "
                                f"{resolved.name}")
        layout_info = self.newest_layout(resolved.name, named)
        layout_bytes = self.download(layout_info).read_bytes()
        prefix = f"{LINK_PREFIX}{sha256}/"
        links: dict[str, bytes] = {}
        for link_path in custom.links:
            if not link_path.startswith(prefix):
                raise IntotoRefusal(f"link {link_path} is not filed under the artifact's hash")
            link_info = self.target(link_path)
            if link_info is None:
                raise TufRefusal(f"link {link_path} is not in TUF metadata")
            links[link_path[len(prefix):]] = self.download(link_info).read_bytes()
        keys, threshold = self.layout_keys()
        refused = f"in-toto refused {resolved.name} {resolved.version}"
        try:
            layout = metadata_from_bytes(layout_bytes, where=layout_info.path)
        except IntotoError as exc:
            raise IntotoRefusal(f"{refused}: {exc}") from exc
        # Whether to fetch the Sigstore trusted root: only a layout naming keyless
        # functionaries needs it (the verifier checks the layout's signatures before
        # trusting anything in it, and reports a payload that does not parse).
        try:
            steps = getattr(layout.payload, "steps", [])
            keyless = any(step.cert_constraints for step in steps)
        except IntotoError:
            keyless = False
        sigstore = self.sigstore_trust() if keyless else None
        policy = InspectionPolicy(self.config.inspections)
        with tempfile.TemporaryDirectory(prefix="custody-verify-") as tmp:
            workdir = Path(tmp)
            delivered = workdir / resolved.filename
            if policy is InspectionPolicy.RUN:
                # Inspections see (and might touch) only their own copy of the artifact.
                shutil.copyfile(artifact, delivered)
            # quiet: the verifier's notes (a link's command differs from the expected
            # one, an inspection skipped by policy) were shown to the publisher when the
            # release was published; here they go to the outcome and to `custody -v`, not
            # to every poll's output.
            verifier = Verifier(inspections=policy, workdir=workdir, sigstore=sigstore,
                                quiet=True)
            try:
                summary = verifier.verify(
                    layout, keys, MemoryLinks(links), threshold=threshold,
                    parameters=layout_parameters(resolved))
                # Bound by hash: TUF verified the cached artifact's sha256 on download.
                bind_product(summary, artifact, resolved.filename, sha256=sha256)
            except IntotoError as exc:
                raise IntotoRefusal(f"{refused}: {exc}") from exc
        for warning in verifier.warnings:
            log.info("in-toto: %s", warning)
        return Verified(resolved, artifact, sha256, layout_info.path, verifier.warnings)


__all__ = ["ClientError", "Resolved", "SecureUpdater", "Verified"]
