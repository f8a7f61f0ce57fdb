"""Health reports: opt-in, queued on disk while the server is away, never in the way."""

from __future__ import annotations

import json
import sqlite3

import pytest

from custody.client.config import ClientConfig
from custody.client.reports import MAX_QUEUED, _enqueue, queue_path, report
from custody.repository.storage import RepoPaths
from custody.repository.tokens import create_token
from tests.helpers import custody, free_port

pytestmark = pytest.mark.slow


def rows(served) -> list[tuple]:
    with sqlite3.connect(served.repo_dir / "private/reports.sqlite") as db:
        return db.execute("SELECT package, from_version, to_version, result, exit_code, "
                          "client_id FROM reports ORDER BY id").fetchall()


def test_reports_are_sent_queued_and_retried(served, tmp_path):
    _, token = create_token(RepoPaths(served.repo_dir), "fleet", "report")
    served.publish("1.0.0")
    home = tmp_path / "home"
    r = custody(home, "init", "--url", served.url, "--root", str(served.root), "--inspections",
                "run", "--report-url", served.url, "--report-token", token)
    assert r.returncode == 0, r.stderr
    client_id = ClientConfig.load(home).client_id
    assert custody(home, "install", "hello").returncode == 0
    assert rows(served) == [("hello", None, "1.0.0", "installed", 0, client_id)]

    config = json.loads((home / "config.json").read_text())
    (home / "config.json").write_text(json.dumps(
        {**config, "report_url": f"http://127.0.0.1:{free_port()}"}))  # the server is away
    served.publish("1.1.0")
    r = custody(home, "update")
    assert r.returncode == 0 and "updated hello 1.0.0 -> 1.1.0" in r.stdout  # unaffected
    assert r.stderr == ""
    queued = queue_path(home).read_text().splitlines()
    assert [json.loads(line)["result"] for line in queued] == ["updated"]

    (home / "config.json").write_text(json.dumps(config))  # back: the next command sends it
    assert custody(home, "update").returncode == 0
    assert queue_path(home).read_text().strip() == ""
    assert rows(served)[-1] == ("hello", "1.0.0", "1.1.0", "updated", 0, client_id)

    r = custody(home, "install", "nothing")  # refusals are reported too
    assert r.returncode == 5
    assert rows(served)[-1][:4] == ("nothing", None, None, "not-found")


def test_the_queue_is_bounded(tmp_path):
    config = ClientConfig(client_id="c")
    _enqueue(tmp_path, [report(config, "p", "updated", 0, "1", str(i)) for i in range(700)])
    lines = queue_path(tmp_path).read_text().splitlines()
    assert len(lines) == MAX_QUEUED and json.loads(lines[-1])["to"] == "699"


def test_a_report_token_can_do_nothing_else(served):
    import requests

    _, token = create_token(RepoPaths(served.repo_dir), "fleet", "report")
    auth = {"Authorization": f"Bearer {token}"}
    r = requests.post(f"{served.url}/api/v1/rollouts", json={
        "package": "hello", "channel": "stable", "action": "pause"}, headers=auth, timeout=10)
    assert r.status_code == 401
    r = requests.post(f"{served.url}/api/v1/releases", data={"name": "x", "version": "1"},
                      headers=auth, timeout=10)
    assert r.status_code == 401
    r = requests.post(f"{served.url}/api/v1/reports", json={"package": "hello",
                      "result": "bogus", "client_id": "c"}, headers=auth, timeout=10)
    assert r.status_code == 400 and "result" in r.json()["error"]
