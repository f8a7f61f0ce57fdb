"""The shipped alert rules (deploy/prometheus/) and the metrics they read (issue 25).

``promtool test rules`` (Debian's prometheus package) runs the rules' unit
tests: each alert fires on the series that should fire it, and not on the
healthy ones. Then a real server is scraped with a metrics token, so every
metric a rule names is one custody really exports: a renamed metric fails
here, not silently in production.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import requests

from custody.intoto.metadata import Metablock
from custody.intoto.models import Layout
from custody.repository.storage import RepoPaths
from custody.repository.tokens import create_token
from tests.helpers import BIN, debian_tool, running_server, signer
from tests.intoto.chain import hello_layout

pytestmark = pytest.mark.slow
RULES = Path(__file__).resolve().parent.parent / "deploy/prometheus"


def test_promtool_checks_and_tests_the_rules():
    promtool = debian_tool("promtool", "prometheus")
    r = subprocess.run([promtool, "check", "rules", "custody-rules.yml"], cwd=RULES,
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0 and "SUCCESS: 5 rules found" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([promtool, "test", "rules", "custody-rules.test.yml"], cwd=RULES,
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_every_metric_a_rule_reads_is_exported(served, keydir):
    names = set(re.findall(r"\b(custody_[a-z_]+)", (RULES / "custody-rules.yml").read_text()))
    assert names >= {"custody_role_expiry_seconds", "custody_pending_change_age_seconds",
                     "custody_rollout_percent", "custody_api_requests_total"}
    served.publish("1.0.0")
    served.publish("2.0.0", channel=None)
    repo = str(served.repo_dir)
    for args in (["rollout", "start", repo, "hello", "stable", "2.0.0", "--percent", "5"],
                 ["rollout", "pause", repo, "hello", "stable"]):
        r = subprocess.run([str(BIN / "custody-repo"), *args], capture_output=True, text=True,
                           check=False)
        assert r.returncode == 0, r.stderr
    # a change waiting for the owners: a new layout added with their key offline
    description = hello_layout(keydir)
    description["readme"] = "hello, second layout: the same steps and keys"
    layout = Metablock.new(Layout.from_dict(description))
    layout.sign(signer(keydir, "owner"))
    second = served.work / "hello-second.layout"
    layout.dump(second)
    r = subprocess.run([str(BIN / "custody-repo"), "layout", "add", repo,
                        str(second), "--name", "hello", "--yes", "--key",
                        str(keydir / "owner.pub")],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 3, r.stdout + r.stderr  # pending its offline signature
    _, scraper = create_token(RepoPaths(served.repo_dir), "prometheus", "metrics")
    with running_server(served.repo_dir) as url:
        requests.post(f"{url}/api/v1/reports", json=[], timeout=10)  # counted (401)
        text = requests.get(f"{url}/metrics", timeout=10,
                            headers={"Authorization": f"Bearer {scraper}"}).text
    exported = {line.split("{")[0].split()[0] for line in text.splitlines()
                if line.startswith("custody_")}
    assert names <= exported, names - exported
    assert re.search(r'custody_rollout_percent\{[^}]*state="paused"', text)
