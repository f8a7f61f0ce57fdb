"""The unattended update loop (issue 9): known-bad versions, per-package health checks,
one package never blocking another, exit codes a fleet can alert on, a bounded disk."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import custody, free_port, installed_state

pytestmark = pytest.mark.slow

# Fails in a version whose source says "broken", after printing a few lines of its own,
# and leaves what it saw (cwd, environment) in a file for the test to read.
CHECK = """
import json, os, sys
seen = {"cwd": os.getcwd(), **{k: v for k, v in os.environ.items() if k.startswith("CUSTODY_")}}
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(seen) + "\\n")
for i in range(15):
    print(f"check line {i}")
sys.exit(3 if "broken" in open("src/hello.py").read() else 0)
"""


def state(home: Path) -> dict:
    return json.loads((home / "state.json").read_text())["packages"]


def set_check(home: Path, name: str, log: Path, *extra: str) -> None:
    script = home.parent / "check.py"
    script.write_text(CHECK)
    r = custody(home, "health-check", "set", name, *extra, "--", "python3", str(script),
                str(log))
    assert r.returncode == 0, r.stderr


def test_known_bad_version_is_skipped_until_a_newer_one(served, home, tmp_path):
    served.publish("1.0.0")
    assert custody(home, "install", "hello").returncode == 0
    log = tmp_path / "checks.jsonl"
    set_check(home, "hello", log)
    assert "python3" in custody(home, "health-check", "list").stdout
    served.publish("1.1.0", message="broken")

    r = custody(home, "update")
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert "hello 1.1.0 failed its health check (exit code 3); rolled back to 1.0.0" in r.stderr
    assert "  | check line 14" in r.stderr and "check line 4" not in r.stderr  # last lines
    seen = json.loads(log.read_text().splitlines()[-1])
    assert seen["cwd"] == str(home / "packages/hello/1.1.0")
    assert (seen["CUSTODY_PACKAGE"], seen["CUSTODY_VERSION"],
            seen["CUSTODY_PREVIOUS_VERSION"]) == ("hello", "1.1.0", "1.0.0")
    assert os.readlink(home / "packages/hello/current") == "1.0.0"
    hello = state(home)["hello"]
    assert hello["current"] == "1.0.0" and hello["previous"] is None
    assert "exit code 3: check line 14" in hello["failed"]["1.1.0"]["reason"]
    assert not (home / "packages/hello/1.1.0").exists()
    assert not (home / "cache/packages/hello/1.1.0").exists()

    before = installed_state(home)
    for args in (("update",), ("update", "hello"), ("install", "hello")):
        r = custody(home, *args)  # a poll, a person, cron: none installs it again
        assert r.returncode == 0, r.stderr
        assert "hello 1.1.0 is known bad (failed its health check" in r.stdout
        assert "--retry-failed" in r.stdout
    assert installed_state(home) == before
    assert len(log.read_text().splitlines()) == 1  # and none ran the check again
    listed = custody(home, "list").stdout
    assert "failed 1.1.0: failed its health check (exit code 3" in listed
    r = custody(home, "rollback", "hello")
    assert r.returncode == 5 and "no previous version" in r.stderr

    r = custody(home, "update", "--retry-failed")  # an operator overrides: checked again
    assert r.returncode == 4 and len(log.read_text().splitlines()) == 2

    served.publish("1.2.0")
    r = custody(home, "update")
    assert r.returncode == 0, r.stderr
    assert "updated hello 1.0.0 -> 1.2.0" in r.stdout
    hello = state(home)["hello"]
    assert (hello["current"], hello["previous"], hello["failed"]) == ("1.2.0", "1.0.0", {})


def test_rollback_never_moves_to_a_failed_version(served, home):
    served.publish("1.0.0")
    assert custody(home, "install", "hello").returncode == 0
    served.publish("1.1.0")
    assert custody(home, "update").returncode == 0
    r = custody(home, "rollback", "hello")
    assert r.returncode == 0, r.stderr
    assert "rolled back hello 1.1.0 -> 1.0.0" in r.stdout
    assert state(home)["hello"]["failed"]["1.1.0"]["reason"] == "rolled back by hand"
    r = custody(home, "update")
    assert r.returncode == 0 and "hello 1.1.0 is known bad" in r.stdout
    assert os.readlink(home / "packages/hello/current") == "1.0.0"
    r = custody(home, "rollback", "hello")  # previous is 1.1.0, which is known bad
    assert r.returncode == 5 and "1.1.0 is known bad" in r.stderr
    assert os.readlink(home / "packages/hello/current") == "1.0.0"
    # an operator installs it again: live, so no longer listed as failed (issue 21, item 10)
    r = custody(home, "update", "--retry-failed")
    assert r.returncode == 0 and "updated hello 1.0.0 -> 1.1.0" in r.stdout, r.stderr
    assert state(home)["hello"]["failed"] == {}
    assert "failed" not in custody(home, "list").stdout
    r = custody(home, "update", "myagent")  # not "myagent: myagent is not installed"
    assert (r.returncode, r.stderr) == (5, "myagent is not installed\n")


def test_one_package_never_blocks_another(served, home, tmp_path):
    served.add_package("greet")
    for name in ("greet", "hello"):
        served.publish("1.0.0", name=name)
        assert custody(home, "install", name).returncode == 0
    greet_log, hello_log = tmp_path / "greet.jsonl", tmp_path / "hello.jsonl"
    set_check(home, "greet", greet_log, "--timeout", "20")
    set_check(home, "hello", hello_log)
    served.publish("1.1.0", name="greet", message="greet broken")  # sorted first
    served.publish("1.1.0", name="hello")

    r = custody(home, "update")
    assert r.returncode == 4, (r.stdout, r.stderr)
    # each line names its package once (issue 21, item 10: not "greet: greet 1.1.0 ...")
    assert "greet 1.1.0 failed its health check" in r.stderr and "greet: greet" not in r.stderr
    assert "updated hello 1.0.0 -> 1.1.0" in r.stdout
    # each package ran its own check, in its own new version
    assert json.loads(greet_log.read_text())["CUSTODY_PACKAGE"] == "greet"
    assert json.loads(hello_log.read_text())["cwd"].endswith("packages/hello/1.1.0")
    assert (state(home)["greet"]["current"], state(home)["hello"]["current"]) == \
        ("1.0.0", "1.1.0")
    r = custody(home, "update")
    assert r.returncode == 0
    assert "greet 1.1.0 is known bad" in r.stdout and "hello 1.1.0 is up to date" in r.stdout


class _Failing(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_error(503)

    def log_message(self, *args: object) -> None:
        pass


def test_an_outage_is_not_a_refusal(served, tmp_path):
    served.publish("1.0.0")
    dead = f"http://127.0.0.1:{free_port()}"
    failing = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    threading.Thread(target=failing.serve_forever, daemon=True).start()
    try:
        five = f"http://127.0.0.1:{failing.server_port}"
        home = tmp_path / "outage"
        r = custody(home, "init", "--url", dead, "--url", five, "--root", str(served.root),
                    "--inspections", "run")
        assert r.returncode == 0
        r = custody(home, "install", "hello")
        assert r.returncode == 3, r.stderr
        assert "the repository is unreachable, try later" in r.stderr
        assert dead in r.stderr and five in r.stderr and "HTTP 503" in r.stderr
        assert "refused" not in r.stderr
        # installed through the real server, then the repository goes away
        config = json.loads((home / "config.json").read_text())
        (home / "config.json").write_text(json.dumps({**config, "urls": [served.url]}))
        assert custody(home, "install", "hello").returncode == 0
        (home / "config.json").write_text(json.dumps({**config, "urls": [dead]}))
        before = installed_state(home)
        r = custody(home, "update")
        assert r.returncode == 3 and "hello: the repository is unreachable" in r.stderr
        r = custody(home, "verify", "hello")
        assert r.returncode == 3 and "unreachable" in r.stderr
        assert installed_state(home) == before
    finally:
        failing.shutdown()
        failing.server_close()


def test_usage_and_uninitialised_homes(tmp_path):
    home = tmp_path / "nothing"
    for args in (("list",), ("update",), ("install", "hello"), ("gc",)):
        r = custody(home, *args)
        assert r.returncode == 2, (args, r.stderr)
        assert "is not initialised; run 'custody init' first" in r.stderr
    r = custody(home, "install", "==1.0")
    assert r.returncode == 2 and "names no package" in r.stderr
    r = custody(home, "--version")
    assert r.returncode == 0 and r.stdout.startswith("custody, version ")
    help_text = custody(home, "--help").stdout
    assert "3    repository unreachable" in help_text and "130  interrupted" in help_text


#: Each version's incompressible payload: its tarball and its tree are each about this big,
#: so a third version kept anywhere shows in the sizes (4 MiB: 20 cost a minute of the suite).
PAYLOAD_MIB = 4


def test_disk_stays_bounded(served, home):
    """Ten updates of a big package: the cache holds what packages/ holds, no more."""
    def size(path: Path) -> int:
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

    for i in range(11):
        served.publish(f"1.{i}.0", payload_mib=PAYLOAD_MIB)
        assert custody(home, "update" if i else "install", "hello").returncode == 0
    assert sorted(p.name for p in (home / "cache/packages/hello").iterdir()
                  if p.is_dir()) == ["1.10.0", "1.9.0"]
    assert sorted(p.name for p in (home / "packages/hello").iterdir()
                  if not p.is_symlink()) == ["1.10.0", "1.9.0"]
    for kept in ("cache", "packages"):  # two versions (and metadata), not three
        assert 2 * PAYLOAD_MIB << 20 < size(home / kept) < (2 * PAYLOAD_MIB + 1) << 20, kept
    (home / "cache/packages/hello/0.0.1").mkdir()  # something an older custody left behind
    (home / "cache/packages/hello/0.0.1/junk.tar.gz").write_bytes(b"x" * 4096)
    killed = home / "cache/packages/hello/1.10.0/.download-abc123"  # a download killed
    killed.write_bytes(b"x" * 4096)                                 # before its rename
    os.utime(killed, (time.time() - 7200, time.time() - 7200))
    running = home / "cache/packages/hello/1.10.0/.download-def456"  # one under way
    running.write_bytes(b"x")
    r = custody(home, "gc")
    assert r.returncode == 0 and "removed 2 entries" in r.stdout
    assert not killed.exists() and running.exists()
    running.unlink()
    assert custody(home, "verify", "hello").returncode == 0
    r = custody(home, "remove", "hello")
    assert r.returncode == 0
    assert not (home / "cache/packages/hello").exists()
    assert size(home / "cache") < 1 << 20
