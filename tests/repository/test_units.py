"""The repository's systemd units in deploy/ are valid: ``systemd-analyze verify`` is clean.

The units name ``/opt/custody/bin``; the test points them at this virtualenv's
scripts (systemd checks that the command exists and is executable) and
refuses any warning, since systemd only warns about an unknown key or a
misspelled value and then ignores it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.helpers import BIN, debian_tool

DEPLOY = Path(__file__).resolve().parent.parent.parent / "deploy"
UNITS = ("custody-repo.service", "custody-repo-bump.service", "custody-repo-bump.timer",
         "custody-repo-backup.service", "custody-repo-backup.timer")


def _systemd_analyze() -> str:
    return debian_tool("systemd-analyze", "systemd")


def test_repository_units_verify_cleanly(tmp_path):
    analyze = _systemd_analyze()
    for name in UNITS:
        text = (DEPLOY / name).read_text().replace("/opt/custody/bin/", f"{BIN}/")
        (tmp_path / name).write_text(text)
    r = subprocess.run([analyze, "verify", "--man=no", *[str(tmp_path / n) for n in UNITS]],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
    for name in UNITS:
        assert "/opt/custody/bin/custody-repo" in (DEPLOY / name).read_text() or \
            name.endswith(".timer")


def test_a_broken_unit_is_caught(tmp_path):
    """The check is not blind: a misspelled value is reported."""
    analyze = _systemd_analyze()
    text = (DEPLOY / "custody-repo.service").read_text().replace(
        "/opt/custody/bin/", f"{BIN}/").replace("KillMode=mixed", "KillMode=mixd")
    (tmp_path / "custody-repo.service").write_text(text)
    r = subprocess.run([analyze, "verify", "--man=no", str(tmp_path / "custody-repo.service")],
                       capture_output=True, text=True, timeout=60, check=False)
    assert "kill mode" in r.stderr
