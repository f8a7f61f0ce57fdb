"""Install, update, roll back, remove and re-verify packages: the client's operations.

Each operation holds the home's lock for its whole length and changes the
installed state only after everything that can refuse has had its say:
TUF, in-toto, the downgrade check, unpacking.

A version with a health check (or one an agent must confirm) is switched to
as *pending* (see `custody.client.state`): it becomes current only once its check
passed. Whatever ends the check otherwise (failure, timeout, a signal, the
updater's death) ends on the version that was live before. A check that
failed or timed out is a verdict: the version is recorded as failed, so that
later updates skip it instead of installing the same bad build on every
poll. A check that was interrupted is not: it counts an attempt, and the
next update tries again (`custody.client.state.MAX_INTERRUPTED`). Every operation
starts by finishing such interrupted updates (`PackageManager.recover`).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packaging.version import Version

from custody.client.config import ClientConfig, HealthCheck
from custody.client.errors import (
    EXIT_OK,
    EXIT_PRIORITY,
    BusyError,
    ClientError,
    DowngradeError,
    HealthCheckError,
    Interrupted,
    PackageNotFoundError,
    TamperedInstallError,
)
from custody.client.health import run_check, signals_blocked
from custody.client.install import (
    compare_tree,
    disk_usage,
    home_lock,
    install_tree,
    prune,
    prune_cache,
    switch_current,
)
from custody.client.state import (
    CONFIRMATION,
    HEALTH_CHECK,
    MAX_INTERRUPTED,
    PackageState,
    Pending,
    State,
    boot_id,
)
from custody.client.updater import SecureUpdater, Verified

log = logging.getLogger(__name__)
INTERRUPTED_CHECK = "interrupted during its health check"
INTERRUPTED_PROBATION = "interrupted on probation (the supervisor stopped or the host restarted)"


@dataclass
class Outcome:
    """What an operation did, for the command line to report."""

    name: str
    version: str
    previous: str | None
    changed: bool
    warnings: list[str] = field(default_factory=list)
    note: str = ""  # why nothing changed (a known-bad version), or what is awaited


@dataclass
class Result:
    """One package's part of an ``update``: its outcome, or what stopped it."""

    name: str
    outcome: Outcome | None = None
    error: ClientError | None = None

    @property
    def exit_code(self) -> int:
        return self.error.exit_code if self.error else EXIT_OK


def exit_code(results: Sequence[Result]) -> int:
    """The exit code of a whole update: 0 when every package succeeded (see `EXIT_PRIORITY`)."""
    codes = {r.exit_code for r in results}
    return next((c for c in EXIT_PRIORITY if c in codes), max(codes, default=EXIT_OK))


