"""Bad input to every command line: one sentence, the right exit code, never a traceback."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import BIN


def run(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60,
                          check=False, cwd=cwd)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inputs")
    (path / "binary.toml").write_bytes(b"\xff\xfe\x00binary")
    (path / "binary.json").write_bytes(b"\x00\x01not json")
    run(BIN / "custody-keys", "generate", path / "k", "--no-password")
    run(BIN / "custody-repo", "init", path / "repo", "--no-password")
    run(BIN / "custody", "--home", path / "home", "init", "--url", "http://127.0.0.1:9",
        "--root", path / "repo/public/metadata/1.root.json")
    (path / "afile").write_text("not a directory\n")
    run(BIN / "custody", "--home", path / "unreadable", "init", "--url", "http://127.0.0.1:9",
        "--root", path / "repo/public/metadata/1.root.json")
    (path / "unreadable/state.json").mkdir()  # what no read or write of the state expects
    return path


CASES = [
    # (arguments relative to the fixture directory F, exit code, words in the one sentence)
    (["custody", "--home", "F/home", "install", "good==" + "9" * 5000], 2,
     "is longer than 64 characters"),
    (["custody", "--home", "F/home", "update", "--health-check", "'unbalanced"], 2,
     "No closing quotation"),
    (["custody", "--home", "F/home", "update", "--health-timeout", "nan"], 2,
     "must be a finite number above 0"),
    (["custody", "--home", "F/fresh", "init", "--url", "u", "--root",
      "F/repo/public/metadata/1.root.json", "--layout-threshold", "-1"], 2, "-1 is not in"),
    # an unusable --home (issue 21, item 6): usage when it lies under a file, else local
    (["custody", "--home", "F/afile/home", "list"], 2,
     "cannot be a client home: F/afile is a file, not a directory"),
    (["custody", "--home", "F/afile/home", "init", "--url", "u", "--root",
      "F/repo/public/metadata/1.root.json"], 2, "F/afile is a file, not a directory"),
    (["custody", "--home", "/proc/custody-home", "init", "--url", "u", "--root",
      "F/repo/public/metadata/1.root.json"], 6,
     "the client home /proc/custody-home cannot be used: No such file or directory"),
    (["custody", "--home", "F/unreadable", "list"], 6, "the client home F/unreadable cannot be "
     "used: Is a directory (F/unreadable/state.json)"),
    (["custody", "--home", "F/unreadable", "run", "x", "--", "true"], 6, "cannot be used"),
    (["custody-repo", "serve", "F/repo", "--port", "70000"], 2, "70000 is not in the range"),
    (["custody-repo", "serve", "F/repo", "--port", "-1"], 2, "-1 is not in the range"),
    (["custody-repo", "serve", "F/repo", "--workers", "0"], 2, "0 is not in the range"),
    (["custody-repo", "serve", "F/repo", "--bump-interval", "nan"], 2, "finite number"),
    (["custody-repo", "serve", "F/repo", "--bump-interval", "-1"], 2, "finite number"),
    (["custody-repo", "init", "F/big", "--bins", "1073741824"], 2,
     "1073741824 is not in the range"),
    (["custody-repo", "gc", "F/repo", "--keep", "-1"], 2, "-1 is not in the range"),
    (["custody-repo", "publish", "F/repo", "F/binary.json", "--name", "x", "--version",
      "1" * 300, "--layout", "F/binary.json", "--links", "F/."], 1, "longer than 64"),
    (["custody-keys", "sign", "F/binary.json", "--key", "F/k"], 1, "is not TUF metadata"),
    (["custody-keys", "import", "--repo", "F/repo", "F/binary.json"], 1,
     "is not TUF metadata"),
    (["custody-intoto", "verify", "--layout", "F/binary.json", "-k", "F/k.pub",
      "--parameter", "noequals"], 2, "'noequals' is not NAME=VALUE"),
    (["custody-intoto", "layout", "new", "F/binary.toml", "-k", "F/k", "-o", "F/out.layout"],
     1, "cannot read layout description"),
    (["custody-intoto", "run", "-n", "../../x", "--signing-key", "F/k", "--", "true"], 2,
     "'../../x' is not a step name"),
]


@pytest.mark.parametrize("args,code,words", CASES, ids=[" ".join(c[0][:3]) for c in CASES])
def test_bad_input_is_one_sentence_and_its_exit_code(files, args, code, words):
    argv = [BIN / args[0], *[re.sub(r"^F(?=/)", str(files), a) for a in args[1:]]]
    result = run(*argv, cwd=files)
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert re.sub(r"(?<![\w/])F(?=/)", str(files), words) in result.stderr, result.stderr
    assert not (files / "big").exists() and not (files / "out.layout").exists()


def test_a_bug_exits_70_with_one_sentence_and_the_details_in_a_file(tmp_path):
    program = ("import sys; from custody.keys_tooling.cliutil import guarded; "
               "sys.argv[1:] = sys.argv[1:]; guarded('custody', lambda: 1 / 0)()")
    result = run(sys.executable, "-c", program)
    assert result.returncode == 70
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith("custody: internal error (ZeroDivisionError: division by zero); "
                           "details in ")
    details = Path(line.rsplit("details in ", 1)[1])
    assert "ZeroDivisionError" in details.read_text() and "Traceback" in details.read_text()
    details.unlink()
    verbose = run(sys.executable, "-c", program, "-v")
    assert verbose.returncode == 70 and "Traceback" in verbose.stderr
    Path(verbose.stderr.strip().rsplit("details in ", 1)[1]).unlink()
