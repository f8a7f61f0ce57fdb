"""An agent that updates itself through `custody.client.agent`, under `custody run` (issue 9)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import BIN, custody

pytestmark = pytest.mark.slow
POLL = 0.5  # seconds between the long-running agents' polls

# The agent's runtime: what it does depends on the version it runs (its src/hello.py),
# as a real agent's behaviour depends on its code.
AGENT = """
import os, sys, time
from custody.client.agent import Agent

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
    if "rolls back" in source:
        agent.rollback("self-test failed")
        agent.restart()
    agent.confirm()
    log.write(f"{version} confirmed\\n")
offer = agent.check()
if offer:
    agent.update(confirm_within=float(sys.argv[2]))
    log.write(f"{version} installed {offer}, restarting\\n")
    agent.restart()
log.write(f"{version} done\\n")
"""


def run_agent(home: Path, tmp_path: Path, confirm_within: float = 4.0,
              said: list[str] | None = None) -> tuple[int, list[str]]:
    """Run AGENT under custody run; its exit code and log (and custody's stderr in said)."""
    script, log = tmp_path / "agent.py", tmp_path / "agent.log"
    script.write_text(AGENT)
    log.unlink(missing_ok=True)
    proc = subprocess.run([str(BIN / "custody"), "--home", str(home), "run", "hello", "--",
                           str(BIN / "python"), str(script), str(log), str(confirm_within)],
                          capture_output=True, text=True, timeout=120, check=False)
    if said is not None:
        said.append(proc.stderr)
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


# The hang waits out its deadline; the crash is over at once, so its deadline can be long
# enough for a loaded machine to start it (at load 14, 3 s passed before it began).
@pytest.mark.parametrize("fault,reason,deadline", [
    ("hangs", "did not confirm its health before the deadline", 3.0),
    ("crashes", "exited with code 1 before confirming its health", 20.0),
])
def test_a_version_that_never_confirms_is_rolled_back(served, home, tmp_path, fault, reason,
                                                      deadline):
    served.publish("1.0.0")
    assert custody(home, "install", "hello").returncode == 0
    served.publish("1.1.0", message=f"hello {fault}")
    start = time.monotonic()
    code, log = run_agent(home, tmp_path, confirm_within=deadline)
    assert code == 0
    assert log == ["1.0.0 start", "1.0.0 installed 1.1.0, restarting", "1.1.0 start",
                   "1.0.0 start", "1.0.0 done"]  # the old version again; 1.1.0 is known bad
    assert time.monotonic() - start < 40
    hello = package(home)
    assert (hello["current"], hello["pending"]) == ("1.0.0", None)
    assert hello["failed"]["1.1.0"]["reason"] == reason
    assert os.readlink(home / "packages/hello/current") == "1.0.0"


def test_a_version_that_rolls_itself_back_is_said_to(served, home, tmp_path):
    """Not "1.1.0 asked to be restarted" (issue 21, item 10): what it did, and what starts."""
    served.publish("1.0.0")
    assert custody(home, "install", "hello").returncode == 0
    served.publish("1.1.0", message="hello rolls back")
    said: list[str] = []
    code, log = run_agent(home, tmp_path, confirm_within=30.0, said=said)
    assert code == 0
    assert log == ["1.0.0 start", "1.0.0 installed 1.1.0, restarting", "1.1.0 start",
                   "1.0.0 start", "1.0.0 done"]
    assert "custody: hello 1.1.0 rolled itself back (self-test failed); starting 1.0.0" \
        in said[0], said[0]
    assert "asked to be restarted" not in said[0]
    assert package(home)["failed"]["1.1.0"]["reason"] == "self-test failed"


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
    assert "custody: hello 1.0.0 installed 1.1.0; starting it on probation until " \
        in proc.stderr
    assert "expects" not in proc.stderr  # the publisher saw the command notes, once
    hello = package(home)
    assert (hello["current"], hello["pending"]) == ("1.1.0", None)


def test_the_documented_example_agent_reaches_a_release_published_while_it_runs(served,
                                                                               home):
    """docs/examples/agent.py left running, as systemd runs it (issue 21, item 1)."""
    example = Path(__file__).resolve().parents[2] / "docs/examples/agent.py"
    served.publish("1.0.0")
    assert custody(home, "install", "hello").returncode == 0
    proc = subprocess.Popen([str(BIN / "custody"), "--home", str(home), "run", "hello", "--",
                             str(BIN / "python"), str(example)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "MYAGENT_POLL_SECONDS": str(POLL)})
    try:
        time.sleep(4 * POLL)  # a few polls that find nothing
        assert proc.poll() is None
        served.publish("1.1.0")
        published = time.monotonic()
        while package(home)["current"] != "1.1.0" or package(home)["pending"]:
            assert proc.poll() is None and time.monotonic() - published < 20
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and "stopped hello 1.1.0" in err, err
    assert "update check failed" not in err


# -- day two: an agent that stays up (issue 21) -------------------------------------------

# A long-running agent: one line per poll, with the time it ended, so that a test can
# count the polls between a change on the server and the agent's reaching it.
LONG_AGENT = """
import os, sys, time
from custody.client.agent import Agent
from custody.client.errors import ClientError

log = open(sys.argv[1], "a", buffering=1)
poll = float(sys.argv[2])
agent = Agent.from_environment()
version = os.environ["CUSTODY_VERSION"]

def say(what):
    log.write(f"{time.time():.3f} {version} {what}\\n")

say("start")
if agent.awaiting_confirmation():
    agent.confirm()
    say("confirmed")
while True:
    try:
        offer = agent.check()
    except ClientError as exc:
        say(f"poll failed {type(exc).__name__}")
    else:
        if offer:
            agent.update(confirm_within=60)
            say(f"poll installed {offer}")
            agent.restart()
        say("poll none")
    time.sleep(poll)
"""


class Switchable:
    """The repository's gunicorn on one fixed port, stopped and started again at will."""

    def __init__(self, repo_dir: Path) -> None:
        from tests.helpers import free_port

        self.repo_dir, self.port = repo_dir, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._stack: contextlib.ExitStack | None = None

    def start(self) -> float:
        """Start the server; the time it answered its health check."""
        from tests.helpers import running_server

        assert self._stack is None
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(running_server(self.repo_dir, workers=1, port=self.port))
        return time.time()

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None


@pytest.fixture
def switchable(tmp_path, keydir, hello_chain):
    from tests.helpers import Served, add_hello_layout, make_repo

    repo_dir = tmp_path / "repo"
    make_repo(repo_dir, keydir, bins=4)
    add_hello_layout(repo_dir, keydir, hello_chain.layout)
    server = Switchable(repo_dir)
    server.start()
    try:
        yield server, Served(repo_dir, server.url, keydir, tmp_path)
    finally:
        server.stop()


def _events(log: Path) -> list[tuple[float, str, str]]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [(float(t), v, what) for t, v, what in (line.split(" ", 2) for line in lines)]


def _wait_for(log: Path, version: str, what: str, count: int = 1, after: float = 0.0,
              timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = [e for e in _events(log) if e[1] == version and e[2].startswith(what)
                and e[0] > after]
        if len(seen) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"no {count} x {version} {what!r} within {timeout} s:\n"
                         + log.read_text())


def _polls_of(log: Path, version: str, after: float) -> int:
    return sum(1 for t, v, what in _events(log) if v == version and what.startswith("poll")
               and t > after)


def test_a_running_agent_reaches_every_release_through_outages(switchable, tmp_path):
    """Down before the agent starts, a release published while it runs, down while it runs:
    each time the agent runs the newest release within two polls (issue 21, items 1-2)."""
    server, served = switchable
    home = tmp_path / "home"
    assert custody(home, "init", "--url", served.url, "--root", str(served.root),
                   "--inspections", "run").returncode == 0
    served.publish("1.0.0")
    assert custody(home, "install", "hello").returncode == 0
    server.stop()
    served.publish("1.1.0")  # while the repository is down

    script, log = tmp_path / "agent.py", tmp_path / "agent.log"
    script.write_text(LONG_AGENT)
    proc = subprocess.Popen([str(BIN / "custody"), "--home", str(home), "run", "hello", "--",
                             str(BIN / "python"), str(script), str(log), str(POLL)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(log, "1.0.0", "poll failed RepositoryUnreachable", count=3)
        up = server.start()
        _wait_for(log, "1.1.0", "confirmed")
        # the poll that installs 1.1.0, and at most one that was under way when it came back
        assert _polls_of(log, "1.0.0", up) <= 2, log.read_text()

        _wait_for(log, "1.1.0", "poll none", count=2)
        published = time.time()
        served.publish("1.2.0")  # while the agent runs
        _wait_for(log, "1.2.0", "confirmed")
        assert _polls_of(log, "1.1.0", published) <= 2, log.read_text()

        _wait_for(log, "1.2.0", "poll none", count=1)
        server.stop()
        down = time.time()
        _wait_for(log, "1.2.0", "poll failed RepositoryUnreachable", count=2, after=down)
        served.publish("1.3.0")
        up = server.start()
        _wait_for(log, "1.3.0", "confirmed")
        assert _polls_of(log, "1.2.0", up) <= 2, log.read_text()
        _wait_for(log, "1.3.0", "poll none", count=3)  # and it stays there, polling
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "interrupted by SIGTERM; stopped hello 1.3.0" in err, err
    assert "Traceback" not in err
    hello = package(home)
    assert (hello["current"], hello["previous"], hello["pending"], hello["failed"]) == \
        ("1.3.0", "1.2.0", None, {})
    assert "hello 1.1.0 installed 1.2.0; starting it on probation until" in err, err


PROBATION_AGENT = """
import os, sys, time
from custody.client.agent import Agent

agent = Agent.from_environment()
log = open(sys.argv[1], "a", buffering=1)
probation = agent.awaiting_confirmation()
log.write(os.environ["CUSTODY_VERSION"] + (" probation" if probation else " live") + "\\n")
if probation:
    while os.path.exists(sys.argv[2]):  # the self-test takes as long as the test says
        time.sleep(0.05)
    agent.confirm()
    log.write("confirmed\\n")
"""


def test_sigterm_during_probation_says_the_version_stays_pending(served, home, tmp_path):
    """A stop says nothing about the new version's health: it stays on probation, the
    message says so, and the next start resumes it (issue 21, item 4)."""
    served.publish("1.0.0")
    assert custody(home, "install", "hello").returncode == 0
    served.publish("1.1.0")
    assert custody(home, "update", "hello", "--confirm-within", "120").returncode == 0
    script, log, hold = tmp_path / "agent.py", tmp_path / "agent.log", tmp_path / "hold"
    script.write_text(PROBATION_AGENT)
    hold.touch()
    run = [str(BIN / "custody"), "--home", str(home), "run", "hello", "--",
           str(BIN / "python"), str(script), str(log), str(hold)]
    proc = subprocess.Popen(run, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (log.exists() and "1.1.0 probation" in log.read_text()):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert "custody: interrupted by SIGTERM; stopped hello 1.1.0, which stays on probation " \
        "until " in err and "the next 'custody run' starts it again to confirm" in err, err
    assert "anything unfinished was rolled back" not in err
    hello = package(home)
    assert (hello["current"], hello["pending"]["version"]) == ("1.0.0", "1.1.0")

    hold.unlink()  # the next start resumes the probation, and this time it confirms
    again = subprocess.run(run, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0, again.stderr
    assert log.read_text().splitlines() == ["1.1.0 probation", "1.1.0 probation", "confirmed"]
    hello = package(home)
    assert (hello["current"], hello["pending"]) == ("1.1.0", None)


def test_a_probation_that_ends_unwatched_is_no_verdict(served, home, tmp_path):
    """Its deadline passed while custody run was stopped, or across a reboot: rolled back,
    one interrupted attempt counted, tried again by the next update (issue 21, item 3)."""
    served.publish("1.0.0")
    assert custody(home, "install", "hello").returncode == 0
    served.publish("1.1.0")
    assert custody(home, "update", "hello", "--confirm-within", "4").returncode == 0
    script, log, hold = tmp_path / "agent.py", tmp_path / "agent.log", tmp_path / "hold"
    script.write_text(PROBATION_AGENT)
    hold.touch()
    proc = subprocess.Popen([str(BIN / "custody"), "--home", str(home), "run", "hello", "--",
                             str(BIN / "python"), str(script), str(log), str(hold)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (log.exists() and "1.1.0 probation" in log.read_text()):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # systemctl stop, before the agent confirmed
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and "(attempt 1 of 3)" in err, err
    time.sleep(4.5)  # the deadline passes while nothing runs the version

    listed = custody(home, "list")
    assert "hello 1.1.0 interrupted on probation (the supervisor stopped or the host " \
        "restarted) (attempt 1 of 3; the next update tries it again); rolled back to 1.0.0" \
        in listed.stderr, listed.stderr
    hello = package(home)
    assert (hello["current"], hello["pending"], hello["failed"]) == ("1.0.0", None, {})
    assert hello["interrupted"]["1.1.0"]["attempts"] == 1

    # tried again; this time the host "reboots" during the probation (another boot id)
    r = custody(home, "update", "hello", "--confirm-within", "1")
    assert r.returncode == 0 and "awaiting confirmation" in r.stdout, r.stdout + r.stderr
    state = json.loads((home / "state.json").read_text())
    state["packages"]["hello"]["pending"]["boot"] = "a boot before this one"
    (home / "state.json").write_text(json.dumps(state))
    time.sleep(1.5)
    assert "(attempt 2 of 3" in custody(home, "list").stderr
    assert package(home)["interrupted"]["1.1.0"]["attempts"] == 2

    # the host stayed up and nothing was stopped: a missed deadline is a verdict
    assert custody(home, "update", "hello", "--confirm-within", "1").returncode == 0
    time.sleep(1.5)
    assert "did not confirm its health before the deadline; rolled back" in \
        custody(home, "list").stderr
    hello = package(home)
    assert hello["failed"]["1.1.0"]["reason"] == "did not confirm its health before the deadline"
    assert hello["interrupted"] == {}


def test_an_agent_reports_how_each_probation_ended(served, tmp_path):
    """Confirmed, rolled back by the agent, rolled back by the supervisor: each one report,
    which is what a rollout counts (fails without reports from the agent: none arrive)."""
    import sqlite3

    from custody.client.config import ClientConfig
    from custody.repository.storage import RepoPaths
    from custody.repository.tokens import create_token

    _, token = create_token(RepoPaths(served.repo_dir), "fleet", "report")
    home = tmp_path / "reporting-home"
    assert custody(home, "init", "--url", served.url, "--root", str(served.root),
                   "--inspections", "run", "--report-url", served.url, "--report-token",
                   token).returncode == 0
    client_id = ClientConfig.load(home).client_id
    served.publish("1.0.0")
    assert custody(home, "install", "hello").returncode == 0
    served.publish("1.1.0", message="hello rolls back")
    assert run_agent(home, tmp_path, confirm_within=30.0)[0] == 0
    served.publish("1.2.0", message="hello crashes")
    assert run_agent(home, tmp_path, confirm_within=30.0)[0] == 0
    served.publish("1.3.0")
    assert run_agent(home, tmp_path, confirm_within=30.0)[0] == 0

    with sqlite3.connect(served.repo_dir / "private/reports.sqlite") as db:
        rows = db.execute("SELECT from_version, to_version, result, exit_code, reason, "
                          "client_id FROM reports WHERE result != 'installed' ORDER BY id"
                          ).fetchall()
    assert rows == [
        ("1.0.0", "1.1.0", "unhealthy", 4, "self-test failed", client_id),
        ("1.0.0", "1.2.0", "unhealthy", 4, "exited with code 1 before confirming its health",
         client_id),
        ("1.0.0", "1.3.0", "updated", 0, "", client_id),
    ]
