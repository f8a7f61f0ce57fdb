"""``pip install custody`` in a fresh venv is the client a host needs, and nothing of the server.

The venv is built from this checkout with no extras; the repository it
installs from is served by the full venv's gunicorn, as a fleet's server is.
What the lean install lacks is said in one sentence naming the extra:
``custody[keyless]`` for a layout with keyless functionaries,
``custody[repository]`` for ``custody-repo serve``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from custody.repository.releases import Release, publish_release
from custody.repository.repo import CustodyRepository
from tests.client.test_keyless import WHEEL, evidence, owners_repository
from tests.helpers import free_port, packaged_source, running_server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
#: What only the repository (or keyless verification) needs: never on a lean host.
SERVER_STACK = ("flask", "werkzeug", "gunicorn", "boto3", "botocore", "prometheus_client",
                "requests", "sigstore")

#: Run by the lean venv's python: bytes installed per distribution, from each one's RECORD,
#: leaving out the venv's own pip and setuptools.
SIZES = """
import json
from importlib.metadata import distributions
sizes = {}
for dist in distributions():
    name = dist.metadata["Name"]
    if name.lower() in ("pip", "setuptools"):
        continue
    sizes[name] = sum(f.locate().stat().st_size for f in dist.files or ()
                      if f.locate().is_file())
print(json.dumps(sizes))
"""


def lean_venv(where: Path) -> Path:
    """A venv holding ``pip install <this checkout>`` and nothing else; its bin directory."""
    source = packaged_source(where)
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "--quiet",
                          str(source)], capture_output=True, text=True, timeout=600,
                         check=False)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return venv / "bin"


@pytest.fixture(scope="module")
def lean(tmp_path_factory) -> Path:
    return lean_venv(tmp_path_factory.mktemp("lean"))


def run(program: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(program), *args], capture_output=True, text=True, timeout=120,
                          check=False)


def one_sentence(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_the_lean_client_installs_and_holds_no_server_stack(lean, served, tmp_path):
    found = run(lean / "python", "-c", "import importlib.util, json, sys; print(json.dumps("
                "[m for m in sys.argv[1:] if importlib.util.find_spec(m)]))", *SERVER_STACK)
    assert json.loads(found.stdout) == [], found.stderr
    sizes = json.loads(run(lean / "python", "-c", SIZES).stdout)
    assert {"tuf", "securesystemslib", "cryptography", "urllib3", "msgspec", "custody"} <= {
        name.lower() for name in sizes}
    total = sum(sizes.values())
    print(f"lean client: {total / 2**20:.1f} MiB in {len(sizes)} distributions: "
          + ", ".join(f"{n} {s / 2**20:.1f}" for n, s in sorted(sizes.items(),
                                                               key=lambda i: -i[1])))
    assert total < 40 << 20, sizes  # the full install is about 135 MiB

    for program in ("custody", "custody-intoto", "custody-keys", "custody-repo"):
        r = run(lean / program, "--help")
        assert r.returncode == 0 and "usage" in r.stdout.lower(), (program, r.stderr)

    served.publish("1.0.0")
    home = tmp_path / "home"
    r = run(lean / "custody", "--home", str(home), "init", "--url", served.url, "--root",
            str(served.root), "--inspections", "run")
    assert r.returncode == 0, r.stderr
    r = run(lean / "custody", "--home", str(home), "install", "hello")
    assert r.returncode == 0, r.stderr
    assert "installed hello 1.0.0" in r.stdout
    assert (home / "packages/hello/current/src/hello.py").is_file()
    assert run(lean / "custody", "--home", str(home), "verify", "hello").returncode == 0


def test_what_the_lean_client_lacks_is_one_sentence_naming_the_extra(lean, tmp_path, keydir):
    repo_dir, layout_bytes = owners_repository(tmp_path, keydir)
    repo = CustodyRepository(repo_dir)
    with repo.transaction():
        publish_release(repo, Release("rfc8785", "0.1.2", WHEEL, layout_bytes,
                                      evidence(keydir, tmp_path / "work")))
    with running_server(repo_dir) as url:
        home = tmp_path / "home"
        r = run(lean / "custody", "--home", str(home), "init", "--url", url, "--root",
                str(repo_dir / "public/metadata/1.root.json"))
        assert r.returncode == 0, r.stderr
        r = run(lean / "custody", "--home", str(home), "install", "rfc8785")
    assert r.returncode == 1
    assert one_sentence(r).endswith("(sigstore is not installed): "
                                    "pip install 'custody[keyless]'")
    assert not (home / "packages/rfc8785").exists()

    r = run(lean / "custody-repo", "serve", str(repo_dir), "--port", str(free_port()))
    assert r.returncode == 1
    assert one_sentence(r) == ("custody-repo: this command needs the repository extra (flask "
                               "is not installed): pip install 'custody[repository]'")
