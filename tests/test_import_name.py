"""custody imports under its own name, beside an application's own ``client`` (issue 26).

custody used to install the top-level packages ``client``, ``repository``,
``formats``, ``intoto`` and ``keys_tooling``: an application with its own
``client`` package could not import custody's API. Installed, they are now
``custody.*``; this installs custody (a real, non-editable build) into a
fresh environment and runs an application that has its own ``client``.
"""

from __future__ import annotations

import site
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import packaged_source

APP = '''
import client                                   # the application's own package
from custody.client.errors import ClientError   # custody's
from custody.client.packages import fetch
import custody.intoto, custody.repository.releases
print(client.WHO, ClientError.__module__, fetch.__module__, custody.intoto.__file__)
'''


def application(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    (app / "client").mkdir(parents=True)
    (app / "client" / "__init__.py").write_text('WHO = "the application"\n')
    (app / "main.py").write_text(APP)
    return app


@pytest.mark.slow
def test_an_installed_custody_beside_an_application_client_package(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # custody's dependencies from this environment; custody itself built (setuptools from the
    # package registry, as any pip install does) and installed anew
    purelib = Path(site.getsitepackages()[0])
    (next((venv / "lib").glob("python3*/site-packages")) / "deps.pth").write_text(
        f"{purelib}\n")
    built = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps",
                            str(packaged_source(tmp_path))],
                           capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr
    installed = next((venv / "lib").glob("python3*/site-packages"))
    assert (installed / "custody" / "client" / "errors.py").is_file()
    assert not (installed / "client").exists() and not (installed / "repository").exists()
    app = application(tmp_path)
    r = subprocess.run([str(python), "main.py"], cwd=app, capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("the application custody.client.errors custody.client.packages")
    assert str(installed) in r.stdout  # the installed copy, not this checkout
    r = subprocess.run([str(venv / "bin" / "custody"), "--version"], capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0, r.stderr


def test_the_development_install_beside_an_application_client_package(tmp_path):
    app = application(tmp_path)
    r = subprocess.run([sys.executable, "main.py"], cwd=app, capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("the application custody.client.errors custody.client.packages")
