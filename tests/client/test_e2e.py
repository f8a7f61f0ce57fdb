"""The custody client against a real repository server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from custody.repository.releases import set_channel
from custody.repository.repo import CustodyRepository
from tests.helpers import BIN, custody, installed_state

pytestmark = pytest.mark.slow


def installed_text(home: Path) -> str:
    return (home / "packages/hello/current/src/hello.py").read_text()


def test_install_update_list_verify(served, home):
    served.publish("1.0.0")
    r = custody(home, "install", "hello")
    assert r.returncode == 0, r.stderr
    assert "installed hello 1.0.0" in r.stdout
    assert installed_text(home) == "print('hello 1.0.0')\n"
    state = json.loads((home / "state.json").read_text())
    assert state["packages"]["hello"]["current"] == "1.0.0"
    assert custody(home, "install", "hello").stdout.strip() == \
        "hello 1.0.0 is already installed"

    served.publish("1.1.0")
    r = custody(home, "update")
    assert r.returncode == 0, r.stderr
    assert "updated hello 1.0.0 -> 1.1.0" in r.stdout
    assert installed_text(home) == "print('hello 1.1.0')\n"
    assert (home / "packages/hello/1.0.0").is_dir()  # the previous version is kept
    assert "hello 1.1.0 [stable] (previous 1.0.0)" in custody(home, "list").stdout
    r = custody(home, "verify", "hello")
    assert r.returncode == 0 and "verified" in r.stdout, r.stderr
    (home / "packages/hello/current/src/hello.py").write_text("print('tampered')\n")
    (home / "packages/hello/current/src/extra.py").write_text("")
    r = custody(home, "verify", "hello")
    assert r.returncode == 1
    assert "src/hello.py was modified; src/extra.py was added" in r.stderr

    r = custody(home, "rollback", "hello")
    assert r.returncode == 0 and installed_text(home) == "print('hello 1.0.0')\n"
    assert custody(home, "verify", "hello").returncode == 0
    assert custody(home, "remove", "hello").returncode == 0
    assert not (home / "packages/hello").exists()


def test_channels_pins_and_downgrades(served, home):
    served.publish("1.0.0")
    served.publish("2.0.0b1", channel="beta")
    r = custody(home, "install", "hello==1.0")  # PEP 440: 1.0 is 1.0.0
    assert r.returncode == 0 and "installed hello 1.0.0" in r.stdout, r.stderr
    r = custody(home, "install", "hello", "--channel", "beta")
    assert r.returncode == 0, r.stderr
    assert installed_text(home) == "print('hello 2.0.0b1')\n"
    before = installed_state(home)
    r = custody(home, "install", "hello==1.0.0")
    assert r.returncode == 1
    assert "older than the installed 2.0.0b1" in r.stderr
    assert installed_state(home) == before
    r = custody(home, "install", "hello==1.0.0", "--allow-downgrade")
    assert r.returncode == 0, r.stderr
    r = custody(home, "install", "hello==9.9.9")
    assert r.returncode == 5 and "not in the repository" in r.stderr
    r = custody(home, "install", "nothing")
    assert r.returncode == 5 and "no package 'nothing'" in r.stderr


def test_server_moving_stable_backwards_is_refused(served, home):
    served.publish("1.0.0")
    served.publish("1.1.0")
    assert custody(home, "install", "hello").returncode == 0
    repo = CustodyRepository(served.repo_dir)
    with repo.transaction():
        set_channel(repo, "hello", "stable", "1.0.0", allow_downgrade=True)
    before = installed_state(home)
    r = custody(home, "update")
    assert r.returncode == 1 and "refused" in r.stderr
    assert installed_state(home) == before


def test_failing_health_check_rolls_back(served, home):
    served.publish("1.0.0")
    assert custody(home, "install", "hello").returncode == 0
    served.publish("1.1.0", message="broken")
    check = "python3 -c \"import sys; sys.exit('broken' in open('src/hello.py').read())\""
    r = custody(home, "update", "--health-check", check)
    assert r.returncode == 4
    assert "failed its health check" in r.stderr and "rolled back to 1.0.0" in r.stderr
    assert installed_text(home) == "print('hello 1.0.0')\n"
    state = json.loads((home / "state.json").read_text())
    assert state["packages"]["hello"]["current"] == "1.0.0"
    served.publish("1.2.0")
    r = custody(home, "update", "--health-check", check)
    assert r.returncode == 0, r.stderr
    assert installed_text(home) == "print('hello 1.2.0')\n"


def test_concurrent_installers_are_serialized(served, home):
    served.publish("1.0.0")
    served.publish("1.1.0", channel="beta")
    results = []

    def run(*args: str) -> None:
        results.append(custody(home, *args))

    threads = [threading.Thread(target=run, args=a) for a in
               [("install", "hello==1.0.0"), ("install", "hello==1.1.0"),
                ("install", "hello==1.0.0", "--allow-downgrade")]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.returncode == 0 for r in results) >= 2
    state = json.loads((home / "state.json").read_text())
    current = state["packages"]["hello"]["current"]
    assert os.readlink(home / "packages/hello/current") == current
    assert installed_text(home) == f"print('hello {current}')\n"


def test_sigkill_mid_install_keeps_previous_version_usable(served, home):
    served.publish("1.0.0")
    assert custody(home, "install", "hello").returncode == 0
    rng = random.Random(99)
    for i in range(6):
        served.publish(f"1.{i + 1}.0")
        before = json.loads((home / "state.json").read_text())["packages"]["hello"]["current"]
        proc = subprocess.Popen([str(BIN / "custody"), "--home", str(home), "update"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        time.sleep(rng.random() * 1.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        listed = custody(home, "list", "--json")
        assert listed.returncode == 0, listed.stderr
        current = json.loads(listed.stdout)["hello"]["current"]
        assert current in (before, f"1.{i + 1}.0")
        # the pointer, the state and the files agree, and the package runs
        assert os.readlink(home / "packages/hello/current") == current
        run = subprocess.run(["python3", "src/hello.py"], cwd=home / "packages/hello/current",
                             capture_output=True, text=True, check=True)
        assert run.stdout.strip() == f"hello {current}"
    r = custody(home, "update")
    assert r.returncode == 0, r.stderr
    assert installed_text(home) == "print('hello 1.6.0')\n"
