"""``packages/<name>/index.json``: a package's versions, their artifacts, its channels.

::

    {"name": "hello",
     "versions": {"1.0.0": {"target": "packages/hello/1.0.0/hello.tar.gz",
                            "published": "2026-11-24T19:58:43Z"}},
     "channels": {"stable": "1.0.0"}}

A version published as several platform builds lists them instead of one
target (see `VersionEntry`; `build_target` says why a build's file name starts
with its platform)::

    "2.0.0": {"builds": {
                "linux-aarch64": {"target": "packages/hello/2.0.0/linux-aarch64.hello.tar.gz"},
                "linux-x86_64": {"target": "packages/hello/2.0.0/linux-x86_64.hello.tar.gz"}},
              "published": "2026-12-06T00:30:00Z"}

Signed by the online ``releases`` role (or its hash bin), so it may only help
a client *find* versions: which artifact a version is, and which version a
channel names. Everything else (that the artifact was built as the layout
says, that it is not older than what is installed) is proven elsewhere.
Unknown fields of a version entry are kept (later formats add some) but
never interpreted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from packaging.version import InvalidVersion, Version

from custody.formats.errors import FormatError
from custody.formats.jsonlimits import loads_bounded
from custody.formats.platforms import check_platform

NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?\Z")
CHANNEL = re.compile(r"[a-z][a-z0-9-]{0,31}\Z")
MAX_VERSION_LENGTH = 64
MAX_PATH_LENGTH = 512
MAX_VERSIONS = 100_000
MAX_BUILDS = 64
MAX_INDEX_BYTES = 32 << 20


def parse_version(value: Any, where: str) -> Version:
    """A PEP 440 version of bounded length (a 5,000-digit version is an attack, not a typo)."""
    if not isinstance(value, str):
        raise FormatError(f"{where} must be a version string, not {type(value).__name__}")
    if len(value) > MAX_VERSION_LENGTH:
        raise FormatError(f"{where} {value[:20]!r}... is longer than {MAX_VERSION_LENGTH} "
                          "characters")
    try:
        return Version(value)
    except InvalidVersion as exc:
        raise FormatError(f"{where} {value!r} is not a PEP 440 version") from exc


def _string(value: Any, where: str, limit: int = MAX_PATH_LENGTH) -> str:
    if not isinstance(value, str):
        raise FormatError(f"{where} must be a string, not {type(value).__name__}")
    if len(value) > limit or "\x00" in value:
        raise FormatError(f"{where} is longer than {limit} characters or holds NUL")
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FormatError(f"{where} must be an object, not {type(value).__name__}")
    return value


def build_target(name: str, version: str, platform: str | None, filename: str) -> str:
    """The target path of a version's artifact: ``packages/<name>/<version>/<file>``, and
    for a platform build ``packages/<name>/<version>/<platform>.<file>``.

    Not a ``<platform>/`` folder: the ``releases`` role is delegated
    ``packages/*/*/*`` by the offline ``targets`` keys (TUF patterns match one
    segment per ``*``), so a fourth segment would be outside what the online
    key may sign in every repository made so far. The platform prefix keeps
    each build in the version's own folder, named after its platform, where a
    client checks it (`artifact_filename` gives the file name back).
    """
    base = f"packages/{name}/{version}/"
    return base + (f"{platform}.{filename}" if platform is not None else filename)


def artifact_filename(target: str, platform: str | None) -> str:
    """The artifact's own file name (the layout's product) of a `build_target` path."""
    basename = target.rsplit("/", 1)[-1]
    if platform is not None and basename.startswith(f"{platform}."):
        return basename[len(platform) + 1:]
    return basename


@dataclass
class Build:
    """One platform's build of a version: its artifact's target path."""

    target: str
    unrecognized: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Build:
        data = dict(_object(data, where))
        if "target" not in data:
            raise FormatError(f"{where}.target is missing")
        return cls(_string(data.pop("target"), f"{where}.target"), data)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, **self.unrecognized}


@dataclass
class VersionEntry:
    """One version of the index: its artifact's target path, or one per platform build.

    A version is either one artifact for every host (``target``) or several
    builds (``builds``: platform name -> its artifact), never both. A version
    of builds has no ``target`` on purpose: a client older than builds
    requires ``target`` in every entry, so it refuses the whole index (TUF
    refused ..., exit 1) instead of installing whichever build a ``target``
    would have named on a host of another platform.
    """

    target: str | None
    published: str | None = None
    unrecognized: dict[str, Any] = field(default_factory=dict)
    builds: dict[str, Build] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> VersionEntry:
        data = dict(_object(data, where))
        published = data.pop("published", None)
        if published is not None:
            published = _string(published, f"{where}.published", 64)
        if "builds" in data:
            if "target" in data:
                raise FormatError(f"{where} lists both a target and builds")
            raw = _object(data.pop("builds"), f"{where}.builds")
            if not raw or len(raw) > MAX_BUILDS:
                raise FormatError(f"{where}.builds must list 1 to {MAX_BUILDS} platforms")
            builds = {check_platform(key, f"{where}.builds key"):
                      Build.from_dict(value, f"{where}.builds[{key!r}]")
                      for key, value in raw.items()}
            return cls(None, published, data, builds)
        if "target" not in data:
            raise FormatError(f"{where}.target is missing")
        target = _string(data.pop("target"), f"{where}.target")
        return cls(target, published, data)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.target is not None:
            out["target"] = self.target
        if self.builds:
            out["builds"] = {p: b.to_dict() for p, b in sorted(self.builds.items())}
        if self.published is not None:
            out["published"] = self.published
        return {**out, **self.unrecognized}

    def targets(self) -> dict[str | None, str]:
        """Every artifact of the version: platform (``None`` for one for all) -> target path."""
        if self.target is not None:
            return {None: self.target}
        return {platform: build.target for platform, build in self.builds.items()}

    def target_for(self, platform: str) -> str | None:
        """The artifact a host of ``platform`` installs: the version's own, else its build
        for that platform, else none (never another platform's build)."""
        if self.target is not None:
            return self.target
        build = self.builds.get(platform)
        return build.target if build is not None else None

    @property
    def filename(self) -> str:
        """The file name of the version's one artifact (a version of builds has none)."""
        return (self.target or "").rsplit("/", 1)[-1]


ROLLOUT_STATES = ("active", "paused")


@dataclass
class Rollout:
    """A channel moving to ``version`` for a growing share of the fleet.

    While it runs, the channel itself still names the previous version: a
    host is in the rollout when its bucket (`rollout_bucket`) is below
    ``percent`` and the rollout is active; everyone else stays on the
    channel's version. Completing the rollout moves the channel. Online
    signed, like the rest of the index: it can hold a host back or let it in
    early, never make it install what in-toto did not verify or go backwards.
    """

    version: str
    percent: float
    state: str = "active"
    reason: str = ""  # why it paused
    max_failure_rate: float | None = None
    min_reports: int = 20
    started: str | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Rollout:
        data = _object(data, where)
        version = _string(data.get("version"), f"{where}.version", MAX_VERSION_LENGTH)
        parse_version(version, f"{where}.version")
        percent = data.get("percent")
        if isinstance(percent, bool) or not isinstance(percent, int | float) \
                or not 0 <= percent <= 100:
            raise FormatError(f"{where}.percent must be a number from 0 to 100")
        state = data.get("state", "active")
        if state not in ROLLOUT_STATES:
            raise FormatError(f"{where}.state must be one of {', '.join(ROLLOUT_STATES)}")
        rate = data.get("max_failure_rate")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)
                                 or not 0 <= rate <= 1):
            raise FormatError(f"{where}.max_failure_rate must be a number from 0 to 1")
        minimum = data.get("min_reports", 20)
        if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 1:
            raise FormatError(f"{where}.min_reports must be a positive integer")
        started = data.get("started")
        return cls(version, float(percent), state,
                   _string(data.get("reason", ""), f"{where}.reason", 500),
                   None if rate is None else float(rate), minimum,
                   None if started is None else _string(started, f"{where}.started", 64))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version, "percent": self.percent,
                               "state": self.state, "min_reports": self.min_reports}
        if self.reason:
            out["reason"] = self.reason
        if self.max_failure_rate is not None:
            out["max_failure_rate"] = self.max_failure_rate
        if self.started:
            out["started"] = self.started
        return out

    def includes(self, client_id: str, package: str) -> bool:
        """Whether the host ``client_id`` gets ``version`` now."""
        return self.state == "active" and rollout_bucket(client_id, package) < self.percent


