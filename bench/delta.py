"""Delta updates: custody's zstd patches vs tufup's bsdiff4, on real consecutive releases.

Each pair is two consecutive releases of a project from the package registry
(``pip download``), unpacked and repacked as an uncompressed, deterministic
tar (sorted members, mtime 0): the form a publisher uses so that patches
work (formats/delta.py says why gzip archives do not). For each pair, in the
same run: the new release gzip -6 (what a host downloads whole today),
zstd -3 of it alone (no base), custody's patch (`custody.formats.delta`) at
several levels, and bsdiff4's patch (what tufup publishes). Applying
custody's patch runs in a process of its own, whose peak RSS is reported
against the two artifacts' sizes. The last table is bytes served for 1,000
host updates of each pair, whole (gzip) and by custody's patch.

    python bench/delta.py [--levels 19,15,12] [--cache DIR]

bsdiff4 is installed into this environment by the bench if it is missing
(it is no dependency of custody).
"""

from __future__ import annotations

import argparse
import gzip
import io
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import table, write_result
from custody.formats.delta import DEFAULT_LEVEL, make_patch, zstd

PAIRS = (("botocore", "1.40.60", "1.40.61"), ("ruff", "0.14.0", "0.14.1"),
         ("pip", "25.2", "25.3"))
APPLY = """
import sys, time
from custody.formats.delta import apply_patch
base = open(sys.argv[1], 'rb').read()
start = time.perf_counter()
with open(sys.argv[2], 'rb') as patch, open(sys.argv[3], 'wb') as out:
    written = apply_patch(base, iter(lambda: patch.read(1 << 20), b''), int(sys.argv[4]),
                          out.write)
elapsed = time.perf_counter() - start
# This process's own peak (VmHWM starts again at exec; ru_maxrss would carry the
# forking bench's).
peak = next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM'))
print(elapsed, peak)
"""


def mib(n: float) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.2f} GiB"
    return f"{n / (1 << 20):.2f} MiB" if n >= 1 << 20 else f"{n / 1024:.1f} KiB"


def wheel(project: str, version: str, cache: Path) -> Path:
    """The release's wheel for this host, downloaded once by pip."""
    found = sorted(cache.glob(f"{project}-{version}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--only-binary=:all:", "--dest", str(cache), f"{project}=={version}"],
                       check=True)
        found = sorted(cache.glob(f"{project}-{version}-*.whl"))
    return found[0]


def as_tar(path: Path) -> bytes:
    """The wheel's files as an uncompressed tar: sorted, mtime 0, owner 0."""
    buf = io.BytesIO()
    with zipfile.ZipFile(path) as zf, tarfile.open(fileobj=buf, mode="w",
                                                   format=tarfile.GNU_FORMAT) as tar:
        for name in sorted(n for n in zf.namelist() if not n.endswith("/")):
            data = zf.read(name)
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def timed(func, *args):
    start = time.perf_counter()
    result = func(*args)
    return result, time.perf_counter() - start


def bsdiff4_module():
    try:
        import bsdiff4
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "bsdiff4"],
                       check=True)
        import bsdiff4
    return bsdiff4


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", default=",".join(
        str(level) for level in sorted({19, 15, DEFAULT_LEVEL}, reverse=True)))
    parser.add_argument("--cache", type=Path,
                        default=Path(tempfile.gettempdir()) / "custody-bench-delta")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    args.cache.mkdir(parents=True, exist_ok=True)
    bsdiff4 = bsdiff4_module()
    rows, apply_rows, fleet_rows = [], [], []
    for project, old_version, new_version in PAIRS:
        old = as_tar(wheel(project, old_version, args.cache))
        new = as_tar(wheel(project, new_version, args.cache))
        with tarfile.open(fileobj=io.BytesIO(new)) as tar:
            files = len(tar.getnames())
        full = len(gzip.compress(new, 6, mtime=0))
        alone = len(zstd.compress(new, 3))
        patches = {}
        for level in levels:
            patch, seconds = timed(make_patch, old, new, level)
            patches[level] = (patch, seconds)
        bs, bs_seconds = timed(bsdiff4.diff, old, new)
        label = (f"{project} {old_version} -> {new_version} ({files:,} files, "
                 f"{mib(len(new))} as tar)")
        cells = [label, mib(full), f"{alone / len(new):.1%}"]
        for level in levels:
            patch, seconds = patches[level]
            cells.append(f"{mib(len(patch))} ({len(patch) / len(new):.1%}) in {seconds:.1f} s")
        cells.append(f"{mib(len(bs))} ({len(bs) / len(new):.1%}) in {bs_seconds:.1f} s")
        default_patch, default_seconds = patches[DEFAULT_LEVEL] if DEFAULT_LEVEL in patches \
            else patches[levels[0]]
        cells.append(f"**{bs_seconds / default_seconds:.1f}x**, "
                     f"{len(default_patch) / len(bs):.0%} of its size")
        rows.append(cells)

        with tempfile.TemporaryDirectory() as tmp:
            base, patch_file, out = Path(tmp, "base"), Path(tmp, "patch"), Path(tmp, "out")
            base.write_bytes(old)
            patch_file.write_bytes(default_patch)
            result = subprocess.run([sys.executable, "-c", APPLY, base, patch_file, out,
                                     str(len(new))], capture_output=True, text=True, check=True)
            elapsed, peak_kib = float(result.stdout.split()[0]), int(result.stdout.split()[1])
            assert out.read_bytes() == new, f"{project}: the patch did not rebuild the release"
        apply_rows.append([label, f"{elapsed:.2f} s",
                           f"{len(new) / elapsed / (1 << 20):.0f} MiB/s",
                           f"{peak_kib / 1024:.0f} MiB",
                           f"{(len(old) + len(new)) / (1 << 20):.0f} MiB"])
        fleet_rows.append([label, mib(1000 * full), mib(1000 * len(default_patch)),
                           f"{1 - len(default_patch) / full:.0%}"])

    level_headers = [f"custody zstd patch -{level}" + (" (default)" if level == DEFAULT_LEVEL
                                                        else "") for level in levels]
    text = "\n\n".join([
        "### Delta updates: custody's zstd patches vs tufup's bsdiff4 (same run)",
        table(["pair", "gzip -6 whole", "zstd -3 alone", *level_headers, "bsdiff4 (tufup)",
               "custody default vs bsdiff4: faster, size"], rows),
        table(["apply custody's default patch (its own process)", "time (applying)",
               "rate (new artifact written)", "peak RSS (whole process)",
               "old + new artifact"], apply_rows),
        table(["1,000 host updates", "whole (gzip -6)", "custody patches", "saved"],
              fleet_rows),
    ])
    write_result("delta", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
