"""A target's ``custom["in-toto"]``: which layout governs it and where its links are.

::

    "custom": {"in-toto": {"layout": "in-toto/layouts/hello.2.layout",
                           "links": ["in-toto/links/<sha256>/build.5f83bbbb.link", ...]}}

Written by the repository, read by the client, signed by online keys: the
client requires the layout to be one of the package's (and verifies with the
newest the owners signed) and every link to be filed under the artifact's
hash; this class only makes sure the fields are what they claim to be.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from custody.formats.errors import FormatError

KEY = "in-toto"
MAX_LINKS = 1000
MAX_PATH = 512


def _path(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_PATH or "\x00" in value:
        raise FormatError(f"{where} must be a target path of at most {MAX_PATH} characters")
    return value


@dataclass
class InTotoCustom:
    """The in-toto evidence of one target."""

    layout: str
    links: list[str] = field(default_factory=list)

    @classmethod
    def from_custom(cls, custom: Any) -> InTotoCustom | None:
        """The in-toto fields of a target's ``custom``, or ``None`` when it has none.

        Errors name the field (``custom["in-toto"].links[3]``); the caller names the target.
        """
        where = "custom"
        if custom is None:
            return None
        if not isinstance(custom, dict):
            raise FormatError(f"{where} must be an object")
        data = custom.get(KEY)
        if data is None or data == {}:
            return None
        if not isinstance(data, dict):
            raise FormatError(f"{where}[{KEY!r}] must be an object")
        layout = _path(data.get("layout"), f"{where}[{KEY!r}].layout")
        links = data.get("links", [])
        if not isinstance(links, list) or len(links) > MAX_LINKS:
            raise FormatError(f"{where}[{KEY!r}].links must be a list of at most "
                              f"{MAX_LINKS} paths")
        return cls(layout, [_path(p, f"{where}[{KEY!r}].links[{i}]")
                            for i, p in enumerate(links)])

    def to_custom(self) -> dict[str, Any]:
        return {KEY: {"layout": self.layout, "links": list(self.links)}}
