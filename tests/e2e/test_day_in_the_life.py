"""A day in the life of a fleet: real agents under ``custody run`` while the repository lives.

The repository's root, targets and owner keys exist only in ``offline/``; every
change they sign is a ceremony (export, sign, import). Eight (``CUSTODY_SOAK_HOSTS``)
agents run ``tests/e2e/fleet_agent.py`` under ``custody run``, polling every 0.3 s,
and journal every start, probation and unit of work. While they run: releases
land, a bad release fails the self-test of half the hosts and its rollout
halts itself on their reports, the server restarts behind nginx (the
shipped deploy/nginx-custody.conf, which the hosts reach it through),
the repository is unreachable for a while, the timestamp key rotates through a
root ceremony, a functionary is revoked (a release by that key is refused), and
gc runs. ``make soak`` repeats the release rounds (``CUSTODY_SOAK_ROUNDS``).

The bad release goes out as a rollout with a maximum failure rate: the hosts
report how each probation ended, and the server pauses the rollout itself.

Asserted throughout: every host converges to the newest release it may run
within a bounded number of its own polls; no host ever works in a version
that was not published (TUF, in-toto) or that failed its self-test there; at
the end every agent stops on SIGTERM with 143, no process is left, and each
home passes ``custody verify`` and the repository ``custody-repo status --check``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import BIN, free_port, running_nginx, running_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

HOSTS = int(os.environ.get("CUSTODY_SOAK_HOSTS", "8"))
ROUNDS = int(os.environ.get("CUSTODY_SOAK_ROUNDS", "1"))
POLL_SECONDS = 0.3
#: Polls a host may take to reach a release after it lands: the next poll sees it
#: (every poll is a fresh refresh), unless the host is busy restarting or verifying.
MAX_POLLS = 30
#: Wall-clock bound on one convergence, for a loaded 2-core machine.
CONVERGE_SECONDS = 120
AGENT = Path(__file__).with_name("fleet_agent.py")
MARKER = "CUSTODY_FLEET_TEST"

LAYOUT = """\
[keys]
packager = "{functionary}.pub"
[[steps]]
name = "package"
functionaries = ["packager"]
expected_command = ["tar", "-czf", "agent.tar.gz", "-C", "build", "."]
products = ["CREATE {{artifact}}", "DISALLOW *"]
"""


class Day:
    """The repository side of the day: its tools, run as an operator would."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.repo = work / "repo"
        self.env = {**os.environ, "CUSTODY_KEY_PASSWORD": "offline machine", MARKER: str(work)}
        self.published: list[str] = []

    def run(self, *args: str | Path, expect: int = 0) -> str:
        tool, *rest = args
        result = subprocess.run([str(BIN / str(tool)), *map(str, rest)], cwd=self.work,
                                env=self.env, capture_output=True, text=True, timeout=120,
                                check=False)
        assert result.returncode == expect, (args, result.returncode, result.stdout,
                                             result.stderr)
        return result.stdout + result.stderr

    def ceremony(self, role: str, key: str, expect: int = 0) -> None:
        """Export the pending role, sign it with the offline key, import it (3: more to sign)."""
        self.run("custody-keys", "export", "--repo", self.repo, "--role", role, "-o",
                 f"{role}.json")
        self.run("custody-keys", "sign", f"{role}.json", "--key", f"offline/{key}")
        self.run("custody-keys", "import", "--repo", self.repo, f"{role}.json", expect=expect)

    def layout(self, functionary: str, first: bool = False) -> None:
        """The owners' layout naming ``functionary``, signed and published offline.

        A later layout revokes the functionary before: ``--yes`` accepts that
        clients refuse the releases it built until the next one lands.
        """
        shutil.copy(self.work / "offline" / f"{functionary}.pub", self.work)
        (self.work / "agent.toml").write_text(LAYOUT.format(functionary=functionary))
        self.run("custody-intoto", "layout", "new", "agent.toml", "-k", "offline/owner",
                 "-o", "agent.layout", *(() if first else ("--force",)))  # replaces the last
        self.run("custody-repo", "layout", "add", self.repo, "agent.layout", "--key",
                 "offline/owner.pub", "--new" if first else "--yes", expect=3)
        self.ceremony("layouts", "owner")

    def release(self, version: str, functionary: str = "bob", fragile: bool = False,
                expect: int = 0, channel: bool = True) -> None:
        """``functionary`` packs the agent; the repository verifies in-toto and publishes."""
        build = self.work / "build"
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir()
        shutil.copy(AGENT, build / "agent.py")
        (build / "VERSION").write_text(version + "\n")
        if fragile:
            (build / "FRAGILE").write_text("this release fails on fragile hosts\n")
        links = f"links/{version}"
        self.run("custody-intoto", "run", "-n", "package", "--signing-key",
                 f"offline/{functionary}", "-p", "agent.tar.gz", "-d", links, "--",
                 "tar", "-czf", "agent.tar.gz", "-C", "build", ".")
        self.run("custody-repo", "publish", self.repo, "agent.tar.gz", "--name", "agent",
                 "--version", version, "--layout", "agent.layout", "--links", links,
                 *([] if channel else ["--no-channel"]), expect=expect)
        if expect == 0:
            self.published.append(version)

    def timestamp_keyid(self) -> str:
        status = self.run("custody-repo", "status", self.repo)
        match = re.search(r"^timestamp .* keys ([0-9a-f]+)", status, re.MULTILINE)
        assert match, status
        return match.group(1)


