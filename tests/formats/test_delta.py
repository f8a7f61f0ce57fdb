"""zstd patch-from: patches rebuild the new artifact, never more than its signed length."""

from __future__ import annotations

import io
import random

import pytest

from custody.formats.delta import PatchError, apply_patch, make_patch, window_log
from custody.formats.errors import FormatError
from custody.formats.patches import Patch, patches_from_custom, patches_to_custom

RNG = random.Random(24)
BASE = RNG.randbytes(2 << 20)
NEW = BASE[:700_000] + b"a new function" * 50 + BASE[700_000:1_500_000] + RNG.randbytes(4096)


def _apply(base: bytes, patch: bytes, length: int, chunk: int = 8192) -> bytes:
    out = io.BytesIO()
    written = apply_patch(base, (patch[i:i + chunk] for i in range(0, len(patch), chunk)),
                          length, out.write)
    assert written == len(out.getvalue())
    return out.getvalue()


def test_a_patch_rebuilds_the_new_artifact_from_the_base_in_a_fraction_of_its_size():
    patch = make_patch(BASE, NEW)
    assert len(patch) < len(NEW) // 50  # what is shared is referenced, not sent
    assert _apply(BASE, patch, len(NEW)) == NEW
    assert _apply(BASE, patch, len(NEW), chunk=1) == NEW  # any chunking


def test_the_window_spans_both_artifacts():
    assert window_log(0, 0) == 10
    assert 2 ** window_log(len(BASE), len(NEW)) >= len(BASE) + len(NEW)
    assert window_log(3 << 30, 3 << 30) == 31


class Bounded(io.BytesIO):
    """A sink that fails the test if more than ``limit`` bytes ever reach it."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def write(self, data) -> int:  # type: ignore[override]
        assert self.tell() + len(data) <= self.limit
        return super().write(data)


@pytest.mark.parametrize(("case", "words"), [
    ("truncated", "truncated"),
    ("flipped", "does not apply"),
    ("two frames", "more than one zstd frame"),
    ("longer than signed", "reconstructs more than"),
    ("wrong base", "does not apply"),
    ("not zstd", "does not apply"),
])
def test_a_bad_patch_is_refused_and_never_writes_past_the_signed_length(case, words):
    patch, base, length = make_patch(BASE, NEW), BASE, len(NEW)
    if case == "truncated":
        patch = patch[:-7]
    elif case == "flipped":
        patch = patch[:-6] + bytes([patch[-6] ^ 0x10]) + patch[-5:]
    elif case == "two frames":
        patch = patch + make_patch(BASE, b"more")
    elif case == "longer than signed":
        length -= 1
    elif case == "wrong base":
        base = RNG.randbytes(len(BASE))
    else:
        patch = b"PK\x03\x04" + b"\0" * 100
    with pytest.raises(PatchError, match=words):
        apply_patch(base, [patch], length, Bounded(length).write)


def test_patch_lists_parse_as_hostile_input():
    patch = Patch("packages/h/1/h.tar", "a" * 64, "packages/h/2/h.tar.from-1.zst")
    custom = {"in-toto": {}, **patches_to_custom([patch])}
    assert patches_from_custom(custom) == [patch]
    assert patches_from_custom({"in-toto": {}}) == [] and patches_to_custom([]) == {}
    for bad in ({"patches": {}}, {"patches": [1]}, {"patches": [{**patch.to_dict(),
                                                                 "base_sha256": "A" * 64}]},
                {"patches": [{**patch.to_dict(), "patch": ""}]},
                {"patches": [patch.to_dict()] * 17}):
        with pytest.raises(FormatError):
            patches_from_custom(bad)
