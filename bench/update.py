"""Client cost: custody install/update vs the path a user would write today.

The baseline is what python-tuf and in-toto give a user: a script that runs
`tuf.ngclient.Updater` (refresh, look up and download the artifact, its
layout and links) and then `in-toto-verify` on the downloaded files. custody
is `custody install hello` and `custody update`. Both run as whole processes
against the same repository on 127.0.0.1; the mirror counts bytes served.

Then a 1 GiB artifact is published and installed, and the client's peak
memory is reported (it must stream: goal under 100 MiB).

    python bench/update.py [--repeat 3] [--big-mib 1024]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BIN, compile_sources, run_process, table, write_result
from custody.intoto.metadata import Metablock, key_to_dict
from custody.intoto.models import Layout, Step
from custody.intoto.runner import StepRecorder
from custody.keys_tooling.keys import generate_key, load_public_key, load_signer, write_key_pair
from custody.repository.releases import Release, links_from_dir, publish_release
from custody.repository.repo import CustodyRepository
from tests.helpers import Mirror, add_hello_layout, make_repo, running_server
from tests.intoto.chain import IMPLS, make_chain

KEYS = ("owner", "alice", "bob", "rb1", "rb2", "root", "targets", "online")

BASELINE = textwrap.dedent('''
    import json, os, shutil, subprocess, sys, tempfile
    from pathlib import Path
    from tuf.ngclient import Updater
    home, url, owner_pub, name = sys.argv[1:5]
    updater = Updater(f"{home}/md", url + "/metadata/", f"{home}/dl", url + "/targets/",
                      bootstrap=None)
    updater.refresh()
    def fetch(path):
        info = updater.get_targetinfo(path)
        local = os.path.join(f"{home}/dl", path.replace("/", "_"))
        return info, updater.find_cached_target(info, local) or updater.download_target(info, local)
    _, index = fetch(f"packages/{name}/index.json")
    index = json.loads(Path(index).read_text())
    version = index["channels"]["stable"]
    state = Path(f"{home}/installed")
    if state.exists() and state.read_text() == version:
        sys.exit(0)  # nothing to do
    info, artifact = fetch(index["versions"][version]["target"])
    work = Path(tempfile.mkdtemp())
    layout = info.custom["in-toto"]["layout"]
    shutil.copy(fetch(layout)[1], work / "root.layout")
    prefix = f"in-toto/links/{info.hashes['sha256']}/"
    for link in info.custom["in-toto"]["links"]:
        target = work / "links" / link[len(prefix):]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(fetch(link)[1], target)
    shutil.copy(artifact, work / os.path.basename(info.path))
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "in-toto-verify"),
                    "--layout", "root.layout", "--verification-keys", owner_pub,
                    "--link-dir", "links"], cwd=work, check=True)
    dest = Path(f"{home}/pkg/{version}")
    shutil.unpack_archive(work / os.path.basename(info.path), dest)
    state.write_text(version)
''')


def size(count: float) -> str:
    return f"{count / 1024:.1f} KiB" if count >= 1024 else f"{count:.0f} B"


def interleaved(repeat: int, commands: list, prepares: list) -> list[float]:
    """Median seconds of each command, the runs taken in turn (a, b, a, b, ...).

    Alternating keeps a drift of the machine's speed during the measurement
    (another tenant, the page cache) from landing on one side only.
    """
    times: list[list[float]] = [[] for _ in commands]
    for i in range(repeat):
        for make_cmd, prepare, out in zip(commands, prepares, times, strict=True):
            if prepare:
                prepare(i)
            out.append(run_process(make_cmd(i))[0])
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--big-only", action="store_true",
                        help="only the large install (the whole table is not written)")
    args = parser.parse_args()
    compile_sources()
    tmp = Path(tempfile.mkdtemp(prefix="custody-bench-"))
    try:
        rows = run(tmp, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.big_only:
        print(rows)
        return
    write_result("update", "### Client: custody vs python-tuf + in-toto-verify (whole process)"
                 "\n\n" + table(["operation", "baseline", "custody", "custody / baseline",
                                 "bytes (baseline / custody)"], rows))


def run(tmp: Path, args: argparse.Namespace) -> list[list[str]]:
    keydir = tmp / "keys"
    keydir.mkdir()
    for name in KEYS:
        write_key_pair(generate_key(), keydir / name, None)
    chain = make_chain(IMPLS["custody"], IMPLS["custody"], keydir, tmp / "chain")
    repo_dir = tmp / "repo"
    make_repo(repo_dir, keydir, bins=16)
    add_hello_layout(repo_dir, keydir, chain.layout)
    repo = CustodyRepository(repo_dir)
    with repo.transaction():
        publish_release(repo, Release("hello", "1.0.0", chain.verify_dir / "hello.tar.gz",
                                      chain.layout.read_bytes(), links_from_dir(chain.links)))
    mirror = Mirror(repo_dir / "public")
    root = repo_dir / "public/metadata/1.root.json"
    rows = []
    try:
        def fresh_baseline(i: int) -> None:
            home = tmp / f"base{i}"
            shutil.rmtree(home, ignore_errors=True)
            (home / "md").mkdir(parents=True)
            (home / "dl").mkdir()
            shutil.copy(root, home / "md/root.json")

        def fresh_custody(i: int) -> None:
            home = tmp / f"cust{i}"
            shutil.rmtree(home, ignore_errors=True)
            subprocess.run([BIN / "custody", "--home", home, "init", "--url", mirror.url,
                            "--root", root, "--inspections", "run"],  # as in-toto-verify does
                           check=True, capture_output=True)

        def baseline_cmd(i: int, script: str = BASELINE) -> list:
            return [sys.executable, "-c", script, tmp / f"base{i}", mirror.url,
                    keydir / "owner.pub", "hello"]

        # The baseline as it would run where boto3 is not installed: securesystemslib
        # imports it whenever it is (for its AWS KMS signer), custody defers it.
        lean = "from custody import launch; launch.defer_import('boto3')\n" + BASELINE

        def custody_cmd(verb: str):
            # polls reuse the homes the cold installs left (one per repeat)
            return lambda i: [BIN / "custody", "--home", tmp / f"cust{i % args.repeat}", verb,
                              "hello"]

        def compare(label: str, ours_cmd, base_prepare=None, ours_prepare=None,
                    base_cmd=baseline_cmd, repeat: int = args.repeat) -> None:
            sent = []
            for make_cmd, prepare in ((base_cmd, base_prepare), (ours_cmd, ours_prepare)):
                if prepare:  # one run per side counts the bytes (the timed runs alternate)
                    prepare(0)
                mirror.bytes_sent = 0
                run_process(make_cmd(0))
                sent.append(mirror.bytes_sent)
            base_bytes, our_bytes = sent
            base, ours = interleaved(repeat, [base_cmd, ours_cmd], [base_prepare, ours_prepare])
            rows.append([label, f"{base:.2f} s", f"{ours:.2f} s", f"**{ours / base:.0%}**",
                         f"{size(base_bytes)} / {size(our_bytes)}"])
            print(rows[-1], flush=True)

        if not args.big_only:
            compare("cold install", custody_cmd("install"), fresh_baseline, fresh_custody)
            polls = max(args.repeat, 15)  # a poll is short: more runs for a stable median
            compare("no-op update poll", custody_cmd("update"), repeat=polls,
                    base_cmd=lambda i: baseline_cmd(i % args.repeat))
            compare("no-op update poll, baseline without boto3's import", custody_cmd("update"),
                    base_cmd=lambda i: baseline_cmd(i % args.repeat, lean), repeat=polls)
        rows.extend(big_install(tmp, keydir, repo_dir, args.big_mib))
        print(rows[-1], flush=True)
    finally:
        mirror.close()
    return rows


ROUNDS = 3


def settled(cmd: list) -> tuple[float, int]:
    """Run ``cmd`` after the page cache has written back (``os.sync``); (seconds, peak KiB).

    A gigabyte written by the previous step is still being flushed for
    seconds, and the kernel throttles whoever writes next: without this the
    order of the steps, not their speed, decided the figures.
    """
    os.sync()
    elapsed, peak, _ = run_process(cmd)
    return elapsed, peak


def machine_limit(url: str, tar: Path, scratch: Path) -> tuple[float, dict[str, float]]:
    """MiB/s of the slowest of the three things an install cannot avoid, measured now.

    Each in a fresh process, as the client is, median of ROUNDS: a streamed
    loopback HTTP download of the tar to a file (urllib3, 1 MiB reads),
    SHA-256 of that file (hashlib.file_digest) and unpacking it with tarfile
    alone (``extractall``, data filter).
    """
    mib = tar.stat().st_size / (1 << 20)
    jobs = {
        "loopback HTTP download": textwrap.dedent(f"""
            import urllib3
            with urllib3.PoolManager().request("GET", {url!r}, preload_content=False) as r, \\
                    open({str(scratch / "dl")!r}, "wb") as out:
                for chunk in r.stream(1 << 20):
                    out.write(chunk)
        """),
        "SHA-256": f"import hashlib\nwith open({str(tar)!r}, 'rb') as f: "
                   "hashlib.file_digest(f, 'sha256')",
        "tarfile unpack": f"import tarfile\nwith tarfile.open({str(tar)!r}) as t: "
                          f"t.extractall({str(scratch / 'unpacked')!r}, filter='data')",
    }
    rates = {}
    for label, code in jobs.items():
        times = []
        for _ in range(ROUNDS):
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir()
            times.append(settled([sys.executable, "-c", code])[0])
        rates[label] = mib / statistics.median(times)
    shutil.rmtree(scratch, ignore_errors=True)
    return min(rates.values()), rates


def big_install(tmp: Path, keydir: Path, repo_dir: Path, mib: int) -> list[list[str]]:
    """Publish a tar of ``mib`` MiB with a one-step layout; install it; rate and peak RSS.

    Served by ``custody-repo serve`` (gunicorn) in its own processes: a server
    in this process would hold the file in memory, and a child forked from a
    large process reports that process's size as its own peak RSS.
    """
    import tarfile

    work = tmp / "big"
    work.mkdir()
    block = os.urandom(1 << 20)
    with open(work / "big.bin", "wb") as f:
        for _ in range(mib):
            f.write(block)
    with tarfile.open(work / "big.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(work / "big.bin", "big/big.bin")
    (work / "big.bin").unlink()
    bob = load_public_key(keydir / "bob.pub")
    layout = Layout(keys={bob.keyid: key_to_dict(bob)}, expires="2035-01-01T00:00:00Z",
                    steps=[Step("package", [bob.keyid], 1, [],
                                [["CREATE", "big.tar"], ["DISALLOW", "*"]])])
    block_md = Metablock.new(layout)
    block_md.sign(load_signer(str(keydir / "owner")))
    block_md.dump(work / "big.layout")
    links = work / "links"
    links.mkdir()
    import contextlib

    with contextlib.chdir(work):
        StepRecorder("package", load_signer(str(keydir / "bob")),
                     metadata_directory=str(links)).run([], ["big.tar"], [])
    from custody.repository.releases import add_layout

    repo = CustodyRepository(repo_dir, {"layouts": [load_signer(str(keydir / "owner"))]})
    with repo.transaction():
        add_layout(repo, "big", (work / "big.layout").read_bytes())
    repo = CustodyRepository(repo_dir)
    with repo.transaction():
        publish_release(repo, Release("big", "1.0.0", work / "big.tar",
                                      (work / "big.layout").read_bytes(), links_from_dir(links)))
    served = next((repo_dir / "public/targets/packages/big/1.0.0").glob("*big.tar"))
    with running_server(repo_dir) as server:
        url = f"{server}/targets/packages/big/1.0.0/{served.name}"
        limit, rates = machine_limit(url, served, tmp / "scratch")
        runs = []
        for i in range(ROUNDS):
            home = tmp / f"bighome{i}"
            subprocess.run([BIN / "custody", "--home", home, "init", "--url", server, "--root",
                            repo_dir / "public/metadata/1.root.json"], check=True,
                           capture_output=True)
            runs.append(settled([BIN / "custody", "--home", home, "install", "big"]))
            shutil.rmtree(home)
    elapsed = statistics.median(t for t, _ in runs)
    peak = max(p for _, p in runs)
    rate = mib / elapsed
    slowest = min(rates, key=rates.__getitem__)
    measured = ", ".join(f"{k} {v:.0f}" for k, v in rates.items())
    spread = f"{min(t for t, _ in runs):.1f}-{max(t for t, _ in runs):.1f} s"
    return [[f"install a {mib} MiB tar", f"machine limit {limit:.0f} MiB/s ({slowest}; "
             f"{measured} MiB/s)", f"{elapsed:.1f} s ({rate:.0f} MiB/s; runs {spread})",
             f"**{rate / limit:.0%}** of the limit",
             f"client peak RSS **{peak / 1024:.0f} MiB**"]]


if __name__ == "__main__":
    main()
