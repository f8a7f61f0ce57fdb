"""pip and uv install plugins only through custody's verifying index (issue 16)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from repository.releases import Release, add_layout, links_from_dir, publish_release
from repository.repo import CustodyRepository
from tests.helpers import BIN, Mirror, custody, free_port, make_repo, running_server, signer

pytestmark = pytest.mark.slow
WHEEL = Path(__file__).resolve().parents[1] / "data/rfc8785-0.1.2-py3-none-any.whl"
LAYOUT = """
expires_in_days = 30
[keys]
packager = "bob.pub"
[[steps]]
name = "package"
functionaries = ["packager"]
products = ["CREATE {artifact}", "DISALLOW *"]
"""


@pytest.fixture
def wheel_repo(tmp_path, keydir):
    """A repository publishing the real rfc8785 wheel under a one-step layout, served."""
    work = tmp_path / "build"
    work.mkdir()
    shutil.copy(WHEEL, work / WHEEL.name)
    shutil.copy(keydir / "bob.pub", work / "bob.pub")
    (work / "layout.toml").write_text(LAYOUT)
    subprocess.run([str(BIN / "custody-intoto"), "layout", "new", "layout.toml", "-k",
                    str(keydir / "owner"), "-o", "rfc8785.layout"], cwd=work, check=True,
                   capture_output=True)
    links = work / "links"
    subprocess.run([str(BIN / "custody-intoto"), "run", "-n", "package", "--signing-key",
                    str(keydir / "bob"), "-p", WHEEL.name, "-d", str(links), "--no-command"],
                   cwd=work, check=True, capture_output=True)
    repo_dir = tmp_path / "repo"
    make_repo(repo_dir, keydir, bins=4)
    repo = CustodyRepository(repo_dir, {"layouts": [signer(keydir, "owner")]})
    with repo.transaction():
        add_layout(repo, "rfc8785", (work / "rfc8785.layout").read_bytes())
    repo = CustodyRepository(repo_dir)
    with repo.transaction():
        publish_release(repo, Release("rfc8785", "0.1.2", work / WHEEL.name,
                                      (work / "rfc8785.layout").read_bytes(),
                                      links_from_dir(links)))
    with running_server(repo_dir) as url:
        yield repo_dir, url


def venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin/python"


def imports(python: Path) -> bool:
    return subprocess.run([str(python), "-c", "import rfc8785"], capture_output=True,
                          check=False).returncode == 0


def client(tmp_path: Path, repo_dir: Path, url: str) -> Path:
    home = tmp_path / "home"
    r = custody(home, "init", "--url", url, "--root",
                str(repo_dir / "public/metadata/1.root.json"))
    assert r.returncode == 0, r.stderr
    return home


def test_pip_installs_the_verified_wheel(wheel_repo, tmp_path):
    repo_dir, url = wheel_repo
    home = client(tmp_path, repo_dir, url)
    python = venv(tmp_path / "venv")
    r = custody(home, "pip", "--python", str(python), "install", "rfc8785==0.1.2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert imports(python)
    r = custody(home, "fetch", "rfc8785", "-o", str(tmp_path / "out"))
    assert r.returncode == 0 and r.stdout.strip().endswith(WHEEL.name)
    assert (tmp_path / "out" / WHEEL.name).read_bytes() == WHEEL.read_bytes()


def test_the_index_speaks_pep_503_and_691(wheel_repo, tmp_path):
    import requests

    from client.index import serving

    repo_dir, url = wheel_repo
    home = client(tmp_path, repo_dir, url)
    with serving(home) as (index_url, _):
        page = requests.get(index_url + "rfc8785/", timeout=30)
        assert page.status_code == 200 and WHEEL.name in page.text
        assert "#sha256=" in page.text and 'data-requires-python="&gt;=3.8"' in page.text
        moved = requests.get(index_url + "RFC8785/", timeout=30, allow_redirects=False)
        assert moved.status_code == 301 and moved.headers["Location"] == "/simple/rfc8785/"
        listed = requests.get(index_url + "rfc8785/", timeout=30, headers={
            "Accept": "application/vnd.pypi.simple.v1+json"}).json()
        file = listed["files"][0]
        assert file["filename"] == WHEEL.name and file["requires-python"] == ">=3.8"
        import hashlib

        assert file["hashes"]["sha256"] == hashlib.sha256(WHEEL.read_bytes()).hexdigest()
        metadata = requests.get(index_url.replace("/simple/", "") + file["url"] + ".metadata",
                                timeout=30)
        assert hashlib.sha256(metadata.content).hexdigest() == file["core-metadata"]["sha256"]
        assert requests.get(index_url + "nothing/", timeout=30).status_code == 404


def test_a_tampered_wheel_or_a_dead_repository_fails_pip(wheel_repo, tmp_path):
    repo_dir, _ = wheel_repo
    mirror = Mirror(repo_dir / "public")
    try:
        mirror.overrides[WHEEL.name] = WHEEL.read_bytes()[:-100] + bytes(100)
        home = tmp_path / "hostile"
        assert custody(home, "init", "--url", mirror.url, "--root",
                       str(repo_dir / "public/metadata/1.root.json")).returncode == 0
        python = venv(tmp_path / "venv")
        r = custody(home, "pip", "--python", str(python), "install", "rfc8785")
        assert r.returncode == 1, r.stdout + r.stderr
        assert "TUF refused the download of packages/rfc8785/0.1.2/" in r.stdout + r.stderr
        assert not imports(python)
    finally:
        mirror.close()
    down = tmp_path / "down"
    assert custody(down, "init", "--url", f"http://127.0.0.1:{free_port()}", "--root",
                   str(repo_dir / "public/metadata/1.root.json")).returncode == 0
    r = custody(down, "pip", "--python", str(python), "install", "rfc8785")
    assert r.returncode == 3, r.stdout + r.stderr
    assert "the repository is unreachable" in r.stdout + r.stderr
    assert not imports(python)
    r = custody(down, "pip", "install", "--extra-index-url", "https://pypi.org/simple", "x")
    assert r.returncode == 2 and "custody chooses the index" in r.stderr


def test_uv_installs_the_verified_wheel(wheel_repo, tmp_path):
    if shutil.which("uv") is None and not (BIN / "uv").exists():
        pytest.skip("uv is not installed")
    repo_dir, url = wheel_repo
    home = client(tmp_path, repo_dir, url)
    python = venv(tmp_path / "venv")
    r = custody(home, "uv", "pip", "install", "--python", str(python), "rfc8785")
    assert r.returncode == 0, r.stdout + r.stderr
    assert imports(python)
