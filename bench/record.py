"""Recording speed: custody-intoto run vs in-toto-run, and the SHA-256 rate of this machine.

- 10,000 small files (1-8 KiB) as materials: whole-process time of both tools.
- One 512 MiB file: whole-process time of both tools, and custody's hashing
  rate against hashlib's own SHA-256 rate on the same (page-cached) file.

    python bench/record.py [--files 10000] [--big-mib 512] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BIN, best_of, compile_sources, table, write_result
from custody.intoto.artifacts import ArtifactRecorder
from custody.keys_tooling.keys import generate_key, write_key_pair


def small_files(root: Path, count: int) -> None:
    rng = random.Random(7)
    for i in range(count):
        folder = root / "src" / f"d{i // 200}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}.c").write_bytes(rng.randbytes(rng.randint(1024, 8192)))


def big_file(path: Path, mib: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(block)


def hashlib_rate(path: Path) -> float:
    """Bytes per second of plain hashlib SHA-256 over the file (already in page cache)."""
    start = time.perf_counter()
    with open(path, "rb") as f:
        hashlib.file_digest(f, "sha256")
    return path.stat().st_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--big-mib", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    compile_sources()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_key_pair(generate_key(), root / "key", None)
        small_files(root, args.files)
        big_file(root / "big.bin", args.big_mib)

        def both(materials: str) -> tuple[float, float]:
            flags = ["-n", "step", "--signing-key", "key", "-m", materials, "-x"]
            ours, _ = best_of(args.repeat, [BIN / "custody-intoto", "run", *flags], root)
            ref, _ = best_of(args.repeat, [BIN / "in-toto-run", *flags], root)
            return ours, ref

        ours, ref = both("src")
        rows.append([f"{args.files:,} small files", f"{ref:.2f} s", f"{ours:.2f} s",
                     f"**{ours / ref:.0%}** of in-toto-run's time"])
        print(rows[-1], flush=True)
        ours, ref = both("big.bin")
        size = (root / "big.bin").stat().st_size
        rate = max(hashlib_rate(root / "big.bin") for _ in range(args.repeat))
        start = time.perf_counter()
        ArtifactRecorder().record([str(root / "big.bin")])
        in_process = size / (time.perf_counter() - start)
        rows.append([f"one {args.big_mib} MiB file", f"{ref:.2f} s", f"{ours:.2f} s",
                     f"**{ours / ref:.0%}** of in-toto-run's time; whole process "
                     f"{size / ours / rate:.0%} and recording alone "
                     f"{in_process / rate:.0%} of hashlib's {rate / 1e9:.2f} GB/s"])
        print(rows[-1], flush=True)
    write_result("record", "### `custody-intoto run` vs `in-toto-run` (whole process)\n\n"
                 + table(["materials", "in-toto-run", "custody-intoto run", "result"], rows))


if __name__ == "__main__":
    main()
