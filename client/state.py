"""``<home>/state.json``: what is installed, what is being checked, and what failed.

Per package the state records the ``current`` and ``previous`` versions (both
on disk, so a rollback needs no network), the versions that failed their
health check or never confirmed it (``failed``, with the reason, so that an
update does not install them again on every poll), the versions whose check
was interrupted (``interrupted``, with the attempts so far), and at most one
``pending`` version: switched to, but not yet proven healthy.

Interruption is not a verdict: a check that a signal, a kill or a power loss
ended said nothing about the version, so the version is tried again by the
next update, as Chrome OS retries a new image for a few boots. The same holds
for a probation whose deadline passed while the supervisor was stopped or
the host was down (`Pending.interrupted`). After
`MAX_INTERRUPTED` interrupted attempts in a row it is known bad all the same
(a version whose check always gets the host killed, or always outlasts a
maintenance window, must not be retried on every poll for ever); the reason
recorded says which of the two happened.

A pending version is *not* live in the sense of this state: ``current``
still names the version that was live before it, and whatever ends the
check without a pass (a failing check, a signal, SIGKILL, power loss)
ends with the ``current`` symlink back on that version. Two kinds:

``health-check``
    the updating process runs the check while holding the home's lock; if
    another process can take the lock, the updater died and the version is
    rolled back at once;
``confirmation``
    an agent restarted into the new version must call ``confirm`` before
    ``deadline``; after it, any ``custody`` command rolls back.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from custody.client.errors import ClientError, PackageNotFoundError
from custody.intoto.files import write_atomic

HEALTH_CHECK = "health-check"
CONFIRMATION = "confirmation"
#: Interrupted health checks after which a version is known bad (see the module docstring).
MAX_INTERRUPTED = 3


def utcnow() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def boot_id() -> str:
    """This boot of the host (Linux), so that a probation knows a reboot ended it; else ""."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass
class Pending:
    """A version switched to but not yet healthy (see the module docstring).

    A confirmation's probation is *watched* while an agent runs it under
    ``custody run`` or the host stays up after ``update --confirm-within``;
    ``stopped`` (the supervisor was stopped during it) or another ``boot``
    (the host went down) means its deadline passed with nobody running the
    version: an interruption, not a verdict.
    """

    version: str
    kind: str = HEALTH_CHECK
    started: str = field(default_factory=utcnow)
    deadline: float | None = None  # seconds since the epoch, for confirmations
    info: dict[str, Any] = field(default_factory=dict)  # recorded once it is live
    stopped: bool = False
    boot: str = field(default_factory=boot_id)

    def expired(self, now: float | None = None) -> bool:
        return self.deadline is not None and (now or time.time()) > self.deadline

    def interrupted(self) -> bool:
        """Whether the probation ended unwatched (see the class docstring)."""
        return self.stopped or (bool(self.boot) and self.boot != boot_id())


@dataclass
class PackageState:
    current: str
    previous: str | None = None
    channel: str = "stable"
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, dict[str, str]] = field(default_factory=dict)
    pending: Pending | None = None
    # version -> {"attempts": n, "reason": why the last one ended, "at": when}
    interrupted: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PackageState:
        pending = data.get("pending")
        return cls(**{**data, "pending": Pending(**pending) if pending else None})

    def keep(self) -> set[str]:
        """The versions whose files stay on disk: current, previous, and one being checked."""
        kept = {self.current, self.previous, self.pending.version if self.pending else None}
        return {v for v in kept if v}

    def mark_failed(self, version: str, reason: str) -> None:
        """A verdict: ``version`` is known bad, and updates skip it (``--retry-failed``)."""
        self.interrupted.pop(version, None)
        self.failed[version] = {"reason": reason, "at": utcnow()}

    def mark_interrupted(self, version: str, reason: str) -> int:
        """No verdict: count one more interrupted attempt; the count so far.

        The `MAX_INTERRUPTED`-th makes the version known bad, with a reason
        that says it was never seen to fail.
        """
        attempts = int(self.interrupted.get(version, {}).get("attempts", 0)) + 1
        if attempts >= MAX_INTERRUPTED:
            self.mark_failed(version, f"{reason} {attempts} times (no check of it ever "
                                      "finished)")
        else:
            self.interrupted[version] = {"attempts": attempts, "reason": reason,
                                         "at": utcnow()}
        return attempts

    def failure(self, version: str) -> dict[str, str] | None:
        """The failure recorded for ``version`` (PEP 440 equality: 2.0 is 2.0.0)."""
        try:
            wanted = Version(version)
        except InvalidVersion:
            return self.failed.get(version)
        return next((f for v, f in self.failed.items() if _same(v, wanted)), None)

    def commit(self, version: str, info: dict[str, Any], channel: str) -> None:
        """``version`` is live: it becomes current, the old current becomes previous."""
        if self.current != version:
            self.previous = self.current
        self.current = version
        self.channel = channel
        self.pending = None
        self.versions[version] = {**info, "installed": utcnow()}
        for old in [v for v in self.versions if v not in {self.current, self.previous}]:
            del self.versions[old]
        # Failures of versions up to the live one no longer matter: updates never go back,
        # and the live version proved healthy (after --retry-failed) is not failed.
        live = Version(version)
        for record in (self.failed, self.interrupted):
            for old in [v for v in record if not _newer(v, live)]:
                del record[old]


def _same(version: str, wanted: Version) -> bool:
    try:
        return Version(version) == wanted
    except InvalidVersion:
        return False


def _newer(version: str, than: Version) -> bool:
    try:
        return Version(version) > than
    except InvalidVersion:
        return False


@dataclass
class State:
    """``<home>/state.json``: every installed package."""

    packages: dict[str, PackageState] = field(default_factory=dict)

    @classmethod
    def load(cls, home: Path) -> State:
        try:
            data = json.loads((home / "state.json").read_text())
            state = cls({name: PackageState.from_dict(p)
                         for name, p in data.get("packages", {}).items()})
        except FileNotFoundError:
            return cls()
        except (ValueError, TypeError, AttributeError) as exc:
            raise ClientError(f"{home / 'state.json'} is malformed: {exc}") from exc
        state._reconcile(home)
        return state

    def _reconcile(self, home: Path) -> None:
        """Trust the ``current`` symlink, the install's commit point, over state.json.

        An install without a health check switches the symlink (one atomic
        rename) and then saves the state; a crash between the two leaves the
        symlink ahead, pointing at a version that was fully unpacked, fsynced
        and verified. Readers see that version as current, and the next save
        records it. A package with a pending version is left alone: there the
        symlink is ahead on purpose, and only recovery may settle it.
        """
        for name, package in self.packages.items():
            if package.pending is not None:
                continue
            link = home / "packages" / name / "current"
            try:
                target = os.readlink(link)
            except OSError:
                continue
            if target != package.current and (link.parent / target).is_dir():
                package.previous, package.current = package.current, target
                package.versions.setdefault(target, {})

    def save(self, home: Path) -> None:
        data = {"packages": {name: asdict(p) for name, p in sorted(self.packages.items())}}
        write_atomic(home / "state.json", json.dumps(data, indent=1).encode())

    def package(self, name: str) -> PackageState:
        if name not in self.packages:
            raise PackageNotFoundError(f"{name} is not installed")
        return self.packages[name]
