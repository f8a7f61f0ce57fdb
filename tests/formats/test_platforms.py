"""Platform names and the index's platform builds (issue 24, part 1)."""

from __future__ import annotations

import json

import pytest

from custody.formats.errors import FormatError
from custody.formats.index import (
    Build,
    PackageIndex,
    VersionEntry,
    artifact_filename,
    build_target,
)
from custody.formats.platforms import check_platform, host_platform, normalize


@pytest.mark.parametrize(("system", "machine", "name"), [
    ("linux", "x86_64", "linux-x86_64"),
    ("linux", "AMD64", "linux-x86_64"),
    ("linux", "aarch64", "linux-aarch64"),
    ("linux", "arm64", "linux-aarch64"),
    ("darwin", "arm64", "darwin-arm64"),
    ("darwin", "aarch64", "darwin-arm64"),
    ("darwin", "x86_64", "darwin-x86_64"),
    ("win32", "AMD64", "windows-x86_64"),
    ("freebsd14", "amd64", "freebsd-x86_64"),
    ("linux", "i686", "linux-x86"),
    ("linux", "armv7l", "linux-armv7l"),
    ("linux", "ppc64le", "linux-ppc64le"),
])
def test_normalize_gives_one_name_per_platform(system, machine, name):
    assert normalize(system, machine) == name


def test_this_host_has_a_platform_name():
    assert check_platform(host_platform()) == host_platform()


@pytest.mark.parametrize("bad", ["linux", "Linux-x86_64", "linux-x86_64/..", "-x86_64",
                                 "linux-", "linux-x86 64", "a" * 20 + "-x86_64", ""])
def test_bad_platform_names_are_refused(bad):
    with pytest.raises(FormatError, match="is not a platform name"):
        check_platform(bad)


def _index(entry: dict) -> dict:
    return {"name": "hello", "versions": {"1.0.0": {"target": "packages/hello/1.0.0/h.tgz"},
                                          "2.0.0": entry},
            "channels": {"stable": "2.0.0"}}


BUILDS = {"linux-x86_64": {"target": "packages/hello/2.0.0/linux-x86_64.h.tgz"},
          "linux-aarch64": {"target": "packages/hello/2.0.0/linux-aarch64.h.tgz", "size": 3}}


def test_builds_parse_and_round_trip():
    index = PackageIndex.from_bytes(json.dumps(_index({"builds": BUILDS})).encode())
    entry = index.versions["2.0.0"]
    assert entry.target is None and sorted(entry.builds) == ["linux-aarch64", "linux-x86_64"]
    assert entry.target_for("linux-aarch64") == "packages/hello/2.0.0/linux-aarch64.h.tgz"
    assert entry.target_for("darwin-arm64") is None  # never another platform's build
    assert index.versions["1.0.0"].target_for("darwin-arm64") == "packages/hello/1.0.0/h.tgz"
    assert entry.builds["linux-aarch64"].unrecognized == {"size": 3}  # kept, not interpreted
    assert PackageIndex.from_bytes(index.to_bytes()).to_dict() == index.to_dict()


def test_a_version_of_builds_has_no_target_for_old_clients_to_install():
    """A client older than builds reads ``target`` of every entry (and requires it):
    a version of builds must not have one, or such a client would install that
    build on every platform. Without it, the old client refuses the whole index."""
    entry = VersionEntry(None, "2026-12-06T00:00:00Z",
                         builds={"linux-x86_64": Build("packages/hello/2.0.0/linux-x86_64.h")})
    written = PackageIndex("hello", {"2.0.0": entry}, {"stable": "2.0.0"}).to_dict()
    assert "target" not in written["versions"]["2.0.0"]
    assert written["versions"]["2.0.0"]["builds"] == {
        "linux-x86_64": {"target": "packages/hello/2.0.0/linux-x86_64.h"}}


@pytest.mark.parametrize(("entry", "words"), [
    ({"builds": BUILDS, "target": "packages/hello/2.0.0/h.tgz"}, "both a target and builds"),
    ({"builds": {}}, "must list 1 to 64 platforms"),
    ({"builds": []}, "must be an object"),
    ({"builds": {"Linux-X86": {"target": "x"}}}, "is not a platform name"),
    ({"builds": {"linux-x86_64": {}}}, r"\['linux-x86_64'\].target is missing"),
    ({"builds": {"linux-x86_64": "x"}}, "must be an object"),
    ({"published": "2026-12-06T00:00:00Z"}, "target is missing"),
])
def test_malformed_builds_are_refused(entry, words):
    with pytest.raises(FormatError, match=words):
        PackageIndex.from_dict(_index(entry))


def test_build_targets_name_their_platform_in_the_versions_folder():
    assert build_target("hello", "2.0.0", None, "h.tgz") == "packages/hello/2.0.0/h.tgz"
    path = build_target("hello", "2.0.0", "linux-x86_64", "h.tgz")
    assert path == "packages/hello/2.0.0/linux-x86_64.h.tgz"
    assert artifact_filename(path, "linux-x86_64") == "h.tgz"
    assert artifact_filename(path, None) == "linux-x86_64.h.tgz"