class PackageManager:
    """The operations of ``custody`` over one home directory, in one session.

    Its `SecureUpdater` refreshes TUF once and keeps that refresh: a manager
    serves one command or one poll, and whatever lives longer (`custody.client.agent`)
    makes a new one each time.
    """

    def __init__(self, home: Path, updater: SecureUpdater | None = None,
                 progress: Any = None) -> None:
        self.home = home
        self.config = ClientConfig.load(home)
        self.updater = updater or SecureUpdater(home, self.config, progress=progress)

    # -- recovery ---------------------------------------------------------
    def recover(self, wait: bool = True) -> list[str]:
        """Finish interrupted updates: roll back every pending version that cannot pass now.

        A health-check version whose updater no longer holds the lock (it was
        killed) and a confirmation whose deadline passed are rolled back and
        recorded as failed. Returns one sentence per rollback. With ``wait``
        false a busy home is left to the process that holds it.
        """
        if not any(p.pending for p in State.load(self.home).packages.values()):
            return []  # nothing was interrupted: no lock to take (every command asks)
        try:
            with home_lock(self.home, timeout=300.0 if wait else 0.0):
                return self._recover(State.load(self.home))
        except BusyError:
            if wait:
                raise
            return []

    def _recover(self, state: State) -> list[str]:
        said = []
        for name, package in sorted(state.packages.items()):
            pending = package.pending
            if pending is None or (pending.kind == CONFIRMATION and not pending.expired()):
                continue
            if pending.kind == HEALTH_CHECK:
                verdict = self._abort(state, name, INTERRUPTED_CHECK, interrupted=True)
            elif pending.interrupted():
                verdict = self._abort(state, name, INTERRUPTED_PROBATION, interrupted=True)
            else:
                verdict = self._abort(state, name,
                                      "did not confirm its health before the deadline")
            said.append(f"{name} {pending.version} {verdict}; rolled back to {package.current}")
            log.warning("%s", said[-1])
        return said

    def _abort(self, state: State, name: str, reason: str, interrupted: bool = False) -> str:
        """Switch back to the live version and drop the pending one's files; what it became.

        A pending version that failed (``interrupted`` false) is recorded as
        known bad; one whose check was interrupted counts an attempt and is
        tried again, until `MAX_INTERRUPTED` attempts make it known bad too.
        """
        package = state.packages[name]
        assert package.pending is not None
        version = package.pending.version
        with signals_blocked():
            switch_current(self.home / "packages" / name, package.current)
            if interrupted:
                attempts = package.mark_interrupted(version, reason)
                said = (f"{reason} (attempt {attempts} of {MAX_INTERRUPTED}; the next update "
                        "tries it again)" if package.failure(version) is None else
                        f"{reason} {attempts} times; now known bad")
            else:
                package.mark_failed(version, reason)
                said = reason
            package.pending = None
            state.save(self.home)
            self._prune(state, name)
        return said

    def _prune(self, state: State, name: str) -> None:
        if name in state.packages:
            prune(self.home, name, state.packages[name].keep())
        prune_cache(self.updater.cache_dir, self._kept(state))

    @staticmethod
    def _kept(state: State) -> dict[str, dict[str, dict[str, Any]]]:
        kept: dict[str, dict[str, dict[str, Any]]] = {}
        for name, package in state.packages.items():
            versions = {v: package.versions.get(v, {}) for v in package.keep()}
            if package.pending is not None:
                versions[package.pending.version] = package.pending.info
            kept[name] = versions
        return kept

    # -- install and update -----------------------------------------------
    def install(self, name: str, version: str | None = None, channel: str = "stable",
                allow_downgrade: bool = False, allow_unverified: bool = False,
                retry_failed: bool = False, check: HealthCheck | None = None,
                confirm_within: float | None = None) -> Outcome:
        """Resolve, verify (TUF then in-toto), install and switch to a package version.

        With ``check``, the new version is pending until the check passes in
        it; with ``confirm_within`` (seconds), until `confirm` is called (an
        agent restarted into it). Neither applies to a first install: there is
        no earlier version to go back to.
        """
        with home_lock(self.home):
            state = State.load(self.home)
            self._recover(state)
            installed = state.packages.get(name)
            wanted, entry = self.updater.resolve_version(
                name, version, channel, installed.current if installed else None)
            if installed is not None and installed.current == wanted:
                return Outcome(name, wanted, installed.previous, False)
            if installed is not None and installed.pending is not None:
                return Outcome(name, installed.current, installed.previous, False, note=(
                    f"{name} {installed.pending.version} awaits confirmation; nothing else is "
                    "installed until it is confirmed or rolled back"))
            if installed is not None and not allow_downgrade and \
                    Version(wanted) < Version(installed.current):
                raise DowngradeError(
                    f"{name} {wanted} is older than the installed "
                    f"{installed.current}; refused (use --allow-downgrade)")
            failure = installed.failure(wanted) if installed is not None else None
            if failure is not None and not retry_failed:
                assert installed is not None
                return Outcome(name, installed.current, installed.previous, False, note=(
                    f"{name} {wanted} is known bad ({failure['reason']}); staying on "
                    f"{installed.current} (--retry-failed to try it again)"))
            resolved = self.updater.target_of(name, wanted, entry)
            verified = self.updater.verify(resolved, allow_unverified)
            return self._activate(state, verified, channel, check, confirm_within)

    def _activate(self, state: State, verified: Verified, channel: str,
                  check: HealthCheck | None, confirm_within: float | None) -> Outcome:
        resolved = verified.resolved
        name, version = resolved.name, resolved.version
        install_tree(self.home, name, version, verified.path, resolved.filename,
                     self.config.unpack_limits)
        info = {"target": resolved.target.path, "sha256": verified.sha256,
                "layout": verified.layout}
        package = state.packages.get(name)
        package_dir = self.home / "packages" / name
        if package is None or (check is None and confirm_within is None):
            previous = package.current if package is not None else None
            package = state.packages.setdefault(name, PackageState(version, channel=channel))
            switch_current(package_dir, version)  # the commit point (see State._reconcile)
            package.commit(version, info, channel)
            state.save(self.home)
            self._prune(state, name)
            return Outcome(name, version, previous, True, verified.warnings)
        kind = CONFIRMATION if confirm_within is not None else HEALTH_CHECK
        deadline = time.time() + confirm_within if confirm_within is not None else None
        try:
            with signals_blocked():
                package.pending = Pending(version, kind, deadline=deadline,
                                          info={**info, "channel": channel})
                state.save(self.home)  # pending first: a crash from here on rolls back
                switch_current(package_dir, version)
            if check is None:
                until = datetime.fromtimestamp(deadline or 0, UTC).strftime("%H:%M:%S UTC")
                return Outcome(name, version, package.current, True, verified.warnings,
                               note=f"awaiting confirmation until {until}")
            return self._check(state, name, check, verified.warnings)
        except BaseException as exc:
            if package.pending is not None and package.pending.kind == HEALTH_CHECK:
                live = package.current
                said = self._abort(state, name, INTERRUPTED_CHECK, interrupted=True)
                if isinstance(exc, Interrupted):
                    exc.aftermath = f"{name} {version} {said}; rolled back to {live}"
            raise

    def _check(self, state: State, name: str, check: HealthCheck,
               warnings: list[str]) -> Outcome:
        package = state.packages[name]
        assert package.pending is not None
        version, live = package.pending.version, package.current
        env = {"CUSTODY_PACKAGE": name, "CUSTODY_VERSION": version,
               "CUSTODY_PREVIOUS_VERSION": live, "CUSTODY_HOME": str(self.home)}
        result = run_check(check.command, self.home / "packages" / name / version, env,
                           check.timeout)
        if not result.ok:
            self._abort(state, name, f"failed its health check ({result.reason})")
            raise HealthCheckError(
                f"{name} {version} failed its health check ({result.detail}); rolled back "
                f"to {live}", output=result.tail, version=version, previous=live,
                reason=result.reason)
        self._commit_pending(state, name)
        return Outcome(name, version, live, True, warnings)

    def _commit_pending(self, state: State, name: str) -> None:
        package = state.packages[name]
        assert package.pending is not None
        info = dict(package.pending.info)
        channel = info.pop("channel", package.channel)
        with signals_blocked():
            package.commit(package.pending.version, info, channel)
            state.save(self.home)
            self._prune(state, name)

    def health_check_for(self, name: str, default: HealthCheck | None = None,
                         ) -> HealthCheck | None:
        """The package's own check from the configuration, else ``default``."""
        return self.config.health_checks.get(name, default)

    def update(self, names: Sequence[str] = (), default_check: HealthCheck | None = None,
               retry_failed: bool = False, confirm_within: float | None = None,
               ) -> list[Result]:
        """Move installed packages to their channel's version; one never blocks another.

        Every package is tried, whatever happened to the ones before it, and
        each gets its own `Result`. An update never moves a package backwards:
        a channel pointed at an older version (a compromised server may do
        that) is refused. Each package runs its own health check (see
        `health_check_for`), or with ``confirm_within`` waits for `confirm`.
        """
        state = State.load(self.home)
        results = []
        for name in list(names) or sorted(state.packages):
            try:
                channel = state.package(name).channel
                check = None if confirm_within else self.health_check_for(name, default_check)
                outcome = self.install(name, None, channel, retry_failed=retry_failed,
                                       check=check, confirm_within=confirm_within)
                results.append(Result(name, outcome))
            except ClientError as exc:
                results.append(Result(name, error=exc))
        return results

    def confirm(self, name: str) -> Outcome:
        """The version awaiting confirmation is healthy: make it live."""
        with home_lock(self.home):
            state = State.load(self.home)
            self._recover(state)  # a confirmation after the deadline comes too late
            package = state.package(name)
            if package.pending is None or package.pending.kind != CONFIRMATION:
                return Outcome(name, package.current, package.previous, False,
                               note="nothing awaits confirmation")
            version, previous = package.pending.version, package.current
            self._commit_pending(state, name)
            return Outcome(name, version, previous, True)

    def reject(self, name: str, reason: str) -> Outcome:
        """The version awaiting confirmation is not healthy: roll back now, record why."""
        with home_lock(self.home):
            state = State.load(self.home)
            package = state.package(name)
            if package.pending is None:
                return Outcome(name, package.current, package.previous, False,
                               note="nothing awaits confirmation")
            version = package.pending.version
            self._abort(state, name, reason)
            return Outcome(name, package.current, version, True, note=reason)

    def watch_probation(self, name: str, watched: bool, timeout: float = 300.0) -> None:
        """Record whether a supervisor runs the version on probation now (`Pending.stopped`).

        ``custody run`` calls this with ``True`` as it starts the version (this
        boot, watched: a deadline missed from now on is a verdict) and with
        ``False`` when a signal stops it (a deadline missed while stopped is
        an interruption). A busy home is left as it is after ``timeout``.
        """
        try:
            with home_lock(self.home, timeout=timeout), signals_blocked():
                state = State.load(self.home)
                pending = state.package(name).pending
                if pending is None or pending.kind != CONFIRMATION:
                    return
                pending.stopped = not watched
                if watched:
                    pending.boot = boot_id()
                state.save(self.home)
        except BusyError:
            log.warning("%s: the home is busy; the probation's state is left as it was", name)

    # -- other operations -------------------------------------------------
    def rollback(self, name: str) -> Outcome:
        """Switch back to the previous version; the version left is skipped by later updates.

        Never to a version recorded as failed. The version rolled back from is
        recorded as failed ("rolled back by hand"), so that the next poll does
        not install it again; ``--retry-failed`` overrides.
        """
        with home_lock(self.home):
            state = State.load(self.home)
            self._recover(state)
            package = state.package(name)
            if not package.previous:
                raise PackageNotFoundError(f"{name} has no previous version to roll back to")
            failure = package.failure(package.previous)
            if failure is not None:
                raise PackageNotFoundError(
                    f"{name} {package.previous} is known bad ({failure['reason']}); "
                    "not rolling back to it")
            if not (self.home / "packages" / name / package.previous).is_dir():
                raise PackageNotFoundError(f"{name} {package.previous} is no longer on disk")
            current, previous = package.current, package.previous
            with signals_blocked():
                switch_current(self.home / "packages" / name, previous)
                package.current, package.previous = previous, current
                package.mark_failed(current, "rolled back by hand")
                state.save(self.home)
            return Outcome(name, previous, current, True)

    def remove(self, name: str) -> None:
        """Uninstall a package: its files, its state and its cached downloads."""
        with home_lock(self.home):
            state = State.load(self.home)
            state.package(name)
            with signals_blocked():
                del state.packages[name]
                state.save(self.home)
                shutil.rmtree(self.home / "packages" / name, ignore_errors=True)
                self._prune(state, name)  # its downloads

    def gc(self) -> tuple[int, int]:
        """Delete what no kept version needs: old downloads, leftovers; ``(entries, bytes)``."""
        with home_lock(self.home):
            state = State.load(self.home)
            self._recover(state)
            entries = freed = 0
            packages = self.home / "packages"
            for package_dir in packages.iterdir() if packages.is_dir() else ():
                if package_dir.name not in state.packages:
                    entries += 1
                    freed += disk_usage(package_dir)
                    shutil.rmtree(package_dir, ignore_errors=True)
                else:
                    prune(self.home, package_dir.name, state.packages[package_dir.name].keep())
            cached, cached_bytes = prune_cache(self.updater.cache_dir, self._kept(state))
            return entries + cached, freed + cached_bytes

    def fetch(self, name: str, version: str | None = None, channel: str = "stable",
              destination: str | os.PathLike[str] | None = None) -> Path:
        """The artifact of ``name`` after the full TUF + in-toto pipeline, copied atomically
        into ``destination`` (default: the current directory); its path.

        For plugin hosts that install artifacts themselves (pip, a plugin
        loader): nothing is unpacked or recorded as installed, and the copy
        is the exact file whose hash TUF verified and in-toto bound to the
        final step of the layout.
        """
        from custody.intoto.files import copy_atomic

        resolved = self.updater.resolve(name, version, channel)
        verified = self.updater.verify(resolved)
        target = (Path(destination) if destination is not None else Path.cwd()) \
            / resolved.filename
        copy_atomic(verified.path, target)
        return target

    def verify_installed(self, name: str) -> Outcome:
        """Re-verify the installed version: TUF and in-toto today, and the files on disk.

        The installed tree must hold exactly the regular files of the verified
        artifact, unchanged; anything modified, missing or added is reported.
        """
        state = State.load(self.home)
        package = state.package(name)
        resolved = self.updater.resolve(name, package.current)
        recorded = package.versions.get(package.current, {}).get("sha256")
        if recorded and recorded != resolved.target.hashes.get("sha256"):
            raise TamperedInstallError(
                f"{name} {package.current} in the repository is not the artifact installed")
        verified = self.updater.verify(resolved)
        problems = compare_tree(verified.path, resolved.filename,
                                self.home / "packages" / name / package.current)
        if problems:
            shown = "; ".join(problems[:3]) + (" ..." if len(problems) > 3 else "")
            raise TamperedInstallError(f"{name} {package.current} on disk is not the verified "
                                       f"artifact: {shown}")
        return Outcome(name, package.current, None, False, verified.warnings)

    def installed(self) -> State:
        return State.load(self.home)


