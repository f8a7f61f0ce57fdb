"""pip and uv install plugins only through custody's verifying index (issue 16)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from custody.repository.releases import Release, add_layout, links_from_dir, publish_release
from custody.repository.repo import CustodyRepository
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


def make_wheel(path: Path, name: str, version: str, requires: list[str]) -> Path:
    """A small, valid pure-Python wheel (METADATA, WHEEL, RECORD with hashes)."""
    import base64
    import hashlib
    import zipfile

    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{dist}/METADATA": "\n".join([
            "Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
            "Requires-Python: >=3.9", *[f"Requires-Dist: {r}" for r in requires], ""]).encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: custody-tests\nRoot-Is-Purelib: true"
                         b"\nTag: py3-none-any\n",
    }
    record = [f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=')}"
              f",{len(d)}" for n, d in files.items()]
    files[f"{dist}/RECORD"] = ("\n".join([*record, f"{dist}/RECORD,,"]) + "\n").encode()
    wheel = path / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for n, d in files.items():
            zf.writestr(n, d)
    return wheel


def publish_wheel(repo_dir: Path, keydir: Path, work: Path, wheel: Path, name: str,
                  version: str, functionary: str = "bob") -> None:
    """Record the one-step chain (``functionary`` signs) and publish, layout first."""
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(wheel, work / wheel.name)
    shutil.copy(keydir / "bob.pub", work / "bob.pub")
    (work / "layout.toml").write_text(LAYOUT)
    layout = work / f"{name}.layout"
    if not layout.exists():
        subprocess.run([str(BIN / "custody-intoto"), "layout", "new", "layout.toml", "-k",
                        str(keydir / "owner"), "-o", layout.name], cwd=work, check=True,
                       capture_output=True)
        repo = CustodyRepository(repo_dir, {"layouts": [signer(keydir, "owner")]})
        with repo.transaction():
            add_layout(repo, name, layout.read_bytes())
    links = work / f"links-{version}"
    subprocess.run([str(BIN / "custody-intoto"), "run", "-n", "package", "--signing-key",
                    str(keydir / functionary), "-p", wheel.name, "-d", str(links),
                    "--no-command"], cwd=work, check=True, capture_output=True)
    repo = CustodyRepository(repo_dir)
    with repo.transaction():
        publish_release(repo, Release(name, version, work / wheel.name, layout.read_bytes(),
                                      links_from_dir(links)))


@pytest.fixture
def wheel_repo(tmp_path, keydir):
    """A repository publishing the real rfc8785 wheel under a one-step layout, served."""
    repo_dir = tmp_path / "repo"
    make_repo(repo_dir, keydir, bins=4)
    publish_wheel(repo_dir, keydir, tmp_path / "build", WHEEL, "rfc8785", "0.1.2")
    with running_server(repo_dir) as url:
        yield repo_dir, url


#: The two installers, as custody runs them into the environment of ``python``.
INSTALLERS = [
    lambda python: ["pip", "--python", str(python), "install"],
    lambda python: ["uv", "pip", "install", "--python", str(python)],
]


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


def test_pip_installs_the_verified_wheel(wheel_repo, tmp_path, monkeypatch):
    repo_dir, url = wheel_repo
    home = client(tmp_path, repo_dir, url)
    python = venv(tmp_path / "venv")
    # The user's own pip configuration must not add an index custody does not verify.
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "http://127.0.0.1:9/simple/")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    r = custody(home, "pip", "--python", str(python), "install", "rfc8785==0.1.2")
    assert r.returncode == 0, r.stdout + r.stderr
    looking = [line for line in r.stdout.splitlines() if line.startswith("Looking in")]
    assert all(line.startswith("Looking in indexes: http://127.0.0.1:") and "," not in line
               for line in looking), looking  # custody's index, and nothing else
    assert imports(python)
    r = custody(home, "fetch", "rfc8785", "-o", str(tmp_path / "out"))
    assert r.returncode == 0 and r.stdout.strip().endswith(WHEEL.name)
    assert (tmp_path / "out" / WHEEL.name).read_bytes() == WHEEL.read_bytes()


def test_a_plugin_and_its_dependency_both_through_the_index(wheel_repo, tmp_path, keydir):
    repo_dir, url = wheel_repo
    plugin = make_wheel(tmp_path, "custody_plugin", "1.0.0", ["rfc8785>=0.1"])
    publish_wheel(repo_dir, keydir, tmp_path / "plugin", plugin, "custody-plugin", "1.0.0")
    home = client(tmp_path, repo_dir, url)
    python = venv(tmp_path / "venv")
    r = custody(home, "pip", "--python", str(python), "install", "Custody_Plugin")
    assert r.returncode == 0, r.stdout + r.stderr
    assert subprocess.run([str(python), "-c", "import custody_plugin, rfc8785"],
                          check=False).returncode == 0
    r = custody(home, "pip", "--python", str(python), "install", "custody-plugin==9.9")
    assert r.returncode != 0  # a version TUF does not list is not there to install


def test_a_wheel_its_layout_does_not_verify_fails_pip(wheel_repo, tmp_path, keydir):
    from demo.attacker import force_publish

    repo_dir, url = wheel_repo
    evil = make_wheel(tmp_path, "rfc8785", "0.2.0", [])
    work = tmp_path / "evil"
    work.mkdir()
    shutil.copy(evil, work / evil.name)
    subprocess.run([str(BIN / "custody-intoto"), "run", "-n", "package", "--signing-key",
                    str(keydir / "mallory"), "-p", evil.name, "-d", str(work / "links"),
                    "--no-command"], cwd=work, check=True, capture_output=True)
    force_publish(repo_dir, "rfc8785", "0.2.0", work / evil.name, links_from_dir(work / "links"))
    repo = CustodyRepository(repo_dir)  # the server also lists it as a wheel for pip
    path = "packages/rfc8785/0.2.0/" + evil.name
    with repo.transaction():
        custom = dict(repo.find_target(path).custom)
        custom["python"] = {"project": "rfc8785", "version": "0.2.0"}
        repo.add_target(path, work / evil.name, custom=custom)
        repo.publish_metadata()
    home = client(tmp_path, repo_dir, url)
    python = venv(tmp_path / "venv")
    r = custody(home, "pip", "--python", str(python), "install", "rfc8785==0.2.0")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "in-toto refused rfc8785 0.2.0" in r.stdout + r.stderr
    assert not imports(python)


def test_publishing_refuses_a_wheel_that_is_not_what_it_says(tmp_path, keydir):
    from custody.repository.errors import InvalidReleaseError

    repo_dir = tmp_path / "repo"
    make_repo(repo_dir, keydir)
    bad = tmp_path / "not-a-wheel.whl"
    bad.write_bytes(WHEEL.read_bytes())
    with pytest.raises(InvalidReleaseError, match="is not a wheel file name"):
        publish_wheel(repo_dir, keydir, tmp_path / "a", bad, "rfc8785", "0.1.2")
    with pytest.raises(InvalidReleaseError, match="publish it as package 'rfc8785'"):
        publish_wheel(repo_dir, keydir, tmp_path / "b", WHEEL, "other", "0.1.2")
    with pytest.raises(InvalidReleaseError, match=r"is version 0\.1\.2, not 0\.1\.3"):
        publish_wheel(repo_dir, keydir, tmp_path / "c", WHEEL, "rfc8785", "0.1.3")


def test_the_index_speaks_pep_503_and_691(wheel_repo, tmp_path):
    import requests

    from custody.client.index import serving

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
        for installer in INSTALLERS:
            r = custody(home, *installer(python), "rfc8785")
            assert r.returncode == 1, r.stdout + r.stderr
            assert "TUF refused the download of packages/rfc8785/0.1.2/" in r.stdout + r.stderr
            assert not imports(python)
    finally:
        mirror.close()
    down = tmp_path / "down"
    assert custody(down, "init", "--url", f"http://127.0.0.1:{free_port()}", "--root",
                   str(repo_dir / "public/metadata/1.root.json")).returncode == 0
    for installer in INSTALLERS:
        r = custody(down, *installer(python), "rfc8785")
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


def test_a_requirements_file_with_hashes(wheel_repo, tmp_path):
    import hashlib

    repo_dir, url = wheel_repo
    home = client(tmp_path, repo_dir, url)
    python = venv(tmp_path / "venv")
    digest = hashlib.sha256(WHEEL.read_bytes()).hexdigest()
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"rfc8785==0.1.2 --hash=sha256:{digest}\n")
    r = custody(home, "pip", "--python", str(python), "install", "--require-hashes", "-r",
                str(requirements))
    assert r.returncode == 0, r.stdout + r.stderr
    assert imports(python)
