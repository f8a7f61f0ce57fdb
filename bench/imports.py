"""Import time of a poll's process: what `python -X importtime` shows, before and after.

A no-op update poll is mostly interpreter start and imports, so this is
where a poll's time goes. Three processes, each measured by ``-X importtime``
(median of ``--repeat`` runs of the total):

- the bare baseline: ``import tuf.ngclient``, what a python-tuf poller imports;
- custody before this round: ``custody.client.cli`` imported directly, as the console
  script did (boto3 comes in through securesystemslib's AWS signer, and
  ``importlib.metadata`` for ``--version``);
- custody now: through ``launch``, which defers boto3, with ``--version``
  looked up only when asked.

    python bench/imports.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import compile_sources, table, write_result

CASES = {
    "bare python-tuf poller (`import tuf.ngclient`)": "import tuf.ngclient",
    "custody before (console script imported `custody.client.cli`)":
        "import importlib.metadata, client.cli",
    "custody now (`launch` defers boto3)":
        "from custody import launch; launch.defer_import('boto3'); import custody.client.cli",
}


def profile(code: str) -> tuple[int, list[tuple[int, str]]]:
    """Total import microseconds, and the top-level modules by cumulative time."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", code],
                         capture_output=True, text=True, check=True).stderr
    top = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        if cumulative.strip().isdigit() and not name.startswith("  "):
            top.append((int(cumulative), name.strip()))
    return sum(c for c, _ in top), sorted(top, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    compile_sources()
    rows = []
    for label, code in CASES.items():
        runs = [profile(code) for _ in range(args.repeat)]
        total = statistics.median(t for t, _ in runs)
        heaviest = ", ".join(f"{name} {us / 1000:.0f} ms" for us, name in runs[0][1][:4])
        rows.append([label, f"{total / 1000:.0f} ms", heaviest])
        print(rows[-1], flush=True)
    write_result("imports", "### What a poll's process imports (`python -X importtime`)\n\n"
                 + table(["process", "imports (median)", "heaviest top-level imports"], rows))


if __name__ == "__main__":
    main()
