"""``custody init`` over a home that already trusts a root (issue 21, item 7)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.helpers import BIN, custody


def _repo_root(path: Path) -> tuple[Path, list[str]]:
    """A repository made by custody-repo init; its first root and that root's key ids."""
    subprocess.run([str(BIN / "custody-repo"), "init", str(path), "--no-password"],
                   capture_output=True, check=True, timeout=60)
    root = path / "public/metadata/1.root.json"
    return root, json.loads(root.read_text())["signed"]["roles"]["root"]["keyids"]


def test_init_over_a_trusted_root_is_refused_unless_forced(tmp_path):
    old, old_keys = _repo_root(tmp_path / "old")
    new, new_keys = _repo_root(tmp_path / "new")
    home = tmp_path / "home"
    url = "http://127.0.0.1:9"
    assert custody(home, "init", "--url", url, "--root", str(old)).returncode == 0
    trusted = (home / "metadata/root.json").read_bytes()
    (home / "metadata/timestamp.json").write_text("{}")  # verified under the old root

    # The same init run again (a provisioning script's second run) changes nothing.
    again = custody(home, "init", "--url", url, "--root", str(old))
    assert again.returncode == 0, again.stderr
    assert (home / "metadata/timestamp.json").read_text() == "{}"  # nothing was replaced

    # Another root, or the same root with other settings, is a replacement: refused.
    for offered, keys, where in ((new, new_keys, url), (old, old_keys, "http://127.0.0.1:8")):
        r = custody(home, "init", "--url", where, "--root", str(offered))
        assert r.returncode == 2, r.stderr
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
        assert f"{home} already trusts a root (version 1, root keys {old_keys[0][:16]})" \
            in r.stderr
        assert f"refusing to replace it with {offered} (version 1, root keys " \
            f"{keys[0][:16]}) without --force" in r.stderr
        assert (home / "metadata/root.json").read_bytes() == trusted

    assert custody(home, "health-check", "set", "hello", "--", "true").returncode == 0
    before = json.loads((home / "config.json").read_text())
    r = custody(home, "init", "--url", "http://127.0.0.1:10", "--root", str(new), "--force")
    assert r.returncode == 0, r.stderr
    assert (home / "metadata/root.json").read_bytes() == new.read_bytes()
    assert not (home / "metadata/timestamp.json").exists()  # the old root's metadata is gone
    after = json.loads((home / "config.json").read_text())  # the host stays the same host
    assert after["urls"] == ["http://127.0.0.1:10"]
    assert (after["client_id"], after["health_checks"]) == \
        (before["client_id"], before["health_checks"])
