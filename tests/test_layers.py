"""The dependency direction of DESIGN.md, checked by import-linter in `make test` too.

`make lint` runs ``lint-imports``; this test runs the same contracts so that
an import cycle (``repo.py`` importing a module that imports it, as
``bucket``, ``ceremony`` and ``genesis`` once did) fails the build wherever
the tests run, and proves on a copy of the tree that the contracts do catch
an upward import.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.helpers import BIN

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("custody", "repository", "client", "intoto", "keys_tooling", "formats")


def lint_imports(where: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=where,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={"PYTHONPATH": str(where), "PATH": "/usr/bin:/bin"})


def test_the_tree_keeps_its_layers():
    r = lint_imports(ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


def test_an_upward_import_breaks_the_build(tmp_path):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    storage = tmp_path / "repository/storage.py"
    storage.write_text(storage.read_text() + "\n\ndef _late():\n"
                       "    from custody.repository.repo import CustodyRepository\n\n"
                       "    return CustodyRepository\n")
    r = lint_imports(tmp_path)
    assert r.returncode == 1, r.stdout[-3000:]
    assert "custody.repository.storage -> custody.repository.repo" in r.stdout, r.stdout[-3000:]