class Fleet:
    """The hosts: a client home each, and its agent under ``custody run``."""

    def __init__(self, work: Path, day: Day, url: str, report_token: str) -> None:
        self.work, self.day, self.url, self.report_token = work, day, url, report_token
        self.journal = work / "journal.log"
        self.journal.touch()
        self.homes = [work / f"host{i}" for i in range(HOSTS)]
        self.fragile = set(range(0, HOSTS, 2))
        self.agents: list[subprocess.Popen[bytes]] = []

    def custody(self, home: Path, *args: str, expect: int = 0) -> str:
        result = subprocess.run([str(BIN / "custody"), "--home", str(home), *args],
                                env=self.day.env, capture_output=True, text=True, timeout=120,
                                check=False)
        assert result.returncode == expect, (home.name, args, result.stdout, result.stderr)
        return result.stdout + result.stderr

    def start(self) -> None:
        root = self.day.repo / "public/metadata/1.root.json"
        for i, home in enumerate(self.homes):
            self.custody(home, "init", "--url", self.url, "--root", str(root),
                         "--report-url", self.url, "--report-token", self.report_token)
            self.custody(home, "install", "agent")
            if i in self.fragile:
                (home / "fragile").write_text("the bad release fails here\n")
            env = {**self.day.env, "FLEET_HOST": str(i), "FLEET_JOURNAL": str(self.journal),
                   "MYAGENT_POLL_SECONDS": str(POLL_SECONDS)}
            log = (self.work / f"host{i}.log").open("wb")
            self.agents.append(subprocess.Popen(
                [str(BIN / "custody"), "--home", str(home), "run", "agent", "--",
                 sys.executable, "agent.py"], env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))

    def entries(self) -> list[tuple[int, str, str]]:
        return [(int(h), v, s) for h, v, s in
                (line.split() for line in self.journal.read_text().splitlines())]

    def mark(self) -> int:
        """Where the journal stands: an event's polls are counted from here."""
        return len(self.entries())

    def converge(self, wanted: dict[int, str], event: str, since: int) -> int:
        """Wait until each host works in its wanted version; the most polls any host took.

        A poll is one unit of work in the old version after ``since``; the
        first unit of work in the wanted version counts as the last poll.
        """
        start = since
        deadline = time.monotonic() + CONVERGE_SECONDS
        while True:
            entries = self.entries()[start:]
            polls = {i: 0 for i in wanted}
            reached: dict[int, int] = {}
            for host, version, state in entries:
                if state == "live" and host not in reached:
                    polls[host] += 1
                    if version == wanted[host]:
                        reached[host] = polls[host]
            if len(reached) == len(wanted):
                worst = max(reached.values())
                assert worst <= MAX_POLLS, (event, reached)
                return worst
            for i, agent in enumerate(self.agents):
                assert agent.poll() is None, (event, i, (self.work / f"host{i}.log").read_text())
            assert time.monotonic() < deadline, (
                event, {i: v for i, v in wanted.items() if i not in reached},
                entries[-20:])
            time.sleep(0.2)

    def tried(self, version: str, hosts: set[int], since: int) -> None:
        """Wait until each of ``hosts`` has started ``version`` on probation."""
        deadline = time.monotonic() + CONVERGE_SECONDS
        while not hosts <= {h for h, v, s in self.entries()[since:]
                            if v == version and s == "probation"}:
            assert time.monotonic() < deadline, (version, self.entries()[since:][-20:])
            time.sleep(0.2)

    def halted(self, version: str) -> None:
        """Wait until the rollout of ``version`` has paused itself on the hosts' reports."""
        deadline = time.monotonic() + CONVERGE_SECONDS
        while True:
            status = self.day.run("custody-repo", "rollout", "status", self.day.repo, "agent",
                                  "stable")
            if "paused" in status:
                assert "self-test failed" in status, status
                return
            assert time.monotonic() < deadline, status
            time.sleep(0.5)

    def everywhere(self, version: str) -> dict[int, str]:
        return dict.fromkeys(range(HOSTS), version)

    def stop(self) -> list[int]:
        for agent in self.agents:
            with contextlib.suppress(ProcessLookupError):
                os.kill(agent.pid, signal.SIGTERM)
        return [agent.wait(timeout=60) for agent in self.agents]


