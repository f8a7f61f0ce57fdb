"""custody-tuf-client speaks the tuf-conformance client-under-test protocol."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import BIN, Mirror

pytestmark = pytest.mark.slow


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "custody-tuf-client"), *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_init_refresh_download_and_cache(served, tmp_path):
    served.publish("1.0.0")
    mirror = Mirror(served.repo_dir / "public")
    try:
        md, targets = tmp_path / "md", tmp_path / "targets"
        assert cli("--metadata-dir", str(md), "init", str(served.root)).returncode == 0
        assert mirror.requests == []  # init makes no request
        r = cli("--metadata-dir", str(md), "--metadata-url", mirror.url + "/metadata",
                "refresh")
        assert r.returncode == 0, r.stderr
        stored = {p.name for p in md.iterdir()}
        assert {"root.json", "timestamp.json", "snapshot.json", "targets.json"} <= stored
        assert not any(name[0].isdigit() for name in stored)  # non-versioned names
        names = ["packages/hello/index.json", "packages/hello/1.0.0/hello.tar.gz"]
        args = ["--metadata-dir", str(md), "--metadata-url", mirror.url + "/metadata",
                "--target-base-url", mirror.url + "/targets", "--target-dir", str(targets)]
        for name in names:
            args += ["--target-name", name]
        r = cli(*args, "download")
        assert r.returncode == 0, r.stderr
        assert len(list(targets.iterdir())) == 2
        downloads = [p for p in mirror.requests if p.startswith("/targets/")]
        assert len(downloads) == 2
        assert cli(*args, "download").returncode == 0
        assert [p for p in mirror.requests if p.startswith("/targets/")] == downloads
        r = cli(*args[:-4], "--target-base-url", mirror.url + "/targets", "--target-dir",
                str(targets), "--target-name", "no/such/target", "download")
        assert r.returncode == 1
        mirror.overrides["timestamp.json"] = b"{}"
        r = cli("--metadata-dir", str(md), "--metadata-url", mirror.url + "/metadata",
                "refresh")
        assert r.returncode == 1
    finally:
        mirror.close()
