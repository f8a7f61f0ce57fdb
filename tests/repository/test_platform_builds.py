"""Publishing platform builds: one per platform and version, each its own supply chain."""

from __future__ import annotations

from io import BytesIO

import pytest

from custody.repository.errors import DuplicateReleaseError, InvalidReleaseError
from custody.repository.export import export_mirror
from custody.repository.releases import (
    Release,
    links_from_dir,
    load_index,
    publish_release,
    releases_unverified_by,
    remove_release,
)
from custody.repository.repo import CustodyRepository
from custody.repository.server import create_app
from custody.repository.storage import RepoPaths
from custody.repository.tokens import create_token
from tests.helpers import add_hello_layout, make_repo


@pytest.fixture
def repo_dir(tmp_path, keydir, hello_chain):
    path = tmp_path / "repo"
    make_repo(path, keydir, bins=4)
    add_hello_layout(path, keydir, hello_chain.layout)
    return path


def _publish(repo_dir, chain, version: str, platform: str | None, channel: str | None = None):
    repo = CustodyRepository(repo_dir)
    with repo.transaction():
        return publish_release(repo, Release(
            "hello", version, chain.verify_dir / "hello.tar.gz", chain.layout.read_bytes(),
            links_from_dir(chain.links), channel, platform=platform))


def _public(repo_dir) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted((repo_dir / "public").rglob("*"))
            if p.is_file()}


def test_each_build_is_published_once_and_never_mixed_with_a_version_for_all(
        repo_dir, hello_chain):
    assert _publish(repo_dir, hello_chain, "2.0.0", "linux-x86_64", "stable") == \
        "packages/hello/2.0.0/linux-x86_64.hello.tar.gz"
    assert _publish(repo_dir, hello_chain, "2.0.0", "linux-aarch64") == \
        "packages/hello/2.0.0/linux-aarch64.hello.tar.gz"
    _publish(repo_dir, hello_chain, "1.0.0", None)
    before = _public(repo_dir)
    refusals = [
        ("2.0.0", "linux-x86_64", DuplicateReleaseError, "2.0.0 for linux-x86_64 is already"),
        ("2.0.0", None, DuplicateReleaseError, "hello 2.0.0 is already published"),
        ("1.0.0", "linux-x86_64", DuplicateReleaseError, "1.0.0 for linux-x86_64 is already"),
        ("3.0.0", "Linux/x86_64", InvalidReleaseError, "is not a platform name"),
    ]
    for version, platform, error, words in refusals:
        with pytest.raises(error, match=words):
            _publish(repo_dir, hello_chain, version, platform)
    assert _public(repo_dir) == before  # a refused release changes nothing
    index = load_index(CustodyRepository(repo_dir), "hello")
    assert sorted(index.versions["2.0.0"].builds) == ["linux-aarch64", "linux-x86_64"]
    assert index.channels == {"stable": "2.0.0"}


def test_every_build_is_checked_exported_and_removed(repo_dir, hello_chain, tmp_path):
    for platform in ("linux-x86_64", "linux-aarch64"):
        _publish(repo_dir, hello_chain, "2.0.0", platform, "stable")
    repo = CustodyRepository(repo_dir)
    assert releases_unverified_by(repo, "hello", hello_chain.layout.read_bytes()) == []
    export_mirror(repo, tmp_path / "out", ["hello"])
    exported = {p.name for p in (tmp_path / "out").rglob("*hello.tar.gz")}
    assert {n.split(".", 1)[1] for n in exported} == {
        "linux-x86_64.hello.tar.gz", "linux-aarch64.hello.tar.gz"}  # hash-prefixed names
    with repo.transaction():
        remove_release(repo, "hello", "2.0.0")
    repo = CustodyRepository(repo_dir)
    for platform in ("linux-x86_64", "linux-aarch64"):
        assert repo.find_target(f"packages/hello/2.0.0/{platform}.hello.tar.gz") is None
    assert load_index(repo, "hello").versions == {}


def test_the_publish_api_takes_the_platform(repo_dir, hello_chain):
    _, token = create_token(RepoPaths(repo_dir), "ci")
    client = create_app(repo_dir).test_client()

    def post(**form: str):
        body: dict = {"name": "hello", "version": "2.0.0", **form, "layout": [], "links": []}
        body["artifact"] = (BytesIO((hello_chain.verify_dir / "hello.tar.gz").read_bytes()),
                            "hello.tar.gz")
        body["layout"] = (BytesIO(hello_chain.layout.read_bytes()), "root.layout")
        body["links"] = [(BytesIO(p.read_bytes()), p.name)
                         for p in sorted(hello_chain.links.glob("*.link"))]
        return client.post("/api/v1/releases", data=body,
                           headers={"Authorization": f"Bearer {token}"})

    response = post(platform="darwin-arm64")
    assert response.status_code == 201, response.json
    assert response.json["target"] == "packages/hello/2.0.0/darwin-arm64.hello.tar.gz"
    assert response.json["platform"] == "darwin-arm64"
    response = post(platform="darwin-arm64")
    assert response.status_code == 409, response.json
    response = post(platform="darwin arm64")
    assert response.status_code == 400 and "not a platform name" in response.json["error"]
    assert "\n" not in response.json["error"]  # one sentence
    response = post(platform="")  # empty: a version for every platform, which 2.0.0 is not
    assert response.status_code == 409, response.json
    entry = load_index(CustodyRepository(repo_dir), "hello").versions["2.0.0"]
    assert list(entry.builds) == ["darwin-arm64"]