def left_behind(work: Path) -> list[int]:
    """Live processes started by this test (they carry its marker)."""
    needle = f"{MARKER}={work}\0".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if needle in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
    return found


@contextlib.contextmanager
def cleanup(work: Path) -> Iterator[None]:
    try:
        yield
    finally:
        for pid in left_behind(work):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_day_in_the_life_of_a_fleet(tmp_path):
    day = Day(tmp_path)
    for key in ("root", "targets", "owner", "bob", "carol"):
        day.run("custody-keys", "generate", f"offline/{key}")

    # Day one: the offline keys never leave offline/; the first version is a ceremony.
    day.run("custody-repo", "init", day.repo, "--bins", "16", "--root-key", "offline/root.pub",
            "--targets-key", "offline/targets.pub", "--layout-key", "offline/owner.pub",
            expect=3)
    day.ceremony("root", "root", expect=3)
    day.ceremony("targets", "targets", expect=3)
    day.ceremony("layouts", "owner")
    day.layout("bob", first=True)
    day.release("1.0.0")

    port = free_port()
    polls: dict[str, int] = {}
    front = contextlib.ExitStack()  # nginx in front, as deploy.md runs it: it outlives
    with cleanup(tmp_path), front:  # the server's stop below, answering 502 meanwhile
        with running_server(day.repo, port=port) as url:
            nginx = front.enter_context(running_nginx(url, tmp_path / "nginx"))
            token = day.run("custody-repo", "token", "create", day.repo, "fleet", "--scope",
                            "report").splitlines()[0]
            fleet = Fleet(tmp_path, day, nginx, token)
            fleet.start()
            polls["start"] = fleet.converge(fleet.everywhere("1.0.0"), "start", 0)

            # Releases land every few seconds.
            minor = 0
            for _ in range(ROUNDS):
                for landing in range(3):
                    minor += 1
                    since = fleet.mark()  # the last release of the round is the one to reach
                    day.release(f"1.{minor}.0")
                    if landing < 2:
                        time.sleep(2)
                polls[f"1.{minor}.0"] = fleet.converge(fleet.everywhere(f"1.{minor}.0"),
                                                      f"releases up to 1.{minor}.0", since)

            # A bad release goes out as a rollout to every host: its self-test fails on
            # the fragile half, which reports it and stays where it was (the version is
            # known bad there), and the rollout pauses itself on those reports.
            good, minor = f"1.{minor}.0", minor + 1
            bad = f"1.{minor}.0"
            since = fleet.mark()
            day.release(bad, fragile=True, channel=False)
            day.run("custody-repo", "rollout", "start", day.repo, "agent", "stable", bad,
                    "--percent", "100", "--max-failure-rate", "0.2", "--min-reports", "2")
            fleet.tried(bad, fleet.fragile, since)  # tried on probation, refused by its self-test
            fleet.halted(bad)
            for i in fleet.fragile:
                listed = json.loads(fleet.custody(fleet.homes[i], "list", "--json"))["agent"]
                assert (listed["current"], bad in listed["failed"]) == (good, True), listed
            # Hosts that took it before the pause keep it (healthy there); the rest stay.
            day.run("custody-repo", "rollout", "abort", day.repo, "agent", "stable")
            minor += 1
            since = fleet.mark()
            day.release(f"1.{minor}.0")
            polls["after bad"] = fleet.converge(fleet.everywhere(f"1.{minor}.0"), "after bad",
                                                since)

        # The server stops; a release lands while the repository is unreachable.
        time.sleep(2)
        minor += 1
        day.release(f"1.{minor}.0")
        time.sleep(2)
        with running_server(day.repo, port=port):
            # Counted from the server's return: while it was away, every poll failed.
            polls["outage"] = fleet.converge(fleet.everywhere(f"1.{minor}.0"), "outage",
                                             fleet.mark())

            # The timestamp key rotates through a root ceremony, the root key offline.
            old = day.timestamp_keyid()
            day.run("custody-keys", "generate", "ts-new", "--no-password")
            day.run("custody-keys", "rotate", "--repo", day.repo, "--role", "timestamp",
                    "--add", "ts-new", "--remove", old, expect=3)
            day.ceremony("root", "root")
            assert day.timestamp_keyid() != old
            minor += 1
            since = fleet.mark()  # counted from the release after each event, as all are
            day.release(f"1.{minor}.0")
            polls["rotation"] = fleet.converge(fleet.everywhere(f"1.{minor}.0"), "rotation",
                                               since)

            # bob is revoked: the new layout names carol; bob's next release is refused.
            day.layout("carol")
            day.release(f"1.{minor + 1}.0", expect=1)
            minor += 2
            since = fleet.mark()
            day.release(f"1.{minor}.0", functionary="carol")
            polls["revocation"] = fleet.converge(fleet.everywhere(f"1.{minor}.0"), "revocation",
                                                 since)

            # gc on the repository and on every host; the next release still lands.
            # No retention window: files of snapshots that were current a moment
            # ago go, and a host mid-refresh may miss one: that poll fails, the next works.
            removed = day.run("custody-repo", "gc", day.repo, "--keep", "1", "--retention", "0")
            assert int(re.search(r"removed (\d+) file", removed).group(1)) > 0, removed  # type: ignore[union-attr]
            for home in fleet.homes:
                fleet.custody(home, "gc")
            minor += 1
            since = fleet.mark()
            day.release(f"1.{minor}.0", functionary="carol")
            polls["gc"] = fleet.converge(fleet.everywhere(f"1.{minor}.0"), "gc", since)

            assert fleet.stop() == [143] * HOSTS  # SIGTERM, as systemctl stop sends
            # Each home and the repository are sound (verify refreshes: the server runs).
            for home in fleet.homes:
                fleet.custody(home, "verify", "agent")
            day.run("custody-repo", "status", day.repo, "--check", "30")
        assert left_behind(tmp_path) == []

    # Nothing ran that did not pass TUF, in-toto and its self-test on that host.
    for host, version, state in fleet.entries():
        assert version in day.published, (host, version)
        if state == "live":
            assert not (version == bad and host in fleet.fragile), (host, version)
    # The fleet reached the repository through nginx only: metadata, artifacts, reports.
    through = (tmp_path / "nginx/logs/access.log").read_text()
    for path in ("/metadata/timestamp.json", "/targets/packages/agent/", "/api/v1/reports"):
        assert path in through, path
    print("most polls to converge, per event:", polls)