def fetch(name: str, version: str | None = None, channel: str = "stable",
          home: str | os.PathLike[str] | None = None,
          destination: str | os.PathLike[str] | None = None) -> Path:
    """For plugin hosts: the verified artifact of ``name`` in ``destination``; its path.

    The full pipeline (TUF refresh, in-toto verification, the file bound to
    the final step) runs first; a refusal raises `custody.client.errors.ClientError`.
    ``home`` defaults to ``CUSTODY_HOME`` or the per-user directory.
    """
    from custody.client.config import default_home

    return PackageManager(Path(home) if home is not None else default_home()).fetch(
        name, version, channel, destination)


def _root_keys(md: Any) -> str:
    """A root's version and its root-role key ids, for a person comparing two roots."""
    keyids = sorted(md.signed.roles["root"].keyids)
    return f"version {md.signed.version}, root keys {', '.join(k[:16] for k in keyids)}"


def init_home(home: Path, urls: Sequence[str], root: Path, layout_keys: Sequence[dict],
              layout_threshold: int | None, inspections: str, force: bool = False,
              ) -> ClientConfig:
    """Bootstrap trust: the first root metadata and the repository URLs.

    A home that already trusts a root is refused unless ``force``: a second
    ``init`` would silently replace the trust anchor every later update rests
    on, so the refusal names the root trusted now and the one offered. The
    very same ``init`` run again (same root, same settings) changes nothing
    and succeeds, as a provisioning script's second run must. With
    ``force`` the metadata verified under the old anchor goes with it (it
    would only be refused as a rollback or mix-and-match by the new one);
    the host stays what it was: its installed packages, health checks,
    client id (its place in staged rollouts) and report settings.
    """
    from tuf.api.metadata import Metadata, Root

    from custody.client.config import new_client_id
    from custody.client.errors import ConfigError
    from custody.intoto.files import write_atomic

    data = root.read_bytes()
    try:
        md = Metadata[Root].from_bytes(data)
        md.signed.verify_delegate(Root.type, md.signed_bytes, md.signatures)
    except Exception as exc:
        raise ConfigError(f"{root} is not a valid, self-signed TUF root: {exc}") from exc
    metadata = home / "metadata"
    trusted = metadata / "root.json"
    if not force and trusted.exists() and ClientConfig.path(home).exists():
        same = ClientConfig.load(home)
        if trusted.read_bytes() == data and (same.urls, same.layout_keys, same.layout_threshold,
                                             same.inspections) == (
                list(urls), list(layout_keys), layout_threshold, inspections):
            return same  # the same command run again: nothing to replace
    if not force and (trusted.exists() or ClientConfig.path(home).exists()):
        try:
            now = _root_keys(Metadata[Root].from_bytes(trusted.read_bytes()))
        except (OSError, ValueError) as exc:
            now = f"unreadable: {exc}"
        raise ConfigError(
            f"{home} already trusts a root ({now}); refusing to replace it with {root} "
            f"({_root_keys(md)}) without --force")
    host = ClientConfig(client_id=new_client_id())
    if force:
        if ClientConfig.path(home).exists():
            host = ClientConfig.load(home)
        if metadata.exists():
            shutil.rmtree(metadata)
    metadata.mkdir(parents=True, exist_ok=True)
    write_atomic(trusted, data)
    config = replace(host, urls=list(urls), layout_keys=list(layout_keys),
                     layout_threshold=layout_threshold, inspections=inspections)
    config.save(home)
    return config
