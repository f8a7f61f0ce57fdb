"""Patches between two artifacts: zstd's "patch from" mode, as pure transport.

A patch is a zstd frame of the new artifact compressed with the old one as
its *prefix* (``zstd --patch-from``): long-distance matching and a window as
large as both artifacts let it refer to any run of the old bytes, so what
two releases share costs almost nothing. Applying it is zstd decompression
with the same prefix, at disk speed, in memory bounded by the two artifacts.

A patch adds no trust and needs none: whatever it reconstructs is checked
against the full artifact's TUF length and hashes before anything reads it
(`custody.client.updater`), so a wrong, truncated or hostile patch is only a
wasted download. The bound is enforced while decompressing: no more than
the artifact's signed length is ever written.

Why archives must be published uncompressed (or ``gzip --rsyncable``) for
patches to help: a gzip stream's bytes depend on everything before them, so
one changed file early in a ``.tar.gz`` changes every compressed byte after
it, and two releases share no long runs for the patch to point at. An
uncompressed ``.tar`` keeps each unchanged file's bytes as they were (at a
new offset, which long-distance matching finds); ``--rsyncable`` resets the
compressor at content-defined points so that most of the stream stays the
same too. The transport compresses anyway: the patch is a zstd frame.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable

from custody.formats.errors import FormatError

if sys.version_info >= (3, 14):
    from compression import zstd
else:  # the same module, for 3.11 to 3.13 (PEP 784's backport)
    from backports import zstd

#: Level of `make_patch` by default: smaller patches than tufup's bsdiff4 on every pair
#: bench/delta.py measures, in a 14th to a 28th of its time (so publishing through the
#: API stays a matter of seconds); -19 saves another 2-12% in about 15 times as long.
DEFAULT_LEVEL = 12
MIN_WINDOW_LOG = 10  # zstd's smallest window
MAX_WINDOW_LOG = 31  # zstd's largest (64-bit); artifacts past 2 GiB are sent whole
CHUNK = 1 << 20


class PatchError(FormatError):
    """A patch that does not apply: corrupt, truncated, too long, or for another base."""


def window_log(base_length: int, length: int) -> int:
    """The window (log2 bytes) that spans the base and the new artifact: every byte of
    the base stays in reach of every byte of the new one."""
    return max(MIN_WINDOW_LOG, min(MAX_WINDOW_LOG, (base_length + length).bit_length()))


def patchable(base_length: int, length: int) -> bool:
    """Whether a patch can span both artifacts (a window of at most 2 GiB)."""
    return (base_length + length).bit_length() <= MAX_WINDOW_LOG


def make_patch(base: bytes, new: bytes, level: int = DEFAULT_LEVEL) -> bytes:
    """The patch that turns ``base`` into ``new`` (one zstd frame, content size and
    checksum included)."""
    if not patchable(len(base), len(new)):
        raise PatchError("the two artifacts are too large together for one zstd window")
    options: dict[int, int] = {
        zstd.CompressionParameter.compression_level: level,
        zstd.CompressionParameter.enable_long_distance_matching: 1,
        zstd.CompressionParameter.window_log: window_log(len(base), len(new)),
        zstd.CompressionParameter.checksum_flag: 1,
        zstd.CompressionParameter.content_size_flag: 1,
    }
    prefix = zstd.ZstdDict(base, is_raw=True).as_prefix
    return zstd.ZstdCompressor(options=options, zstd_dict=prefix).compress(
        new, zstd.ZstdCompressor.FLUSH_FRAME)


def apply_patch(base: bytes, patch: Iterable[bytes], length: int,
                write: Callable[[bytes], object]) -> int:
    """Reconstruct from ``base`` and the chunks of ``patch``; hand the bytes to ``write``.

    At most ``length`` bytes (the artifact's signed length) are ever produced,
    and the window is bounded by the base and that length, so a hostile patch
    can make neither a larger output nor a larger buffer. Returns the number
    of bytes written; raises `PatchError` for a patch that is corrupt, ends
    early, holds more than one frame or reconstructs more than ``length``.
    """
    if not patchable(len(base), length):
        raise PatchError("the two artifacts are too large together for one zstd window")
    prefix = zstd.ZstdDict(base, is_raw=True).as_prefix
    options: dict[int, int] = {
        zstd.DecompressionParameter.window_log_max: window_log(len(base), length)}
    decompressor = zstd.ZstdDecompressor(zstd_dict=prefix, options=options)
    written = 0
    try:
        for chunk in patch:
            if decompressor.eof:
                raise PatchError("the patch holds more than one zstd frame")
            data = chunk
            while True:
                out = decompressor.decompress(data, max_length=min(CHUNK, length - written + 1))
                data = b""
                written += len(out)
                if written > length:
                    raise PatchError(f"the patch reconstructs more than the {length} bytes "
                                     "signed for the artifact")
                if out:
                    write(out)
                if decompressor.needs_input or decompressor.eof:
                    break
    except zstd.ZstdError as exc:
        raise PatchError(f"the patch does not apply: {exc}") from exc
    if not decompressor.eof:
        raise PatchError("the patch ends before its zstd frame does (truncated)")
    if decompressor.unused_data:
        raise PatchError("the patch holds more than one zstd frame")
    return written
