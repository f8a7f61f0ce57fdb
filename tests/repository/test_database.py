"""Fleet state on a real PostgreSQL server (issue 25): reports and tokens, shared by publishers.

SQLite in ``private/`` stays the default; ``custody-repo database set``
moves the reports and tokens to a server, and every repository directory
configured with it (a second publisher on another machine) shares them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import requests

from custody.repository.database import Database
from custody.repository.reports import Report, ReportStore
from custody.repository.storage import RepoPaths
from custody.repository.tokens import check_token, create_token, list_tokens
from tests.helpers import BIN, free_port, make_repo, running_postgres, running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def postgres():
    with running_postgres() as url:
        yield url


def repo_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "custody-repo"), *args], capture_output=True, text=True,
                          timeout=120, check=False)


def report(client: str, result: str = "updated") -> Report:
    return Report("hello", "1.0.0", "2.0.0", result, 0 if result == "updated" else 4, "", client)


def test_moving_to_postgresql_carries_tokens_and_reports(tmp_path, keydir, postgres):
    import psycopg

    with psycopg.connect(postgres, autocommit=True) as db:
        db.execute("CREATE DATABASE movetest")
    url = postgres.rsplit("/", 1)[0] + "/movetest"
    repo = tmp_path / "repo"
    make_repo(repo, keydir)
    paths = RepoPaths(repo)
    _, ci = create_token(paths, "ci")
    local = ReportStore.open(paths)
    local.add([report(f"host{i}") for i in range(5)])
    local.close()
    r = repo_cli("database", "set", str(repo), url)
    assert r.returncode == 0, r.stderr
    assert "1 token(s) and 5 report(s) copied" in r.stdout
    assert json.loads(paths.config.read_text())["database"] == url
    assert repo_cli("database", "show", str(repo)).stdout.strip() == url
    assert check_token(paths, ci) == "ci"  # read from the server now
    _, fleet = create_token(paths, "fleet", "report")
    assert check_token(paths, fleet, "report") == "fleet"
    with psycopg.connect(url) as db:
        assert db.execute("SELECT COUNT(*) FROM reports").fetchone()[0] == 5
        names = {row[0] for row in db.execute("SELECT name FROM tokens").fetchall()}
    assert names == {"ci", "fleet"}
    # the tokens live on the server only: no local copy is left to revive a revoked one
    assert not paths.tokens.exists()
    # a second move (the same server again) copies nothing twice
    r = repo_cli("database", "set", str(repo), url)
    assert r.returncode == 0 and "0 token(s) and 0 report(s) copied" in r.stdout, r.stdout


def test_two_publishers_share_reports_and_tokens(tmp_path, keydir, postgres):
    import psycopg

    with psycopg.connect(postgres, autocommit=True) as db:
        db.execute("CREATE DATABASE shared")
    url = postgres.rsplit("/", 1)[0] + "/shared"
    first, second = tmp_path / "first", tmp_path / "second"
    for directory in (first, second):
        make_repo(directory, keydir)
        r = repo_cli("database", "set", str(directory), url)
        assert r.returncode == 0, r.stderr
    _, token = create_token(RepoPaths(first), "fleet", "report")  # made on one machine
    with running_server(second) as served:  # accepted by the other
        for i in range(3):
            answer = requests.post(f"{served}/api/v1/reports", timeout=10, json=[{
                "package": "hello", "from": "1.0.0", "to": "2.0.0", "result": "unhealthy",
                "exit_code": 4, "reason": "check failed", "client_id": f"h{i}"}],
                headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 202, answer.text
    store = ReportStore.open(RepoPaths(first))  # and seen from the first
    try:
        summary = store.summary("hello", "2.0.0")
        assert summary.hosts == 3 and summary.failed == 3
        assert store.by_result() == {"unhealthy": 3}
    finally:
        store.close()
    assert [t["name"] for t in list_tokens(RepoPaths(second)).values()] == ["fleet"]


def test_an_unreachable_or_wrong_database_changes_nothing(tmp_path, keydir):
    repo = tmp_path / "repo"
    make_repo(repo, keydir)
    before = RepoPaths(repo).config.read_text()
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/custody"
    r = repo_cli("database", "set", str(repo), dead)
    assert r.returncode == 1, r.stderr
    said = r.stderr.strip().splitlines()
    assert len(said) == 1 and said[0].startswith(f"custody-repo: cannot reach the database "
                                                 f"{dead}"), said
    r = repo_cli("database", "set", str(repo), "mysql://root:secret@db/custody")
    assert r.returncode == 1 and "is not a postgresql:// URL" in r.stderr
    assert "secret" not in r.stderr  # a password never reaches a message
    assert RepoPaths(repo).config.read_text() == before
    assert repo_cli("database", "show", str(repo)).stdout.startswith("sqlite: ")


def test_sqlite_stays_the_default(tmp_path, keydir):
    repo = tmp_path / "repo"
    make_repo(repo, keydir)
    store = ReportStore.open(RepoPaths(repo))
    try:
        assert store._db.kind == "sqlite"
        store.add([report("a"), report("b", "unhealthy")])
        assert store.by_result() == {"updated": 1, "unhealthy": 1}
    finally:
        store.close()
    assert (repo / "private/reports.sqlite").exists()
    assert Database.open(repo / "private", None).kind == "sqlite"


def test_a_server_restart_under_a_running_serve_loses_no_report(tmp_path, keydir):
    """Workers keep their connection between requests; a restarted server is reconnected."""
    import glob
    import time

    repo = tmp_path / "repo"
    make_repo(repo, keydir)
    with running_postgres() as url:
        assert repo_cli("database", "set", str(repo), url).returncode == 0
        _, token = create_token(RepoPaths(repo), "fleet", "report")
        port = url.rsplit(":", 1)[1].split("/")[0]
        data = next(d for d in glob.glob("/tmp/custody-pg-*/data")  # this cluster's
                    if Path(d, "postmaster.pid").read_text().splitlines()[3] == port)
        pg_ctl = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[-1]
        with running_server(repo, workers=1) as served:
            def post(client: str) -> int:
                return requests.post(f"{served}/api/v1/reports", timeout=30, json={
                    "package": "hello", "to": "2.0.0", "result": "updated",
                    "client_id": client}, headers={"Authorization": f"Bearer {token}"}
                ).status_code

            assert post("before") == 202
            subprocess.run(["runuser", "-u", "postgres", "--", pg_ctl, "-D", data, "-l",
                            f"{data}/../log", "-m", "fast", "-w", "restart"], check=True,
                           capture_output=True, timeout=60)
            time.sleep(0.5)
            assert [post(f"after{i}") for i in range(3)] == [202, 202, 202]
        store = ReportStore.open(RepoPaths(repo))
        try:
            assert store.count() == 4
        finally:
            store.close()


def test_a_token_revoked_on_the_server_stays_revoked_through_the_next_moves(
        tmp_path, keydir, postgres):
    """Moving on to another server copies the current server's tokens, never an older copy;
    with that server lost, a restored backup's copy is used, and nothing else is."""
    import psycopg

    from custody.repository.tokens import revoke_token

    with psycopg.connect(postgres, autocommit=True) as db:
        for name in ("firstserver", "nextserver", "thirdserver"):
            db.execute(f"CREATE DATABASE {name}")
    first, nxt, third = (postgres.rsplit("/", 1)[0] + f"/{n}"
                         for n in ("firstserver", "nextserver", "thirdserver"))
    repo = tmp_path / "repo"
    make_repo(repo, keydir)
    paths = RepoPaths(repo)
    fleet_id, fleet = create_token(paths, "fleet", "report")
    assert repo_cli("database", "set", str(repo), first).returncode == 0
    revoke_token(paths, fleet_id)  # on the server
    _, ci = create_token(paths, "ci")
    r = repo_cli("database", "set", str(repo), nxt)
    assert r.returncode == 0 and "1 token(s)" in r.stdout, r.stdout + r.stderr
    assert check_token(paths, fleet, "report") is None  # still revoked
    assert check_token(paths, ci) == "ci"

    # the server is lost: a backup taken before, restored, brings its copy of the tokens
    archive = tmp_path / "repo.tar.gz"
    assert repo_cli("backup", str(repo), str(archive)).returncode == 0
    restored = tmp_path / "restored"
    assert repo_cli("restore", str(archive), str(restored)).returncode == 0
    config = json.loads((restored / "private/config.json").read_text())
    config["database"] = "postgresql://postgres@127.0.0.1:9/lost"  # nobody listens there
    (restored / "private/config.json").write_text(json.dumps(config))
    r = repo_cli("database", "set", str(restored), third)
    assert r.returncode == 0 and "1 token(s)" in r.stdout, r.stdout + r.stderr
    assert check_token(RepoPaths(restored), ci) == "ci"
    assert check_token(RepoPaths(restored), fleet, "report") is None
    # without such a copy, a lost server is a refusal that says what to do
    (restored / "private/fleet-backup.json").unlink()
    config = json.loads((restored / "private/config.json").read_text())
    config["database"] = "postgresql://postgres@127.0.0.1:9/lost"
    (restored / "private/config.json").write_text(json.dumps(config))
    r = repo_cli("database", "set", str(restored), first)
    assert r.returncode == 1 and "restore the newest backup" in r.stderr, r.stderr
    assert json.loads((restored / "private/config.json").read_text())["database"].endswith(
        "/lost")
