"""Real parts for tests: repositories on disk, a gunicorn server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from keys_tooling.keys import load_public_key, load_signer
from repository.config import ONLINE_ROLES, KeySpec, RepoConfig
from repository.repo import CustodyRepository

BIN = Path(sys.executable).parent


def signer(keydir: Path, name: str):
    return load_signer(str(keydir / name))


def make_repo(path: Path, keydir: Path, bins: int = 0) -> CustodyRepository:
    """A repository whose offline keys are keydir's root/targets/owner, online key 'online'."""
    config = RepoConfig(bins=bins, online_keys={
        role: [KeySpec(path=str(keydir / "online"))] for role in ONLINE_ROLES})
    return CustodyRepository.create(
        path, root_signers=[signer(keydir, "root")], root_threshold=1,
        targets_signers=[signer(keydir, "targets")],
        layout_keys=[load_public_key(keydir / "owner.pub")], layout_threshold=1,
        layout_signers=[signer(keydir, "owner")],
        online={role: [signer(keydir, "online")] for role in ONLINE_ROLES}, config=config,
    )


def add_hello_layout(path: Path, keydir: Path, layout: Path) -> str:
    from repository.releases import add_layout

    repo = CustodyRepository(path, {"layouts": [signer(keydir, "owner")]})
    with repo.transaction():
        return add_layout(repo, "hello", layout.read_bytes())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(repo_dir: Path, workers: int = 2,
                   extra: tuple[str, ...] = ()) -> Iterator[str]:
    """``custody-repo serve`` (gunicorn) on a free loopback port; yields its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [BIN / "custody-repo", "serve", str(repo_dir), "--port", str(port), "--workers",
         str(workers), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(url + "/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"server did not start: {err[-2000:]}")
            time.sleep(0.1)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
