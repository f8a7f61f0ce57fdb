"""One version, several platform builds: each host installs its own, never another's.

A real repository served by gunicorn on 127.0.0.1, builds published with
``custody-repo publish --platform`` and through the publish API
(``custody-repo push --platform``), and three client homes: this host's
own platform, one configured as another platform, and one whose platform
has no build at all (issue 24, part 1).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from custody.client.config import ClientConfig
from custody.client.errors import EXIT_USAGE, ConfigError, TufRefusal
from custody.client.updater import SecureUpdater
from custody.formats.index import Build, VersionEntry
from custody.formats.platforms import host_platform
from custody.repository.releases import load_index
from custody.repository.repo import CustodyRepository
from custody.repository.storage import RepoPaths
from custody.repository.tokens import create_token
from tests.helpers import BIN, custody

NO_BUILD = "freebsd-riscv64"


def _home(served, path: Path, platform: str | None = None) -> Path:
    result = custody(path, "init", "--url", served.url, "--root", str(served.root),
                     "--inspections", "run")
    assert result.returncode == 0, result.stderr
    if platform is not None:  # the override a host sets in its config.json
        config = json.loads((path / "config.json").read_text())
        config["platform"] = platform
        (path / "config.json").write_text(json.dumps(config))
    return path


def _current(home: Path) -> str:
    return (home / "packages/hello/current").resolve().name


def _installed_message(home: Path) -> str:
    return (home / "packages/hello/current/src/hello.py").read_text()


def _repo(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "custody-repo"), *map(str, args)], capture_output=True,
                          text=True, timeout=120, check=False)


def test_each_host_installs_its_own_build_and_none_other(served, tmp_path):
    native = host_platform()
    other = "linux-aarch64" if native != "linux-aarch64" else "linux-x86_64"
    served.publish("1.0.0")  # one artifact for every host, as before builds existed
    own = _home(served, tmp_path / "own")
    emulated = _home(served, tmp_path / "emulated", other)
    bare = _home(served, tmp_path / "bare", NO_BUILD)
    for home in (own, emulated, bare):
        result = custody(home, "install", "hello")
        assert result.returncode == 0, result.stderr
        assert _current(home) == "1.0.0"

    # 2.0.0 as two builds, each its own supply chain: this platform's with the CLI
    # (no channel move yet), the other's through the publish API, moving stable.
    builds = {native: served.chain(f"hello 2.0.0 for {native}"),
              other: served.chain(f"hello 2.0.0 for {other}")}
    chain = builds[native]
    result = _repo("publish", served.repo_dir, chain.verify_dir / "hello.tar.gz",
                   "--name", "hello", "--version", "2.0.0", "--layout", chain.layout,
                   "--links", chain.links, "--no-channel", "--platform", native)
    assert result.returncode == 0, result.stderr
    assert f"packages/hello/2.0.0/{native}.hello.tar.gz" in result.stdout
    _, token = create_token(RepoPaths(served.repo_dir), "ci")
    chain = builds[other]
    result = _repo("push", chain.verify_dir / "hello.tar.gz", "--server", served.url,
                   "--token", token, "--name", "hello", "--version", "2.0.0",
                   "--layout", chain.layout, "--links", chain.links, "--platform", other)
    assert result.returncode == 0, result.stderr
    assert f"packages/hello/2.0.0/{other}.hello.tar.gz" in result.stdout

    entry = load_index(CustodyRepository(served.repo_dir), "hello").versions["2.0.0"]
    assert entry.target is None and set(entry.builds) == {native, other}

    for home, platform in ((own, native), (emulated, other)):
        result = custody(home, "update")
        assert result.returncode == 0, result.stderr
        assert _current(home) == "2.0.0"
        assert f"hello 2.0.0 for {platform}" in _installed_message(home)
        cached = home / f"cache/packages/hello/2.0.0/{platform}.hello.tar.gz"
        assert cached.read_bytes() == (builds[platform].verify_dir / "hello.tar.gz").read_bytes()
        assert [p.name for p in (home / "cache/packages/hello/2.0.0").iterdir()] == \
            [cached.name]  # the other platform's build was never downloaded

    # fetch (for plugin hosts) hands over the host's own build, byte for byte
    result = custody(emulated, "fetch", "hello==2.0.0", "-o", str(tmp_path / "fetched"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "fetched/hello.tar.gz").read_bytes() == \
        (builds[other].verify_dir / "hello.tar.gz").read_bytes()

    # A host whose platform has no build: not found, and it stays where it is.
    before = (bare / "state.json").read_bytes()
    for args in (("update",), ("install", "hello==2.0.0"), ("fetch", "hello==2.0.0", "-o",
                                                            str(tmp_path / "none"))):
        result = custody(bare, *args)
        assert result.returncode == 5, (args, result.stdout, result.stderr)
        assert f"hello 2.0.0 has no build for {NO_BUILD}" in result.stderr
    assert _current(bare) == "1.0.0"
    assert (bare / "state.json").read_bytes() == before
    assert not (tmp_path / "none").exists() or not any((tmp_path / "none").iterdir())


def test_an_index_naming_another_platforms_build_for_this_host_is_refused(tmp_path):
    """The index is online-signed: it may list builds, but the build a host gets must be
    the one named after the host's platform (so a compromised index cannot hand an
    aarch64 host the x86_64 build, or the reverse)."""
    ClientConfig(urls=["http://127.0.0.1:9/"], client_id="a", platform="linux-aarch64"
                 ).save(tmp_path)
    updater = SecureUpdater(tmp_path)
    swapped = VersionEntry(None, builds={
        "linux-aarch64": Build("packages/hello/2.0.0/linux-x86_64.hello.tar.gz")})
    with pytest.raises(TufRefusal, match=r"not to an artifact linux-aarch64\.\* under "
                                         "packages/hello/2.0.0/"):
        updater.target_of("hello", "2.0.0", swapped)


def test_a_configured_platform_must_be_a_platform_name():
    with pytest.raises(ConfigError, match="the configured platform 'Linux' is not") as caught:
        ClientConfig(platform="Linux").host_platform()
    assert caught.value.exit_code == EXIT_USAGE
    assert ClientConfig(platform="darwin-arm64").host_platform() == "darwin-arm64"
    assert ClientConfig().host_platform() == host_platform()
