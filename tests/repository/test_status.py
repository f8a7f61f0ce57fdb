"""``custody-repo status``: hash bins in one line; ``--check DAYS`` for cron and CI."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from custody.keys_tooling.keys import generate_key, write_key_pair
from custody.repository.maintenance import status
from custody.repository.repo import CustodyRepository
from custody.repository.status import problems
from tests.helpers import BIN


def cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120,
                          check=False)


def test_status_of_a_1024_bin_repository(tmp_path: Path):
    repo = tmp_path / "repo"
    r = cli(BIN / "custody-repo", "init", repo, "--bins", "1024", "--no-password")
    assert r.returncode == 0, r.stderr
    r = cli(BIN / "custody-repo", "status", repo)
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 7, r.stdout  # six roles and the bins, not 1,031 lines
    assert lines[-1].startswith("bins         1024 roles, v1, earliest expiry ")
    assert lines[-1].endswith("1024/1024 signed at threshold")
    assert len(cli(BIN / "custody-repo", "status", repo, "--bins").stdout.splitlines()) == 1030
    r = cli(BIN / "custody-repo", "status", repo, "--check", "30")
    assert r.returncode == 0 and r.stderr == ""
    r = cli(BIN / "custody-repo", "status", repo, "--check", "400")
    assert r.returncode == 1
    assert "root expires at" in r.stderr and "within 400 days: hold a signing ceremony" \
        in r.stderr
    assert "timestamp" not in r.stderr  # online roles are the server's to re-sign

    rows = status(CustodyRepository(repo))
    later = datetime.now(UTC) + timedelta(days=40)  # nobody re-signed anything for 40 days
    found = problems(rows, [], 30, now=later)
    assert any(p.startswith("timestamp expired at") for p in found)
    assert any(p.startswith("releases expired at") for p in found)
    assert any(p.startswith("1024 bin roles expire soon and were not re-signed") for p in found)
    assert not any("root" in p for p in found)  # 325 days left, outside the 30-day window


def test_check_reports_a_pending_ceremony(tmp_path: Path):
    repo = tmp_path / "repo"
    assert cli(BIN / "custody-repo", "init", repo, "--no-password").returncode == 0
    write_key_pair(generate_key(), tmp_path / "root2", None)
    r = cli(BIN / "custody-keys", "rotate", "--repo", repo, "--role", "root", "--add",
            tmp_path / "root2.pub", "--threshold", "2", "--sign-with",
            repo / "offline-keys/root")
    assert r.returncode == 3, r.stderr
    r = cli(BIN / "custody-repo", "status", repo, "--check", "30")
    assert r.returncode == 1
    assert "custody-repo status: a signing ceremony for root is pending" in r.stderr


def test_bump_folds_the_bins_and_names_expired_offline_roles(tmp_path: Path):
    import time

    repo = tmp_path / "repo"
    r = cli(BIN / "custody-repo", "init", repo, "--bins", "16", "--no-password",
            "--expires", "root=0", "--expires", "targets=0", "--expires", "layouts=0")
    assert r.returncode == 0, r.stderr
    time.sleep(1.1)  # root, targets and layouts expired a moment after they were signed
    r = cli(BIN / "custody-repo", "bump", repo, "--force")
    assert r.returncode == 1
    assert r.stdout.strip() == "re-signed releases, 16 bins, snapshot, timestamp"
    assert len(r.stderr.strip().splitlines()) == 1
    assert "root expired at" in r.stderr and "targets expired at" in r.stderr
    assert "layouts expired at" in r.stderr and "signing ceremony re-signs them" in r.stderr


def test_healthz_is_unavailable_until_the_first_ceremony(tmp_path: Path, keydir: Path):
    from custody.repository.server import create_app

    repo = tmp_path / "repo"
    r = cli(BIN / "custody-repo", "init", repo, "--root-key", keydir / "root.pub",
            "--targets-key", keydir / "targets", "--layout-key", keydir / "owner")
    assert r.returncode == 3, r.stderr
    response = create_app(repo).test_client().get("/healthz")
    assert response.status_code == 503 and response.json["status"] == "unpublished"
