"""The systemd units of docs/examples/ load in systemd, and run commands custody has.

`systemd-analyze verify` (Debian's ``systemd`` package, installed here if it
is missing and we are root) parses each unit as systemd would and checks that
its executables exist; it needs no running systemd, so it runs in a container.
The units name ``/opt/custody/bin/``, where docs/agents.md installs custody;
the test points them at this checkout's environment instead. Each custody
command line a unit runs is then checked against ``custody SUBCOMMAND
--help``: the subcommand and every flag must exist (issue 21, item 5).
"""

from __future__ import annotations

import configparser
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.helpers import BIN, debian_tool

EXAMPLES = Path(__file__).resolve().parents[2] / "docs/examples"
UNITS = sorted([*EXAMPLES.glob("*.service"), *EXAMPLES.glob("*.timer")])
INSTALLED = "/opt/custody/bin/"  # where docs/agents.md installs custody


def _systemd_analyze() -> str:
    return debian_tool("systemd-analyze", "systemd")


def _service(unit: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    parser.read_string(unit.read_text())
    return parser["Service"]


def _custody_lines(unit: Path) -> list[list[str]]:
    """The argv of every Exec*= line of ``unit`` that runs custody."""
    lines = [line.split("=", 1)[1] for line in unit.read_text().splitlines()
             if re.match(r"Exec\w*=", line)]
    return [argv for argv in map(shlex.split, lines) if argv[0] == INSTALLED + "custody"]


def test_there_are_units_for_an_agent_and_for_timed_updates():
    assert {u.name for u in UNITS} >= {"myagent.service", "custody-update.service",
                                       "custody-update.timer"}


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_each_unit_verifies_in_systemd(unit, tmp_path):
    analyze = _systemd_analyze()
    for each in UNITS:  # a timer is verified with its service beside it
        (tmp_path / each.name).write_text(each.read_text().replace(INSTALLED, f"{BIN}/"))
    r = subprocess.run([analyze, "verify", str(tmp_path / unit.name)], capture_output=True,
                       text=True, timeout=60, check=False, cwd=tmp_path)
    # verify exits 0 on an unknown key or section, and says so: any word from it is a fault
    assert (r.returncode, r.stdout + r.stderr) == (0, ""), r.stdout + r.stderr


@pytest.mark.parametrize("unit", [u for u in UNITS if u.suffix == ".service"],
                         ids=lambda u: u.name)
def test_each_service_runs_as_its_own_user_in_its_state_directory(unit):
    """Not as root; the client home is the state directory systemd makes for that user."""
    service = _service(unit)
    assert service.get("User") not in (None, "root", "0")
    state = service["StateDirectory"]
    assert f"CUSTODY_HOME=/var/lib/{state}" in service["Environment"].split()


def test_a_stop_of_the_agent_is_a_success():
    """custody run exits 143 after SIGTERM (systemctl stop): not a failed unit (item 5)."""
    service = _service(EXAMPLES / "myagent.service")
    assert "143" in service["SuccessExitStatus"].split()
    assert service["KillMode"] == "mixed"  # custody run stops the agent itself


@pytest.mark.parametrize("argv", [argv for u in UNITS for argv in _custody_lines(u)],
                         ids=lambda argv: " ".join(argv[1:3]))
def test_every_custody_command_and_flag_a_unit_uses_exists(argv):
    words = argv[1:argv.index("--")] if "--" in argv else argv[1:]
    subcommand = [w for w in words if not w.startswith("-")][:1]
    flags = [w.split("=", 1)[0] for w in words if w.startswith("-")]
    r = subprocess.run([str(BIN / "custody"), *subcommand, "--help"], capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 0, f"custody has no command {subcommand}: {r.stderr}"
    for flag in flags:
        assert re.search(rf"(^|[\s,]){re.escape(flag)}\b", r.stdout), \
            f"custody {subcommand[0]} has no {flag}"
    if "--" in argv:  # custody run NAME -- PROGRAM ...: the program custody starts exists
        program = argv[argv.index("--") + 1]
        assert program.startswith(INSTALLED) and (BIN / program[len(INSTALLED):]).exists()
