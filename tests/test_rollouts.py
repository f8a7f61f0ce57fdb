"""Staged rollouts across a fleet of client homes on 127.0.0.1, and a bad release halted by
its own health reports (issue 12)."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import pytest

from custody.client.config import ClientConfig, HealthCheck
from custody.client.packages import PackageManager, init_home
from custody.formats.index import rollout_bucket
from custody.repository.storage import RepoPaths
from custody.repository.tokens import create_token
from tests.helpers import BIN, custody

pytestmark = pytest.mark.slow


def repo_cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "custody-repo"), *[str(a) for a in args]],
                          capture_output=True, text=True, timeout=120, check=False)


def fleet(served, tmp_path: Path, size: int) -> list[Path]:
    homes = []
    for i in range(size):
        home = tmp_path / f"host{i:03d}"
        init_home(home, [served.url], served.root, [], None, "run")
        homes.append(home)
    return homes


def rolling_out(served, tmp_path: Path, size: int, percent: str) -> list[Path]:
    """``size`` hosts on hello 1.0.0, and 2.0.0 rolling out on stable to ``percent``."""
    served.publish("1.0.0")
    homes = fleet(served, tmp_path, size)
    for home in homes:
        PackageManager(home).install("hello")
    served.publish("2.0.0", channel=None)
    r = repo_cli("rollout", "start", served.repo_dir, "hello", "stable", "2.0.0",
                 "--percent", percent)
    assert r.returncode == 0 and f"2.0.0 at {percent}% (active)" in r.stdout, r.stderr
    return homes


def current(home: Path) -> str:
    return json.loads((home / "state.json").read_text())["packages"]["hello"]["current"]


def test_a_rollout_from_5_to_100_percent_moves_exactly_its_buckets(served, tmp_path):
    homes = rolling_out(served, tmp_path, 60, "5")
    buckets = {home: rollout_bucket(ClientConfig.load(home).client_id, "hello")
               for home in homes}
    moved: set[Path] = set()
    for percent in (5, 25, 60, 100):
        if percent != 5:
            assert repo_cli("rollout", "raise", served.repo_dir, "hello", "stable",
                            percent).returncode == 0
        for home in homes:
            PackageManager(home).update()
        now = {home for home in homes if current(home) == "2.0.0"}
        assert now == {home for home, b in buckets.items() if b < percent}, percent
        assert moved <= now  # a raised percentage only adds hosts
        moved = now
    assert 0 < len({h for h, b in buckets.items() if b < 25}) < len(homes)

    r = repo_cli("rollout", "complete", served.repo_dir, "hello", "stable")
    assert r.returncode == 0 and "hello stable -> 2.0.0" in r.stdout
    newcomer = tmp_path / "newcomer"
    init_home(newcomer, [served.url], served.root, [], None, "run")
    assert PackageManager(newcomer).install("hello").version == "2.0.0"


def test_pausing_holds_hosts_and_never_moves_them_back(served, tmp_path):
    homes = rolling_out(served, tmp_path, 12, "50")
    for home in homes:
        PackageManager(home).update()
    moved = {home for home in homes if current(home) == "2.0.0"}
    assert repo_cli("rollout", "pause", served.repo_dir, "hello", "stable").returncode == 0
    for home in homes:  # no refusal, no move: the moved stay, the others wait
        results = PackageManager(home).update()
        assert all(r.error is None for r in results), [r.error for r in results]
    assert {home for home in homes if current(home) == "2.0.0"} == moved
    r = repo_cli("rollout", "raise", served.repo_dir, "hello", "stable", "10")
    assert r.returncode == 1 and "pause it instead" in r.stderr


def test_a_bad_release_halts_its_own_rollout(served, tmp_path):
    """25 hosts report through the real server; the failure rate pauses the rollout."""
    _, report_token = create_token(RepoPaths(served.repo_dir), "fleet", "report")
    served.publish("1.0.0")
    check = tmp_path / "check.py"
    check.write_text("import sys; sys.exit('broken' in open('src/hello.py').read())\n")
    homes = fleet(served, tmp_path, 25)
    for home in homes:
        config = ClientConfig.load(home)
        config.report_url, config.report_token = served.url, report_token
        config.health_checks["hello"] = HealthCheck(["python3", str(check)], 30)
        config.save(home)
        PackageManager(home).install("hello")
    served.publish("2.0.0", channel=None, message="hello broken")
    r = repo_cli("rollout", "start", served.repo_dir, "hello", "stable", "2.0.0", "--percent",
                 "100", "--max-failure-rate", "0.05", "--min-reports", "20")
    assert r.returncode == 0, r.stderr

    codes: dict[Path, int] = {}

    def update(batch: list[Path]) -> None:
        for home in batch:
            codes[home] = custody(home, "update").returncode

    threads = [threading.Thread(target=update, args=(homes[i::3],)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(current(home) == "1.0.0" for home in homes)  # every one rolled back
    assert set(codes.values()) <= {0, 4}
    r = repo_cli("rollout", "status", served.repo_dir, "hello", "stable")
    assert r.returncode == 0, r.stderr
    assert "hello stable: 1.0.0 -> 2.0.0 at 100% (paused: halted: " in r.stdout
    assert "reporting hosts on 2.0.0:" in r.stdout
    assert "x unhealthy: exit code 1" in r.stdout
    halted_after = sum(code == 4 for code in codes.values())
    assert 20 <= halted_after <= 25  # the hosts after the halt did not even try
    late = tmp_path / "late"  # a host that polls after the halt stays where it is
    init_home(late, [served.url], served.root, [], None, "run")
    assert PackageManager(late).install("hello").version == "1.0.0"
