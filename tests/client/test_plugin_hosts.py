"""A plugin host for real (issue 26): two plugins, one needing the other, a host in its own venv.

Each bypass of the issue runs against real pip and uv and a real evil
find-links directory: refused with one sentence before the installer runs,
and the host's environment is unchanged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from custody.repository.errors import InvalidReleaseError
from custody.repository.releases import links_from_dir
from custody.repository.repo import CustodyRepository
from tests.client.test_plugins import make_wheel, publish_wheel
from tests.helpers import BIN, custody, make_repo, running_server

pytestmark = pytest.mark.slow


def run(home: Path, *args: str, venv: Path | None = None, cwd: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    """``custody`` as a shell with ``venv`` activated (or none) runs it."""
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = f"{venv}/bin:{env['PATH']}"
    return subprocess.run([str(BIN / "custody"), "--home", str(home), *args], env=env,
                          cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def site_packages(venv: Path) -> list[str]:
    return sorted(p.name for p in (venv / "lib").glob("python3*/site-packages/*"))


@pytest.fixture
def host(tmp_path, keydir):
    """hostplug-a 1.0.0 and hostplug-b 1.0.0 (needs a) published; an evil a 9.9.9 on disk."""
    repo_dir = tmp_path / "repo"
    make_repo(repo_dir, keydir, bins=4)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    a = make_wheel(wheels, "hostplug_a", "1.0.0", [])
    b = make_wheel(wheels, "hostplug_b", "1.0.0", ["hostplug-a>=1"])
    publish_wheel(repo_dir, keydir, tmp_path / "build-a", a, "hostplug-a", "1.0.0")
    publish_wheel(repo_dir, keydir, tmp_path / "build-b", b, "hostplug-b", "1.0.0")
    evil = tmp_path / "evil"
    evil.mkdir()
    make_wheel(evil, "hostplug_a", "9.9.9", [])
    with running_server(repo_dir) as url:
        home = tmp_path / "home"
        r = custody(home, "init", "--url", url, "--root",
                    str(repo_dir / "public/metadata/1.root.json"))
        assert r.returncode == 0, r.stderr
        venv = tmp_path / "hostenv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        yield home, venv, evil, repo_dir, tmp_path


def test_every_bypass_of_the_issue_is_refused_before_the_installer_runs(host):
    home, venv, evil, _, tmp = host
    before = site_packages(venv)
    requirements = tmp / "requirements.txt"
    requirements.write_text(f"hostplug-b\n--extra-index-url file://{evil}\n")
    nested = tmp / "nested.txt"
    nested.write_text(f"-r {tmp / 'inner.txt'}\nhostplug-b\n")
    (tmp / "inner.txt").write_text(f"-f {evil}\n")
    attempts = [
        ("pip", "install", "--find-link", str(evil), "hostplug-b"),
        ("pip", "install", "--extra-index", f"file://{evil}", "hostplug-b"),
        ("pip", "install", "--pypi-url", f"file://{evil}", "hostplug-b"),
        ("pip", "install", f"-f{evil}", "hostplug-b"),
        ("pip", "install", "-r", str(requirements)),
        ("pip", "install", "-r", str(nested)),
        ("pip", "install", "hostplug-b", f"hostplug-a @ file://{evil}/"
                                         "hostplug_a-9.9.9-py3-none-any.whl"),
        ("pip", "install", str(evil / "hostplug_a-9.9.9-py3-none-any.whl")),
        ("uv", "pip", "install", "--index", f"file://{evil}", "hostplug-b"),
        ("uv", "pip", "install", "--default-index", f"file://{evil}", "hostplug-b"),
        ("uv", "pip", "install", "-f", str(evil), "hostplug-b"),
        ("uv", "pip", "install", "-r", str(requirements)),
    ]
    for attempt in attempts:
        r = run(home, *attempt, venv=venv)
        assert r.returncode == 2, (attempt, r.stdout, r.stderr)
        said = r.stderr.strip().splitlines()
        assert (len(said) == 1 and "another package source" in said[0]) or \
            "custody installs by project name" in said[0], (attempt, said)
        assert "Looking in" not in r.stdout and r.stdout == ""  # the installer never ran
        assert site_packages(venv) == before, attempt


def test_plugins_install_into_the_active_venv_and_uninstall_and_freeze_pass(host):
    home, venv, *_ = host
    # No environment chosen: refused, custody's own is never the default.
    r = run(home, "pip", "install", "hostplug-b")
    assert r.returncode == 2 and "no environment to install into" in r.stderr, r.stderr
    r = run(home, "pip", "install", "hostplug-b", venv=venv)
    assert r.returncode == 0, r.stdout + r.stderr
    python = venv / "bin/python"
    assert subprocess.run([str(python), "-c", "import hostplug_a, hostplug_b"],
                          check=False).returncode == 0
    r = run(home, "pip", "freeze", venv=venv)
    assert r.returncode == 0 and "hostplug-a==1.0.0" in r.stdout.replace("_", "-").lower(), r
    r = run(home, "pip", "uninstall", "-y", "hostplug-b", venv=venv)
    assert r.returncode == 0, r.stderr
    assert not any(n.startswith("hostplug_b") for n in site_packages(venv))
    if shutil.which("uv") or (BIN / "uv").exists():
        r = run(home, "uv", "pip", "install", "hostplug-b", venv=venv)
        assert r.returncode == 0, r.stdout + r.stderr
        r = run(home, "uv", "pip", "uninstall", "hostplug-b", "hostplug-a", venv=venv)
        assert r.returncode == 0, r.stderr
        assert not any(n.startswith("hostplug") for n in site_packages(venv))
    # custody's own environment is not where plugins went
    assert subprocess.run([sys.executable, "-c", "import hostplug_a"], capture_output=True,
                          check=False).returncode != 0


def test_the_installer_failing_for_its_own_reasons_is_exit_7(host):
    home, venv, _, _, _ = host
    r = run(home, "pip", "install", "hostplug-b==9.9", venv=venv)
    assert r.returncode == 7, r.stdout + r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("custody: pip exited with")
    r = run(home, "pip", "install", "no-such-plugin", venv=venv)
    assert r.returncode == 5, r.stdout + r.stderr  # custody's 'not found', from its index


def test_a_wheel_that_lies_about_itself_is_refused_at_publish_and_by_the_index(host, keydir):
    from demo.attacker import force_publish

    home, venv, evil, repo_dir, tmp = host
    six = make_wheel(tmp / "wheels", "hostplug_c", "1.0.0",
                     [f"hostplug-a @ file://{evil}/hostplug_a-9.9.9-py3-none-any.whl"])
    with pytest.raises(InvalidReleaseError, match="direct URL dependency"):
        publish_wheel(repo_dir, keydir, tmp / "build-c", six, "hostplug-c", "1.0.0")
    liar = tmp / "liar"
    liar.mkdir()
    mislabelled = make_wheel(liar, "hostplug_a", "1.0.0", [])
    renamed = liar / "hostplug_a-1.0.1-py3-none-any.whl"
    mislabelled.rename(renamed)
    with pytest.raises(InvalidReleaseError, match=r"METADATA says version '1\.0\.0', not 1\.0\.1"):
        publish_wheel(repo_dir, keydir, tmp / "build-a2", renamed, "hostplug-a", "1.0.1")
    # Published with the online key alone (past the check), built by the right functionary:
    # in-toto verifies it, and the index still never serves it.
    work = tmp / "build-c"
    links = next(work.glob("links-*"))
    path = force_publish(repo_dir, "hostplug-c", "1.0.0", work / six.name, links_from_dir(links))
    repo = CustodyRepository(repo_dir)
    with repo.transaction():
        custom = dict(repo.find_target(path).custom)
        custom["python"] = {"project": "hostplug-c", "version": "1.0.0"}
        repo.add_target(path, work / six.name, custom=custom)
        repo.publish_metadata()
    before = site_packages(venv)
    r = run(home, "pip", "install", "hostplug-c", venv=venv)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "direct URL dependency" in r.stderr.strip().splitlines()[-1]
    assert site_packages(venv) == before


def test_the_root_page_fetch_and_a_busy_port(host):
    import requests

    from custody.client.index import serving
    from custody.client.packages import fetch

    home, _, _, _, tmp = host
    with serving(home) as (url, _):
        page = requests.get(url, timeout=30)
        assert '<a href="/simple/hostplug-a/">hostplug-a</a>' in page.text
        listed = requests.get(url, timeout=30, headers={
            "Accept": "application/vnd.pypi.simple.v1+json"}).json()
        assert [p["name"] for p in listed["projects"]] == ["hostplug-a", "hostplug-b"]
        port = url.split(":")[2].split("/")[0]
        r = run(home, "index", "serve", "--port", port)
        assert r.returncode == 6 and r.stderr.strip().splitlines() == [
            f"custody: the index cannot listen on 127.0.0.1:{port}: the port is in use"]
        assert not list(home.glob("crash*")) and "Traceback" not in r.stderr
    out = tmp / "fetched"
    out.mkdir()
    wheel = fetch("hostplug-a", home=str(home), destination=str(out))
    assert wheel == out / "hostplug_a-1.0.0-py3-none-any.whl" and wheel.is_file()


def test_a_proxy_in_the_environment_does_not_carry_the_index_away(host):
    """pip sends its loopback requests to http_proxy unless NO_PROXY covers them."""
    import json

    from tests.helpers import free_port

    home, venv, *_ = host
    config = json.loads((home / "config.json").read_text())
    config["http_proxy"] = ""  # custody's own route to the repository: direct
    (home / "config.json").write_text(json.dumps(config))
    dead = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    env.update(VIRTUAL_ENV=str(venv), http_proxy=dead, HTTP_PROXY=dead)
    r = subprocess.run([str(BIN / "custody"), "--home", str(home), "pip", "install",
                        "hostplug-b"], env=env, capture_output=True, text=True, timeout=120,
                       check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert any(n.startswith("hostplug_b") for n in site_packages(venv))
