"""An unchecked version is never left live, whatever interrupts its health check (issue 9)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import BIN, custody

pytestmark = pytest.mark.slow


def _raw_state(home: Path) -> dict:
    return json.loads((home / "state.json").read_text())["packages"]["hello"]


def test_signals_and_sigkill_during_the_check_roll_back(served, home, tmp_path):
    served.publish("1.0.0")
    assert custody(home, "install", "hello").returncode == 0
    served.publish("1.1.0")
    started = tmp_path / "started"
    # a check that never passes in time: it marks that it started, then sleeps
    r = custody(home, "health-check", "set", "hello", "--timeout", "30", "--",
                "sh", "-c", f"touch {started}; sleep 30")
    assert r.returncode == 0
    rng = random.Random(9)
    kinds = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -9}
    seen_during_check = 0
    for trial in range(24):
        sig = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL][trial % 3]
        started.unlink(missing_ok=True)
        proc = subprocess.Popen([str(BIN / "custody"), "--home", str(home), "update",
                                 "--retry-failed"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        # somewhere from start-up, through TUF and in-toto, to well inside the check
        time.sleep(rng.uniform(0.05, 2.0))
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        during = started.exists()
        seen_during_check += during
        if during and sig != signal.SIGKILL:
            assert proc.returncode == kinds[sig], (trial, proc.returncode, err)
            assert "interrupted by SIG" in err and "rolled back" in err
            assert "Traceback" not in err
        raw = _raw_state(home)
        if sig == signal.SIGKILL:
            assert raw["current"] == "1.0.0"  # never recorded as live
        else:  # the signal rolled back before exit
            assert raw["pending"] is None and raw["current"] == "1.0.0", (trial, raw, err)
        # any next command (here: list) finishes a rollback SIGKILL left undone
        listed = custody(home, "list", "--json")
        assert listed.returncode == 0, listed.stderr
        hello = json.loads(listed.stdout)["hello"]
        assert hello["current"] == "1.0.0" and hello["pending"] is None, (trial, hello)
        assert os.readlink(home / "packages/hello/current") == "1.0.0"
        run = subprocess.run(["python3", "src/hello.py"], cwd=home / "packages/hello/current",
                             capture_output=True, text=True, check=True)
        assert run.stdout.strip() == "hello 1.0.0"
        if during:
            assert "interrupted" in hello["failed"]["1.1.0"]["reason"]
            assert not (home / "packages/hello/1.1.0").exists()
    assert seen_during_check >= 12  # most trials landed inside the check
    # the check's process did not outlive a SIGKILLed custody
    time.sleep(0.5)
    ps = subprocess.run(["pgrep", "-f", f"touch {started}"], capture_output=True, text=True)
    assert ps.stdout.strip() == ""
