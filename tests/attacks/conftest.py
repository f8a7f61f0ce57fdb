"""The scene of every attack: a served repository, hello 1.0.0 installed, a hostile path.

The client reaches the repository through a `Mirror` on 127.0.0.1 that
serves the repository's public tree and that a test can turn hostile
(replace, trickle or endlessly stream files). Every test ends with
`Scene.refused`: the CLI exits non-zero with the named refusal, and the
installed state is byte for byte what it was before the attack.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import Mirror, Served, custody, installed_state


@dataclass
class Scene:
    served: Served
    mirror: Mirror
    home: Path
    before: dict[str, bytes]

    @property
    def repo_dir(self) -> Path:
        return self.served.repo_dir

    def configure(self, **config: object) -> None:
        path = self.home / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
        self.remember()

    def remember(self) -> None:
        """The installed state the attack must not change (call after any legit setup)."""
        self.before = installed_state(self.home)

    def refused(self, *args: str, words: str) -> str:
        """Run ``custody ARGS``: non-zero exit, ``words`` in the reason, state unchanged."""
        result = custody(self.home, *args)
        assert result.returncode == 1, (result.stdout, result.stderr)
        assert words in result.stderr, result.stderr
        assert result.stderr.strip().count("\n") == 0, "one sentence, one line"
        assert installed_state(self.home) == self.before
        return result.stderr


@pytest.fixture
def scene(tmp_path: Path, keydir: Path, hello_chain) -> Iterator[Scene]:
    from tests.helpers import add_hello_layout, make_repo

    repo_dir = tmp_path / "repo"
    make_repo(repo_dir, keydir, bins=4)
    add_hello_layout(repo_dir, keydir, hello_chain.layout)
    # The client reaches the tree only through the mirror, and releases are published
    # in-process: no repository server is needed (starting one cost each test seconds).
    mirror = Mirror(repo_dir / "public")
    served = Served(repo_dir, mirror.url, keydir, tmp_path)
    served.publish("1.0.0")
    home = tmp_path / "home"
    result = custody(home, "init", "--url", mirror.url, "--root", str(served.root),
                     "--inspections", "run")
    assert result.returncode == 0, result.stderr
    result = custody(home, "install", "hello")
    assert result.returncode == 0, result.stderr
    yield Scene(served, mirror, home, installed_state(home))
    mirror.close()
