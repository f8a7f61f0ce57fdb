"""A target's ``custom["patches"]``: patches that reconstruct it from earlier artifacts.

::

    "custom": {"in-toto": {...},
               "patches": [{"base": "packages/hello/1.0.0/hello.tar",
                            "base_sha256": "<sha256 of that artifact>",
                            "patch": "packages/hello/2.0.0/hello.tar.from-1.0.0.zst"}]}

Written by the repository beside the artifact (`custody.repository.releases`),
signed by the online keys with the rest of the target. A host that holds one
of the bases (its cached, verified artifact) may download the patch, itself
a TUF target, instead of the artifact; what it reconstructs must be the
artifact, byte for byte (`custody.formats.delta`). The list is a hint for
transport, never evidence: a wrong entry costs a download, not trust.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from custody.formats.errors import FormatError

KEY = "patches"
MAX_PATCHES = 16
MAX_PATH = 512
SHA256 = re.compile(r"[0-9a-f]{64}\Z")


def _path(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_PATH or "\x00" in value:
        raise FormatError(f"{where} must be a target path of at most {MAX_PATH} characters")
    return value


@dataclass(frozen=True)
class Patch:
    """One patch of a target: from which artifact (path and hash), and where it is."""

    base: str
    base_sha256: str
    patch: str

    def to_dict(self) -> dict[str, str]:
        return {"base": self.base, "base_sha256": self.base_sha256, "patch": self.patch}


def patches_from_custom(custom: Any) -> list[Patch]:
    """The patches a target's ``custom`` lists (none when it lists none)."""
    if not isinstance(custom, dict) or custom.get(KEY) is None:
        return []
    raw = custom[KEY]
    where = f"custom[{KEY!r}]"
    if not isinstance(raw, list) or len(raw) > MAX_PATCHES:
        raise FormatError(f"{where} must be a list of at most {MAX_PATCHES} patches")
    patches = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise FormatError(f"{where}[{i}] must be an object")
        digest = entry.get("base_sha256")
        if not isinstance(digest, str) or not SHA256.match(digest):
            raise FormatError(f"{where}[{i}].base_sha256 must be a sha256 in hex")
        patches.append(Patch(_path(entry.get("base"), f"{where}[{i}].base"), digest,
                             _path(entry.get("patch"), f"{where}[{i}].patch")))
    return patches


def patches_to_custom(patches: list[Patch]) -> dict[str, Any]:
    return {KEY: [p.to_dict() for p in patches]} if patches else {}
