"""``packages/<name>/index.json``: a package's versions, their artifacts, its channels.

::

    {"name": "hello",
     "versions": {"1.0.0": {"target": "packages/hello/1.0.0/hello.tar.gz",
                            "published": "2026-11-24T19:58:43Z"}},
     "channels": {"stable": "1.0.0"}}

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

from formats.errors import FormatError
from formats.jsonlimits import loads_bounded

NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?\Z")
CHANNEL = re.compile(r"[a-z][a-z0-9-]{0,31}\Z")
MAX_VERSION_LENGTH = 64
MAX_PATH_LENGTH = 512
MAX_VERSIONS = 100_000
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


@dataclass
class VersionEntry:
    """One version of the index: its artifact's target path, when it was published."""

    target: str
    published: str | None = None
    unrecognized: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> VersionEntry:
        data = dict(_object(data, where))
        if "target" not in data:
            raise FormatError(f"{where}.target is missing")
        target = _string(data.pop("target"), f"{where}.target")
        published = data.pop("published", None)
        if published is not None:
            published = _string(published, f"{where}.published", 64)
        return cls(target, published, data)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"target": self.target}
        if self.published is not None:
            out["published"] = self.published
        return {**out, **self.unrecognized}

    @property
    def filename(self) -> str:
        return self.target.rsplit("/", 1)[-1]


@dataclass
class PackageIndex:
    """The index of one package (see the module docstring)."""

    name: str
    versions: dict[str, VersionEntry] = field(default_factory=dict)
    channels: dict[str, str] = field(default_factory=dict)

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
        return cls(name, versions, channels)

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "index") -> PackageIndex:
        return cls.from_dict(loads_bounded(data, where, MAX_INDEX_BYTES), where)

    def to_dict(self) -> dict[str, Any]:
        ordered = sorted(self.versions.items(), key=lambda kv: Version(kv[0]))
        return {"name": self.name, "versions": {v: e.to_dict() for v, e in ordered},
                "channels": dict(self.channels)}

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), indent=1).encode() + b"\n"

    def find(self, version: str) -> str | None:
        """The index's own spelling of ``version`` (PEP 440 equality: 2.4 finds 2.4.0)."""
        wanted = Version(version)
        return next((key for key in self.versions if Version(key) == wanted), None)

    def latest(self) -> str | None:
        return max(self.versions, key=Version) if self.versions else None
