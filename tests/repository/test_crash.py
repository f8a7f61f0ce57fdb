"""A publish killed with SIGKILL at random points never breaks the served tree."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tuf.ngclient import Updater

from tests.helpers import add_hello_layout, make_repo, running_server

pytestmark = pytest.mark.slow

PUBLISHER = """
import sys
from pathlib import Path
from custody.repository.releases import Release, links_from_dir, publish_release
from custody.repository.repo import CustodyRepository
repo_dir, artifact, layout, links, start = sys.argv[1:6]
print("ready", flush=True)
for i in range(int(start), int(start) + 1000):
    repo = CustodyRepository(repo_dir)
    with repo.transaction():
        publish_release(repo, Release("hello", f"1.{i}.0", Path(artifact),
                                      Path(layout).read_bytes(), links_from_dir(Path(links))))
    print(i, flush=True)
"""


def _check_client(repo_dir: Path, url: str, tmp: Path) -> set[str]:
    """A fresh ngclient refreshes and downloads every version the index lists."""
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "md").mkdir(parents=True)
    (tmp / "dl").mkdir()
    shutil.copy(repo_dir / "public/metadata/1.root.json", tmp / "md/root.json")
    client = Updater(str(tmp / "md"), url + "/metadata/", str(tmp / "dl"), url + "/targets/",
                     bootstrap=None)
    client.refresh()
    index_info = client.get_targetinfo("packages/hello/index.json")
    if index_info is None:
        return set()
    index = json.loads(Path(client.download_target(index_info)).read_bytes())
    for entry in index["versions"].values():
        info = client.get_targetinfo(entry["target"])
        assert info is not None
        client.download_target(info)
    return set(index["versions"])


def test_sigkill_during_publish_leaves_old_or_new_state(tmp_path, keydir, hello_chain):
    repo_dir = tmp_path / "repo"
    make_repo(repo_dir, keydir, bins=4)
    add_hello_layout(repo_dir, keydir, hello_chain.layout)
    rng = random.Random(1234)
    seen: set[str] = set()
    start = 0
    with running_server(repo_dir, workers=1) as url:
        for attempt in range(8):
            proc = subprocess.Popen(
                [sys.executable, "-c", PUBLISHER, str(repo_dir),
                 str(hello_chain.verify_dir / "hello.tar.gz"), str(hello_chain.layout),
                 str(hello_chain.links), str(start)],
                stdout=subprocess.PIPE, text=True, start_new_session=True)
            # once imported (seconds on a loaded machine, where a kill timed from the start
            # landed before any publish), part-way into the first publishes
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
            time.sleep(rng.random() * 0.6)
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            done = len(out.split()) - 1  # the versions it printed after "ready"
            start += done + 1  # the killed publish's version may or may not exist
            versions = _check_client(repo_dir, url, tmp_path / f"client{attempt}")
            assert seen <= versions  # nothing published is lost
            seen = versions
        assert len(seen) >= 3, "the publisher was killed before publishing anything"
