"""An agent that updates itself through `client.agent`, under `custody run` (issue 9)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import BIN, custody

pytestmark = pytest.mark.slow

# The agent's runtime: what it does depends on the version it runs (its src/hello.py),
# as a real agent's behaviour depends on its code.
AGENT = """
import os, sys, time
from client.agent import Agent

log = open(sys.argv[1], "a", buffering=1)
agent = Agent.from_environment()
version = os.environ["CUSTODY_VERSION"]
source = open("src/hello.py").read()
log.write(f"{version} start\\n")
if agent.awaiting_confirmation():
    if "hangs" in source:
        time.sleep(60)
    if "crashes" in source:
        sys.exit(1)
    agent.confirm()
    log.write(f"{version} confirmed\\n")
offer = agent.check()
if offer:
    agent.update(confirm_within=float(sys.argv[2]))
    log.write(f"{version} installed {offer}, restarting\\n")
    agent.restart()
log.write(f"{version} done\\n")
"""


def run_agent(home: Path, tmp_path: Path, confirm_within: float = 4.0) -> tuple[int, list[str]]:
    script, log = tmp_path / "agent.py", tmp_path / "agent.log"
    script.write_text(AGENT)
    log.unlink(missing_ok=True)
    proc = subprocess.run([str(BIN / "custody"), "--home", str(home), "run", "hello", "--",
                           str(BIN / "python"), str(script), str(log), str(confirm_within)],
                          capture_output=True, text=True, timeout=120, check=False)
    return proc.returncode, log.read_text().splitlines()


def package(home: Path) -> dict:
    return json.loads(custody(home, "list", "--json").stdout)["hello"]


def test_agent_updates_itself_and_restarts_into_the_new_version(served, home, tmp_path):
    served.publish("1.0.0")
    assert custody(home, "install", "hello").returncode == 0
    served.publish("1.1.0")
    code, log = run_agent(home, tmp_path)
    assert code == 0
    assert log == ["1.0.0 start", "1.0.0 installed 1.1.0, restarting", "1.1.0 start",
                   "1.1.0 confirmed", "1.1.0 done"]
    hello = package(home)
    assert (hello["current"], hello["previous"], hello["pending"]) == ("1.1.0", "1.0.0", None)
    assert os.readlink(home / "packages/hello/current") == "1.1.0"


@pytest.mark.parametrize("fault,reason", [
    ("hangs", "did not confirm its health before the deadline"),
    ("crashes", "exited with code 1 before confirming its health"),
])
def test_a_version_that_never_confirms_is_rolled_back(served, home, tmp_path, fault, reason):
    served.publish("1.0.0")
    assert custody(home, "install", "hello").returncode == 0
    served.publish("1.1.0", message=f"hello {fault}")
    start = time.monotonic()
    code, log = run_agent(home, tmp_path, confirm_within=3.0)
    assert code == 0
    assert log == ["1.0.0 start", "1.0.0 installed 1.1.0, restarting", "1.1.0 start",
                   "1.0.0 start", "1.0.0 done"]  # the old version again; 1.1.0 is known bad
    assert time.monotonic() - start < 40
    hello = package(home)
    assert (hello["current"], hello["pending"]) == ("1.0.0", None)
    assert hello["failed"]["1.1.0"]["reason"] == reason
    assert os.readlink(home / "packages/hello/current") == "1.0.0"


def test_the_same_flow_from_the_command_line(served, home):
    served.publish("1.0.0")
    assert custody(home, "install", "hello").returncode == 0
    served.publish("1.1.0")
    r = custody(home, "update", "hello", "--confirm-within", "30")
    assert r.returncode == 0 and "awaiting confirmation until" in r.stdout, r.stderr
    assert os.readlink(home / "packages/hello/current") == "1.1.0"  # restart into it now
    assert "(checking 1.1.0)" in custody(home, "list").stdout
    r = custody(home, "update", "hello")
    assert "awaits confirmation" in r.stdout
    r = custody(home, "confirm", "hello")
    assert r.returncode == 0 and "hello 1.1.0 is live" in r.stdout
    assert package(home)["current"] == "1.1.0"

    served.publish("1.2.0")
    assert custody(home, "update", "hello", "--confirm-within", "1").returncode == 0
    time.sleep(1.5)  # nobody confirms: the next command, whatever it is, rolls back
    r = custody(home, "list")
    assert "hello 1.2.0 did not confirm its health before the deadline; rolled back to " \
        "1.1.0" in r.stderr
    assert os.readlink(home / "packages/hello/current") == "1.1.0"
    r = custody(home, "confirm", "hello")
    assert "nothing awaits confirmation" in r.stdout


def test_the_documented_example_agent_updates_itself(served, home):
    """docs/examples/agent.py, as docs/agents.md tells an agent vendor to run it."""
    example = Path(__file__).resolve().parents[2] / "docs/examples/agent.py"
    served.publish("1.0.0")
    assert custody(home, "install", "hello").returncode == 0
    served.publish("1.1.0")
    proc = subprocess.run([str(BIN / "custody"), "--home", str(home), "run", "hello", "--",
                           str(BIN / "python"), str(example), "--once"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "hello 1.0.0 asked to be restarted" in proc.stderr
    hello = package(home)
    assert (hello["current"], hello["pending"]) == ("1.1.0", None)
