"""pyproject.toml's dependencies: the client's alone by default, the rest in named extras.

tests/test_lean_client.py installs the result in a fresh venv; these checks
keep pyproject.toml and the table of extras (`custody.keys_tooling.cliutil.EXTRAS`)
that names a missing extra in one sentence in step, without building anything.
"""

from __future__ import annotations

import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

from custody.keys_tooling.cliutil import EXTRAS

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def names(requirements: list[str]) -> set[str]:
    return {Requirement(r).name.lower() for r in requirements}


def test_pip_install_custody_brings_only_what_a_host_needs():
    assert names(PROJECT["dependencies"]) == {
        "tuf", "securesystemslib", "cryptography", "urllib3", "click", "pathspec",
        "packaging", "msgspec", "backports.zstd"}


def test_every_module_of_an_extra_is_in_the_table_that_names_it():
    """Each extra's distributions install modules that `EXTRAS` maps to that extra."""
    extras = PROJECT["optional-dependencies"]
    modules_of: dict[str, set[str]] = {}
    for module, dists in packages_distributions().items():
        for dist in dists:
            modules_of.setdefault(dist.lower().replace("_", "-"), set()).add(module)
    for extra in ("repository", "keyless", "postgresql"):
        for dist in names(extras[extra]):
            named = {m for m in modules_of[dist] if EXTRAS.get(m) == extra}
            assert named, f"{dist} of custody[{extra}] has no module in EXTRAS"
    assert set(EXTRAS.values()) <= set(extras)


def test_the_test_extra_and_so_make_install_bring_everything():
    assert "custody[repository,keyless,postgresql]" in PROJECT["optional-dependencies"]["test"]
    assert '-e ".[test]"' in (ROOT / "Makefile").read_text()
