"""A Python distribution's facts in a target's custom metadata: ``custom["python"]``.

::

    "custom": {"python": {"project": "rfc8785", "version": "0.1.2",
                          "requires_python": ">=3.8", "metadata_sha256": "<hex>"}}

Written by the repository when it publishes a wheel or an sdist, read by the
client's package index (PEP 503/691) to list files the way pip and uv expect:
``data-requires-python`` and PEP 658 core metadata. Signed by online keys
like the rest of the custom fields, so it only helps choose files: the file
served is the one TUF and in-toto verified, whatever these fields say.
"""

from __future__ import annotations

import email.parser
import hashlib
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from custody.formats.errors import FormatError

KEY = "python"
_HEX = re.compile(r"[0-9a-f]{64}\Z")


@dataclass
class PythonRelease:
    """The facts an index lists for one distribution file."""

    project: str
    version: str
    requires_python: str | None = None
    metadata_sha256: str | None = None

    @classmethod
    def from_custom(cls, custom: Any) -> PythonRelease | None:
        if not isinstance(custom, dict) or custom.get(KEY) is None:
            return None
        data = custom[KEY]
        where = f"custom[{KEY!r}]"
        if not isinstance(data, dict):
            raise FormatError(f"{where} must be an object")
        project, version = data.get("project"), data.get("version")
        if not isinstance(project, str) or canonicalize_name(project) != project:
            raise FormatError(f"{where}.project must be a normalized project name")
        if not isinstance(version, str) or len(version) > 64:
            raise FormatError(f"{where}.version must be a version string")
        requires = data.get("requires_python")
        if requires is not None:
            if not isinstance(requires, str) or len(requires) > 200:
                raise FormatError(f"{where}.requires_python must be a specifier string")
            try:
                SpecifierSet(requires)
            except InvalidSpecifier as exc:
                raise FormatError(f"{where}.requires_python {requires!r} is invalid") from exc
        digest = data.get("metadata_sha256")
        if digest is not None and (not isinstance(digest, str) or not _HEX.match(digest)):
            raise FormatError(f"{where}.metadata_sha256 must be a SHA-256 in hex")
        return cls(project, version, requires, digest)

    def to_custom(self) -> dict[str, Any]:
        out: dict[str, Any] = {"project": self.project, "version": self.version}
        if self.requires_python:
            out["requires_python"] = self.requires_python
        if self.metadata_sha256:
            out["metadata_sha256"] = self.metadata_sha256
        return {KEY: out}


def wheel_metadata(path: Path) -> bytes | None:
    """The core metadata file (``*.dist-info/METADATA``) of a wheel, if it has one."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist()
                     if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            return zf.read(names[0]) if len(names) == 1 else None
    except (zipfile.BadZipFile, OSError, KeyError) as exc:
        raise FormatError(f"{path.name} is not a readable wheel: {exc}") from exc


def check_wheel_metadata(metadata: bytes, filename: str, project: str, version: str) -> str | None:
    """A wheel's METADATA must be the file name's project and version, with no direct URLs.

    pip believes METADATA over the file name: a wheel named 1.0.1 whose
    METADATA says 1.0.0 is installed as 1.0.0 (or falls back to another
    file), and a ``Requires-Dist: six @ file:///...`` makes pip install that
    URL with no index, so with no verification at all. Both are refused
    where the repository publishes and where the client's index serves.
    Returns ``Requires-Python``.
    """
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version

    headers = email.parser.BytesParser().parsebytes(metadata, headersonly=True)
    name, declared = headers.get("Name"), headers.get("Version")
    if not name or canonicalize_name(name) != project:
        raise FormatError(f"{filename}: its METADATA names project {name!r}, not {project!r}")
    try:
        if declared is None or Version(declared) != Version(version):
            raise FormatError(f"{filename}: its METADATA says version {declared!r}, "
                              f"not {version}")
    except InvalidVersion as exc:
        raise FormatError(f"{filename}: its METADATA version {declared!r} is invalid") from exc
    for line in headers.get_all("Requires-Dist") or []:
        try:
            requirement = Requirement(line)
        except InvalidRequirement as exc:
            raise FormatError(f"{filename}: Requires-Dist {line!r} is invalid") from exc
        if requirement.url:
            raise FormatError(
                f"{filename}: Requires-Dist {line!r} is a direct URL dependency, which pip "
                "would install with no index and so unverified")
    return headers.get("Requires-Python")


def describe_distribution(path: Path, filename: str) -> PythonRelease | None:
    """What a wheel or sdist declares, from its file name (and a wheel's METADATA).

    ``None`` for a file that is no Python distribution; a ``.whl`` whose name
    does not parse, or whose METADATA is missing or disagrees with it
    (`check_wheel_metadata`), is refused.
    """
    if filename.endswith(".whl"):
        try:
            name, version, _, _ = parse_wheel_filename(filename)
        except InvalidWheelFilename as exc:
            raise FormatError(f"{filename!r} is not a wheel file name: {exc}") from exc
        metadata = wheel_metadata(path)
        if metadata is None:
            raise FormatError(f"{filename} has no single .dist-info/METADATA")
        requires = check_wheel_metadata(metadata, filename, name, str(version))
        return PythonRelease(name, str(version), requires, hashlib.sha256(metadata).hexdigest())
    if filename.endswith((".tar.gz", ".zip")):
        try:
            name, version = parse_sdist_filename(filename)
        except InvalidSdistFilename:
            return None  # a custody tarball, not an sdist
        return PythonRelease(name, str(version))
    return None