def rollout_bucket(client_id: str, package: str) -> float:
    """A host's place in every rollout of ``package``: a number in [0, 100), stable.

    The same host and package give the same number on every poll, so 5% is
    the same hosts each time and raising the percentage only adds hosts.
    """
    import hashlib

    digest = hashlib.sha256(f"{client_id}\0{package}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


@dataclass
class PackageIndex:
    """The index of one package (see the module docstring)."""

    name: str
    versions: dict[str, VersionEntry] = field(default_factory=dict)
    channels: dict[str, str] = field(default_factory=dict)
    rollouts: dict[str, Rollout] = field(default_factory=dict)

    @staticmethod
    def target_path(name: str) -> str:
        return f"packages/{name}/index.json"

    @classmethod
    def from_dict(cls, data: Any, where: str = "index") -> PackageIndex:
        data = _object(data, where)
        name = _string(data.get("name"), f"{where}.name", 64)
        if not NAME.match(name):
            raise FormatError(f"{where}.name {name!r} is not a package name")
        raw_versions = _object(data.get("versions", {}), f"{where}.versions")
        if len(raw_versions) > MAX_VERSIONS:
            raise FormatError(f"{where}.versions lists over {MAX_VERSIONS} versions")
        versions: dict[str, VersionEntry] = {}
        seen: dict[Version, str] = {}
        for key, entry in raw_versions.items():
            parsed = parse_version(key, f"{where}.versions key")
            if parsed in seen:
                raise FormatError(f"{where}.versions lists {seen[parsed]!r} and {key!r}, one "
                                  "version (PEP 440)")
            seen[parsed] = key
            versions[key] = VersionEntry.from_dict(entry, f"{where}.versions[{key!r}]")
        channels: dict[str, str] = {}
        for channel, version in _object(data.get("channels", {}),
                                        f"{where}.channels").items():
            if not CHANNEL.match(channel):
                raise FormatError(f"{where}.channels key {channel[:40]!r} is not a channel name")
            parse_version(version, f"{where}.channels[{channel!r}]")
            if version not in versions:
                raise FormatError(f"{where}.channels[{channel!r}] names {version!r}, which "
                                  "the index does not list")
            channels[channel] = version
        rollouts: dict[str, Rollout] = {}
        for channel, raw in _object(data.get("rollouts", {}), f"{where}.rollouts").items():
            if channel not in channels:
                raise FormatError(f"{where}.rollouts[{channel[:40]!r}] rolls out a channel "
                                  "the index does not have")
            rollout = Rollout.from_dict(raw, f"{where}.rollouts[{channel!r}]")
            if rollout.version not in versions:
                raise FormatError(f"{where}.rollouts[{channel!r}] names {rollout.version!r}, "
                                  "which the index does not list")
            rollouts[channel] = rollout
        return cls(name, versions, channels, rollouts)

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "index") -> PackageIndex:
        return cls.from_dict(loads_bounded(data, where, MAX_INDEX_BYTES), where)

    def to_dict(self) -> dict[str, Any]:
        ordered = sorted(self.versions.items(), key=lambda kv: Version(kv[0]))
        out: dict[str, Any] = {"name": self.name,
                               "versions": {v: e.to_dict() for v, e in ordered},
                               "channels": dict(self.channels)}
        if self.rollouts:
            out["rollouts"] = {c: r.to_dict() for c, r in sorted(self.rollouts.items())}
        return out

    def channel_version(self, channel: str, client_id: str | None = None,
                        installed: str | None = None) -> str | None:
        """What ``channel`` means for the host ``client_id``: a rollout's version if the host
        is in it (or already runs it: a paused rollout holds hosts, never moves them back),
        else the channel's."""
        rollout = self.rollouts.get(channel)
        if rollout is not None and (installed == rollout.version or (
                client_id is not None and rollout.includes(client_id, self.name))):
            return rollout.version
        return self.channels.get(channel)

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), indent=1).encode() + b"\n"

    def find(self, version: str) -> str | None:
        """The index's own spelling of ``version`` (PEP 440 equality: 2.4 finds 2.4.0)."""
        wanted = Version(version)
        return next((key for key in self.versions if Version(key) == wanted), None)

    def latest(self) -> str | None:
        return max(self.versions, key=Version) if self.versions else None
