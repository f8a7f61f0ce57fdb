"""The operator's dashboard in a real headless browser (Debian's Chromium, driven by Playwright)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import requests

from custody.repository.storage import RepoPaths
from custody.repository.tokens import create_token
from tests.helpers import BIN, debian_tool, running_server

pytestmark = pytest.mark.slow
SCREENSHOT = os.environ.get("CUSTODY_DASHBOARD_SCREENSHOT")  # docs/dashboard.png, by hand


def _chromium() -> str:
    return debian_tool("chromium")


def test_an_operator_signs_in_and_reads_every_panel(served, tmp_path):
    from playwright.sync_api import sync_playwright

    served.publish("1.0.0")
    served.publish("2.0.0", channel=None)
    r = subprocess.run([str(BIN / "custody-repo"), "rollout", "start", str(served.repo_dir),
                        "hello", "stable", "2.0.0", "--percent", "25", "--max-failure-rate",
                        "0.1"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    _, operator = create_token(RepoPaths(served.repo_dir), "ops", "operator")
    _, reporter = create_token(RepoPaths(served.repo_dir), "fleet", "report")
    answer = requests.post(f"{served.url}/api/v1/reports", timeout=10, json=[
        {"package": "hello", "from": "1.0.0", "to": "2.0.0", "result": "updated",
         "exit_code": 0, "client_id": "aaaa1111"},
        {"package": "hello", "from": "1.0.0", "result": "refused", "exit_code": 1,
         "client_id": "bbbb2222", "reason": "in-toto refused hello 2.0.0: step 'tag' "
                                            "requires 1 link(s)"}],
        headers={"Authorization": f"Bearer {reporter}"})
    assert answer.status_code == 202, answer.text

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(f"{served.url}/ui")
        assert page.url.endswith("/ui/login")  # nobody reads the dashboard without a token
        page.fill("#token", "cst_not-an-operator")
        page.click("button[type=submit]")
        assert "That is not an operator token." in page.inner_text("#error")
        page.fill("#token", operator)
        page.click("button[type=submit]")
        page.wait_for_selector("#roles")
        roles = page.inner_text("#roles")
        for role in ("root", "targets", "snapshot", "timestamp", "layouts", "releases",
                     "bins (4)"):
            assert role in roles
        assert "1/1:" in roles and "days" in roles
        assert "none" in page.inner_text("#pending")
        packages = page.inner_text("#packages")
        assert "hello" in packages and "stable → 1.0.0" in packages and "2.0.0" in packages
        rollouts = page.inner_text("#rollouts")
        assert "1.0.0 → 2.0.0" in rollouts and "25.0%" in rollouts and "active" in rollouts
        assert "0 (0%)" in rollouts  # one host reported, healthy
        assert "step 'tag' requires 1 link(s)" in page.inner_text("#refusals")
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        if SCREENSHOT:
            shutil.copy(tmp_path / "dashboard.png", SCREENSHOT)
        assert (tmp_path / "dashboard.png").stat().st_size > 10_000
        page.click("text=Sign out")
        page.goto(f"{served.url}/ui")
        assert page.url.endswith("/ui/login")
        browser.close()


def test_the_dashboard_needs_an_operator_token(served):
    _, publisher = create_token(RepoPaths(served.repo_dir), "ci")  # a publish token is not one
    with requests.Session() as session:
        assert session.get(f"{served.url}/ui", timeout=10,
                           allow_redirects=False).status_code == 302
        r = session.post(f"{served.url}/ui/login", data={"token": publisher}, timeout=10)
        assert r.status_code == 401



def test_prometheus_metrics_under_gunicorn(served, tmp_path):
    """Scraped from the real server: state read from disk, API counters across workers."""
    served.publish("1.0.0")
    served.publish("2.0.0", channel=None)
    assert subprocess.run([str(BIN / "custody-repo"), "rollout", "start",
                           str(served.repo_dir), "hello", "stable", "2.0.0", "--percent",
                           "5"], capture_output=True, check=False).returncode == 0
    _, reporter = create_token(RepoPaths(served.repo_dir), "fleet", "report")
    with running_server(served.repo_dir, workers=2) as url:
        for _ in range(4):  # spread over both workers
            requests.post(f"{url}/api/v1/reports", timeout=10, json={
                "package": "hello", "to": "2.0.0", "result": "unhealthy", "exit_code": 4,
                "client_id": "c1"}, headers={"Authorization": f"Bearer {reporter}"})
        refused = requests.get(f"{url}/metrics", timeout=10)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith(
            "Bearer")
        assert requests.get(f"{url}/metrics", timeout=10, headers={
            "Authorization": f"Bearer {reporter}"}).status_code == 401  # another scope
        _, scraper = create_token(RepoPaths(served.repo_dir), "prometheus", "metrics")
        text = requests.get(f"{url}/metrics", timeout=10, headers={
            "Authorization": f"Bearer {scraper}"}).text
    assert 'custody_role_expiry_seconds{role="timestamp"}' in text
    assert 'custody_role_expiry_seconds{role="bins"}' in text
    assert 'custody_rollout_percent{channel="stable",package="hello",state="active",' \
        'version="2.0.0"} 5.0' in text
    assert 'custody_reports{result="unhealthy"} 4.0' in text
    assert 'custody_package_versions{package="hello"} 2.0' in text
    counted = [line for line in text.splitlines() if line.startswith(
        'custody_api_requests_total{endpoint="/api/v1/reports",status="202"}')]
    assert counted and float(counted[0].split()[-1]) == 4.0  # both workers' counts, summed
