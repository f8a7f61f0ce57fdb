"""A plugin host's cost: ``custody pip install`` vs plain pip on the same verified wheel.

Plain pip installs the wheel from a local directory (``--no-index
--find-links``): no network, no verification, the floor. custody starts its
verifying index, refreshes TUF, verifies the wheel with in-toto, checks the
command line and hands pip a flattened requirements file. Both install into
a fresh venv each run, alternating, and the table shows the medians and the
difference (goal: at most 0.5 s).

    python bench/plugins.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BIN, compile_sources, table, write_result
from custody.keys_tooling.keys import generate_key, write_key_pair
from tests.client.test_plugins import make_wheel, publish_wheel
from tests.helpers import make_repo, running_server


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    compile_sources()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        keydir = tmp / "keys"
        keydir.mkdir()
        for name in ("owner", "bob", "root", "targets", "online"):
            write_key_pair(generate_key("ed25519"), keydir / name, None)
        wheels = tmp / "wheels"
        wheels.mkdir()
        wheel = make_wheel(wheels, "benchplug", "1.0.0", [])
        repo_dir = tmp / "repo"
        make_repo(repo_dir, keydir, bins=4)
        publish_wheel(repo_dir, keydir, tmp / "build", wheel, "benchplug", "1.0.0")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        with running_server(repo_dir) as url:
            home = tmp / "home"
            subprocess.run([str(BIN / "custody"), "--home", str(home), "init", "--url", url,
                            "--root", str(repo_dir / "public/metadata/1.root.json")],
                           check=True, capture_output=True)
            plain, guarded = [], []
            for run in range(args.repeat + 1):
                venvs = []
                for side in ("plain", "custody"):
                    venv = tmp / f"venv-{side}-{run}"
                    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)],
                                   check=True)
                    venvs.append(venv)
                pip = [sys.executable, "-m", "pip", "--python", str(venvs[0] / "bin/python"),
                       "install", "--no-index", "--find-links", str(wheels), "benchplug"]
                ours = [str(BIN / "custody"), "--home", str(home), "pip", "--python",
                        str(venvs[1] / "bin/python"), "install", "benchplug"]
                first, second = (pip, ours) if run % 2 else (ours, pip)
                times = {id(first): timed(first, env), id(second): timed(second, env)}
                if run:  # the first round warms caches for both
                    plain.append(times[id(pip)])
                    guarded.append(times[id(ours)])
    p, c = statistics.median(plain), statistics.median(guarded)
    text = "### Plugin host: `custody pip install` vs plain pip, same wheel\n\n" + table(
        ["install one small wheel into a fresh venv", "median", "runs"],
        [["plain pip (`--no-index --find-links`, no verification)", f"{p:.2f} s",
          f"{min(plain):.2f}-{max(plain):.2f} s"],
         ["`custody pip install` (index, TUF refresh, in-toto, checked command line)",
          f"{c:.2f} s", f"{min(guarded):.2f}-{max(guarded):.2f} s"],
         ["**custody's cost above pip**", f"**{c - p:+.2f} s**", "goal: at most 0.5 s"]])
    write_result("plugins", text)


if __name__ == "__main__":
    main()
