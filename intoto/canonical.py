"""Canonical JSON as securesystemslib (and so in-toto and TUF) define it.

Signatures over classic in-toto metadata are made over the canonical JSON of
the ``signed`` object: keys sorted, no whitespace, strings escaped only for
``"`` and ``\\``, everything else (control characters included) written raw
as UTF-8. securesystemslib's ``encode_canonical`` is a pure-Python recursive
writer, which dominates verification time for links that record tens of
thousands of artifacts. Here the C encoder of the standard ``json`` module
writes the document and a single regular-expression pass turns its extra
escapes back into the raw characters canonical JSON wants; the property
tests check the result equals ``encode_canonical`` byte for byte.
"""

from __future__ import annotations

import json
import re
from typing import Any

from intoto.errors import FormatError

_ESCAPE = re.compile(r'\\(["\\/bfnrt]|u[0-9a-fA-F]{4})')
_SIMPLE = {'"': '\\"', "\\": "\\\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
           "t": "\t"}


def _unescape(match: re.Match[str]) -> str:
    token = match.group(1)
    if token[0] == "u":
        return chr(int(token[1:], 16))
    return _SIMPLE[token]


def _reject_floats(value: float) -> Any:
    raise FormatError(f"canonical JSON cannot encode the float {value!r}")


def encode_canonical(obj: Any, floats_checked: bool = False) -> bytes:
    """Return the canonical JSON bytes of ``obj`` (dicts, lists, str, int, bool, None).

    Raises FormatError for values canonical JSON cannot hold (floats, other types).
    ``floats_checked`` skips the walk that looks for floats, for data already
    known to hold none (parsed with `loads`, which refuses them).
    """
    try:
        text = json.dumps(
            obj,
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
            default=_reject_floats,
        )
    except (TypeError, ValueError) as exc:
        raise FormatError(f"canonical JSON cannot encode the metadata: {exc}") from exc
    if not floats_checked and (isinstance(obj, float) or ("." in text and has_float(obj))):
        raise FormatError("canonical JSON cannot encode floats")
    if "\\" in text:
        text = _ESCAPE.sub(_unescape, text)
    return text.encode("utf-8")


def has_float(obj: Any) -> bool:
    """Whether a float hides anywhere in ``obj`` (json.dumps writes floats natively)."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def _refuse_float(token: str) -> Any:
    raise FormatError(f"metadata holds the number {token}; in-toto metadata has no floats")


def loads(data: bytes | str) -> Any:
    """``json.loads`` that refuses floats, NaN and infinities, as canonical JSON does."""
    return json.loads(data, parse_float=_refuse_float, parse_constant=_refuse_float)
