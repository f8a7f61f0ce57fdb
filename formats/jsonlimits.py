"""JSON with its size and depth bounded before the parser sees it.

``json.loads`` on a document nested 100,000 deep raises ``RecursionError``
after exhausting the interpreter's stack, and on a 2 GB document allocates
several times that: both are a compromised server's cheap denial of
service. `loads_bounded` refuses them first, with one sentence.
"""

from __future__ import annotations

import json
import re
from typing import Any

from custody.formats.errors import FormatError

MAX_DEPTH = 32
MAX_BYTES = 16 << 20
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(rb"[\[\]{}]")


def depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in ``data`` (strings skipped), in one pass."""
    level = deepest = 0
    for match in _BRACKETS.finditer(_STRINGS.sub(b'""', data)):
        if match.group() in (b"[", b"{"):
            level += 1
            deepest = max(deepest, level)
        else:
            level -= 1
    return deepest


def loads_bounded(data: bytes, where: str, max_bytes: int = MAX_BYTES,
                  max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``data`` as JSON, refusing more than ``max_bytes`` or nesting over ``max_depth``."""
    if len(data) > max_bytes:
        raise FormatError(f"{where} is {len(data)} bytes, over the limit of {max_bytes}")
    if depth(data) > max_depth:
        raise FormatError(f"{where} nests deeper than {max_depth} levels")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise FormatError(f"{where} is not JSON: {exc}") from exc
