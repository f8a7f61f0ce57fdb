"""Install, update, roll back, remove and re-verify packages: the client's operations.

Each operation holds the home's lock for its whole length and changes the
installed state only after everything that can refuse has had its say:
TUF, in-toto, the downgrade check, unpacking. The agent's self-update adds a
health check after the switch and switches back if it fails.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import Version

from client.config import ClientConfig
from client.errors import (
    DowngradeError,
    HealthCheckError,
    InstallError,
    PackageNotFoundError,
)
from client.install import (
    State,
    compare_tree,
    home_lock,
    install_tree,
    prune,
    record_install,
    switch_current,
)
from client.updater import SecureUpdater, Verified

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What an operation did, for the command line to report."""

    name: str
    version: str
    previous: str | None
    changed: bool
    warnings: list[str]


class PackageManager:
    """The operations of ``custody`` over one home directory."""

    def __init__(self, home: Path, updater: SecureUpdater | None = None,
                 progress: Any = None) -> None:
        self.home = home
        self.config = ClientConfig.load(home)
        self.updater = updater or SecureUpdater(home, self.config, progress=progress)

    def _activate(self, state: State, verified: Verified, channel: str) -> Outcome:
        resolved = verified.resolved
        install_tree(self.home, resolved.name, resolved.version, verified.path,
                     resolved.filename)
        previous = state.packages[resolved.name].current if resolved.name in state.packages \
            else None
        switch_current(self.home / "packages" / resolved.name, resolved.version)
        record_install(state, resolved.name, resolved.version,
                       {"target": resolved.target.path, "sha256": verified.sha256,
                        "layout": verified.layout}, channel)
        state.save(self.home)
        package = state.packages[resolved.name]
        prune(self.home, resolved.name, {package.current, package.previous or ""})
        return Outcome(resolved.name, resolved.version, previous, previous != resolved.version,
                       verified.warnings)

    def install(self, name: str, version: str | None = None, channel: str = "stable",
                allow_downgrade: bool = False, allow_unverified: bool = False) -> Outcome:
        """Resolve, verify (TUF then in-toto), install and switch to a package version."""
        with home_lock(self.home):
            state = State.load(self.home)
            wanted, entry = self.updater.resolve_version(name, version, channel)
            installed = state.packages.get(name)
            if installed is not None and installed.current == wanted:
                return Outcome(name, wanted, installed.current, False, [])
            if installed is not None and not allow_downgrade and \
                    Version(wanted) < Version(installed.current):
                raise DowngradeError(
                    f"{name} {wanted} is older than the installed "
                    f"{installed.current}; refused (use --allow-downgrade)")
            resolved = self.updater.target_of(name, wanted, entry)
            verified = self.updater.verify(resolved, allow_unverified)
            return self._activate(state, verified, channel)

    def update(self, names: Sequence[str] = (), health_check: Sequence[str] | None = None,
               ) -> list[Outcome]:
        """Move installed packages to their channel's version; health-check and roll back.

        An update never moves a package backwards: a channel pointed at an
        older version (a compromised server may do that) is refused.
        """
        state = State.load(self.home)
        targets = list(names) or sorted(state.packages)
        outcomes = []
        for name in targets:
            channel = state.package(name).channel
            outcome = self.install(name, None, channel)
            if outcome.changed:
                check = list(health_check or self.config.health_checks.get(name, []))
                if check:
                    self._health_check(name, outcome, check)
            outcomes.append(outcome)
        return outcomes

    def _health_check(self, name: str, outcome: Outcome, command: list[str]) -> None:
        cwd = self.home / "packages" / name / "current"
        try:
            result = subprocess.run(command, cwd=cwd, capture_output=True, timeout=60,
                                    check=False)
            ok, detail = result.returncode == 0, f"exit code {result.returncode}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            ok, detail = False, str(exc)
        if ok:
            return
        self.rollback(name)
        raise HealthCheckError(
            f"{name} {outcome.version} failed its health check ({detail}); rolled back to "
            f"{outcome.previous}")

    def rollback(self, name: str) -> Outcome:
        """Switch back to the previous version (kept on disk by every install)."""
        with home_lock(self.home):
            state = State.load(self.home)
            package = state.package(name)
            if not package.previous:
                raise PackageNotFoundError(f"{name} has no previous version to roll back to")
            if not (self.home / "packages" / name / package.previous).is_dir():
                raise PackageNotFoundError(f"{name} {package.previous} is no longer on disk")
            current, previous = package.current, package.previous
            switch_current(self.home / "packages" / name, previous)
            package.current, package.previous = previous, current
            state.save(self.home)
            return Outcome(name, previous, current, True, [])

    def remove(self, name: str) -> None:
        with home_lock(self.home):
            state = State.load(self.home)
            state.package(name)
            del state.packages[name]
            state.save(self.home)
            shutil.rmtree(self.home / "packages" / name, ignore_errors=True)

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
            raise PackageNotFoundError(
                f"{name} {package.current} in the repository is not the artifact installed")
        verified = self.updater.verify(resolved)
        problems = compare_tree(verified.path, resolved.filename,
                                self.home / "packages" / name / package.current)
        if problems:
            shown = "; ".join(problems[:3]) + (" ..." if len(problems) > 3 else "")
            raise InstallError(f"{name} {package.current} on disk is not the verified "
                               f"artifact: {shown}")
        return Outcome(name, package.current, None, False, verified.warnings)

    def installed(self) -> State:
        return State.load(self.home)


def init_home(home: Path, urls: Sequence[str], root: Path, layout_keys: Sequence[dict],
              layout_threshold: int | None, inspections: str) -> ClientConfig:
    """Bootstrap trust: the first root metadata and the repository URLs."""
    from tuf.api.metadata import Metadata, Root

    from client.errors import ConfigError

    data = root.read_bytes()
    try:
        md = Metadata[Root].from_bytes(data)
        md.signed.verify_delegate(Root.type, md.signed_bytes, md.signatures)
    except Exception as exc:
        raise ConfigError(f"{root} is not a valid, self-signed TUF root: {exc}") from exc
    (home / "metadata").mkdir(parents=True, exist_ok=True)
    from intoto.files import write_atomic

    write_atomic(home / "metadata" / "root.json", data)
    config = ClientConfig(urls=list(urls), layout_keys=list(layout_keys),
                          layout_threshold=layout_threshold, inspections=inspections)
    config.save(home)
    return config
