"""A per-document sandbox in which the shell blocks of a document run, in order.

A reader follows a document in one terminal: what one block exports, the
directory it changes into and the servers it leaves running in the background
are there for the next. The sandbox gives each document exactly that, and
nothing of the machine it runs on: its own temporary directory (the reader's
working directory and ``HOME``, so ``~/.local/share/custody`` is the
sandbox's), an ``offline/`` directory for the keys that stand for the offline
signing machine, a ``PATH`` that starts with the virtual environment's console
scripts, and free ports in place of the ports the document names. Every process
a block starts carries a marker in its environment, so the sandbox finds and
stops each of them at the end, whichever session or process group it moved to.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

#: The files the docs link to and tell the reader to use (agent.py, systemd units).
EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"

#: Set in every process a block starts; its value is the sandbox's directory.
MARKER = "CUSTODY_DOCS_SANDBOX"

# A port a document names: after "127.0.0.1:", "localhost:" or "--port ".
_PORT = re.compile(r"(?<=127\.0\.0\.1:)(\d{2,5})|(?<=localhost:)(\d{2,5})|(?<=--port )(\d{2,5})")

# A line that leaves a command running in the background: ends in '&', not '&&'.
_BACKGROUND = re.compile(r"(?<!&)&\s*(#.*)?$", re.MULTILINE)

# What bash sets for itself: not carried from one block to the next.
_SHELL_OWN = frozenset({"SHLVL", "_", "OLDPWD", "PWD"})

# Runs one block as the reader's terminal would, then saves what the next needs.
_WRAPPER = """\
trap 'env -0 > "$__SANDBOX_ENV"; pwd > "$__SANDBOX_CWD"' EXIT
set -eo pipefail
. "$__SANDBOX_BLOCK"
"""


@dataclass
class BlockResult:
    """What one block printed and how it ended."""

    returncode: int
    output: str  # standard output and error, interleaved as a terminal shows them


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Sandbox:
    """One document's terminal: a directory, an environment, ports and its processes."""

    root: Path
    env: dict[str, str]
    ports: dict[int, int] = field(default_factory=dict)
    _blocks: int = 0

    @classmethod
    def create(cls) -> Sandbox:
        """A fresh sandbox; :meth:`close` removes it and stops what ran in it."""
        root = Path(tempfile.mkdtemp(prefix="custody-docs-"))
        (root / "offline").mkdir()
        shutil.copytree(EXAMPLES, root / "examples")
        (root / ".sandbox").mkdir()
        scripts = str(Path(sys.executable).parent)
        env = {
            "PATH": f"{scripts}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(root),
            "LANG": "C.UTF-8",
            "TMPDIR": str(root / ".sandbox"),
            "COLUMNS": "100",
            MARKER: str(root),
        }
        return cls(root=root, env=env)

    def substitute(self, source: str) -> str:
        """The block with each documented port replaced by this sandbox's free port."""

        def replace(match: re.Match[str]) -> str:
            documented = int(match.group(0))
            if documented not in self.ports:
                self.ports[documented] = free_port()
            return str(self.ports[documented])

        return _PORT.sub(replace, source)

    def save(self, name: str, text: str) -> Path:
        """A file the document shows, saved where the reader stands (its directory too)."""
        cwd_file = self.root / ".sandbox" / "cwd"
        cwd = Path(cwd_file.read_text().strip()) if cwd_file.exists() else self.root
        path = cwd / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def run(self, source: str, timeout: float = 240) -> BlockResult:
        """Run one block with bash; what it exports and where it ``cd``s carry on."""
        self._blocks += 1
        work = self.root / ".sandbox"
        block = work / f"block{self._blocks}.sh"
        block.write_text(self.substitute(source))
        env_file, cwd_file = work / "env", work / "cwd"
        out = work / f"block{self._blocks}.out"
        cwd = cwd_file.read_text().strip() if cwd_file.exists() else str(self.root)
        env = {**self.env, "__SANDBOX_BLOCK": str(block), "__SANDBOX_ENV": str(env_file),
               "__SANDBOX_CWD": str(cwd_file)}
        # Files, not pipes: a server left in the background keeps its output
        # open, and the block is over when bash exits, not when the server does.
        with out.open("wb") as output:
            process = subprocess.run(["bash", "-c", _WRAPPER], cwd=cwd, env=env,
                                     stdin=subprocess.DEVNULL, stdout=output,
                                     stderr=subprocess.STDOUT, timeout=timeout, check=False)
        if env_file.exists():
            items = env_file.read_text().split("\0")
            saved = dict(item.split("=", 1) for item in items if "=" in item)
            self.env = {k: v for k, v in saved.items()
                        if not k.startswith("__SANDBOX_") and k not in _SHELL_OWN}
        if _BACKGROUND.search(source):
            self._wait_for_ports(block.read_text())
        return BlockResult(process.returncode, out.read_text(errors="replace"))

    def _wait_for_ports(self, source: str, timeout: float = 60) -> None:
        """A server started with '&' listens before the next block runs, as a reader waits."""
        wanted = {int(m.group(0)) for m in _PORT.finditer(source)
                  if "&" in _line_of(source, m.start())}
        deadline = time.monotonic() + timeout
        for port in wanted:
            while not _listening(port):
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"nothing listens on port {port} {timeout:.0f} s after the block")
                time.sleep(0.2)

    def processes(self) -> list[int]:
        """The ids of every live process a block of this sandbox started."""
        found = []
        needle = f"{MARKER}={self.root}\0".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if needle in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    def stop(self, grace: float = 10) -> list[int]:
        """SIGTERM every process the blocks started, SIGKILL what outlives ``grace``."""
        stopped = self.processes()
        for pid in stopped:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in self.processes():
            _signal(pid, signal.SIGKILL)
        return stopped

    def close(self) -> None:
        """Stop what runs and remove the directory."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _line_of(text: str, index: int) -> str:
    start = text.rfind("\n", 0, index) + 1
    end = text.find("\n", index)
    return text[start:] if end == -1 else text[start:end]


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
