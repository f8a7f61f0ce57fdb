"""Helpers shared by the benchmarks: timing whole processes, peak memory, tables."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("custody", "formats", "intoto", "keys_tooling", "repository", "client")


def compile_sources() -> None:
    """Write the bytecode of custody's own modules before anything is timed.

    pip compiles an installed package (the reference tools' modules have their
    ``.pyc`` from the start); custody runs from its source tree (an editable
    install), where a module is compiled on its first import, or on every
    import where ``PYTHONDONTWRITEBYTECODE`` is set. Timing that would charge
    custody 20-50 ms of compiling per process that no installed copy pays.
    """
    import compileall

    for name in PACKAGES:
        path = ROOT / name
        ok = (compileall.compile_file(path, quiet=1) if path.is_file()
              else compileall.compile_dir(path, quiet=1))
        if not ok:
            raise RuntimeError(f"could not compile {path}")


def run_process(cmd: Sequence[str | os.PathLike[str]], cwd: Path | None = None,
                ) -> tuple[float, int, int]:
    """Run ``cmd``; return (wall seconds, peak RSS in KiB, exit code) of that process alone.

    ``os.wait4`` gives the resource usage of exactly the child we waited for,
    unlike ``RUSAGE_CHILDREN`` which keeps the maximum over all children.
    """
    start = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {err[-2000:]}")
    if proc.stderr:
        proc.stderr.close()
    return elapsed, usage.ru_maxrss, proc.returncode


def best_of(n: int, cmd: Sequence[str | os.PathLike[str]], cwd: Path | None = None,
            ) -> tuple[float, int]:
    """Median wall time and maximum peak RSS over ``n`` runs."""
    times, peaks = [], []
    for _ in range(n):
        elapsed, peak, _ = run_process(cmd, cwd)
        times.append(elapsed)
        peaks.append(peak)
    return statistics.median(times), max(peaks)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table, for the README."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, text: str) -> None:
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.md").write_text(text + "\n")
    print(text)
