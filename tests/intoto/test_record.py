"""Recording artifacts: the same names and hashes as in-toto 3.1.0 records."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from in_toto.runlib import record_artifacts_as_dict

from custody.intoto.artifacts import ArtifactRecorder, hash_file
from custody.intoto.errors import RecordError


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    for rel, data in {
        "a.txt": b"a", "src/m.py": b"print(1)\r\n", "src/m.pyc": b"x", "src/deep/x~": b"x",
        "src/deep/y.c": b"int y;\rint z;\r", ".git/HEAD": b"ref", "build/out.link": b"{}",
        "docs/README": b"read me\n", "lib/inner/z": b"z" * 70000,
    }.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    os.symlink("src", root / "linkdir")
    os.symlink("a.txt", root / "linkfile")
    os.symlink("missing", root / "broken")
    return root


CASES = [
    dict(paths=["."]),
    dict(paths=["./src", "a.txt", "nothing-here"]),
    dict(paths=["."], exclude_patterns=["docs", "*.c"]),
    dict(paths=["."], exclude_patterns=["src/deep/"]),
    dict(paths=["."], follow_symlink_dirs=True),
    dict(paths=["."], normalize_line_endings=True),
    dict(paths=["src", "docs"], lstrip_paths=["src/", "docs/"]),
    dict(paths=["."], base_path="src"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(f"{k}" for k in c))
def test_recording_agrees_with_reference(tree, case):
    case = dict(case)
    paths = case.pop("paths")
    base = case.get("base_path")
    with contextlib.chdir(tree):
        theirs = record_artifacts_as_dict(paths, **case)
        ours = ArtifactRecorder(**case).record(paths)
    if base:  # ours also works without changing directory
        with contextlib.chdir(tree.parent):
            case["base_path"] = str(tree / base)
            assert ArtifactRecorder(**case).record(paths) == theirs
    assert ours == theirs
    assert ours  # the cases record something


def test_many_files_agree(tmp_path):
    for i in range(300):
        (tmp_path / f"f{i:03}").write_bytes(os.urandom(i * 13))
    with contextlib.chdir(tmp_path):
        assert ArtifactRecorder().record(["."]) == record_artifacts_as_dict(["."])


def test_lstrip_collision_is_refused(tree):
    (tree / "docs" / "m.py").write_bytes(b"other")
    with contextlib.chdir(tree), pytest.raises(RecordError, match=r"m\.py"):
        ArtifactRecorder(lstrip_paths=["src/", "docs/"]).record(["src", "docs"])


def test_overlapping_lstrip_prefixes_are_refused():
    with pytest.raises(RecordError, match="overlap"):
        ArtifactRecorder(lstrip_paths=["src/", "src/deep/"])


@pytest.mark.parametrize("data", [b"a\r\nb\r", b"\r" * 5, b"x\r" + b"y" * (1 << 20) + b"\r\n"])
def test_line_ending_normalisation_across_block_edges(tmp_path, data):
    path = tmp_path / "f"
    path.write_bytes(data)
    normal = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    (tmp_path / "g").write_bytes(normal)
    assert hash_file(str(path), normalize_line_endings=True) == hash_file(str(tmp_path / "g"))


@pytest.mark.parametrize("patterns", [
    ["*.link*", ".git", "*.pyc", "*~"],
    ["docs/", "src/deep/", "/top", "a/**/b", "*.c"],
    ["*.pyc", "!keep.pyc"],
    [],
])
def test_excluder_agrees_with_pathspec(patterns):
    from pathspec import GitIgnoreSpec

    from custody.intoto.artifacts import _excluder

    paths = ["a.link", "x/y.link.z", ".git", "q/.git", "q/.gitx", "f.pyc", "keep.pyc", "g~",
             "docs", "docs/a", "src/deep", "src/deep/x", "top", "z/top", "a/b", "a/x/y/b",
             "b", "m.c", "src/m.c"]
    ours, theirs = _excluder(patterns or ["nothing-matches-this"]), GitIgnoreSpec.from_lines(
        patterns or ["nothing-matches-this"])
    assert [bool(ours(p)) for p in paths] == [bool(theirs.match_file(p)) for p in paths]
