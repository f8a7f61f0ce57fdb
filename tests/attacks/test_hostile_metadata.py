"""A compromised server signs malformed custody metadata with the online keys.

Each case is refused by the TUF layer in one sentence naming the file and the
field, exit 1, never a traceback, and the installed state does not change
(issue 17). The package index and a target's custom fields are the only
custody formats the online keys sign.
"""

from __future__ import annotations

import json

import pytest

from custody.repository.repo import CustodyRepository

pytestmark = pytest.mark.slow

INDEX = "packages/hello/index.json"


def _read_index(scene) -> dict:
    from custody.repository.releases import load_index

    return load_index(CustodyRepository(scene.repo_dir), "hello").to_dict()


def forge_index(scene, data: bytes) -> None:
    repo = CustodyRepository(scene.repo_dir)
    with repo.transaction():
        repo.add_target(INDEX, data)
        repo.publish_metadata()


def mutated(scene, change) -> bytes:
    index = _read_index(scene)
    change(index)
    return json.dumps(index).encode()


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("make,words", [
    (lambda s: b"[1, 2]", f"TUF refused {INDEX}: {INDEX} must be an object, not list"),
    (lambda s: b"null", "must be an object, not NoneType"),
    (lambda s: b'"hello"', "must be an object, not str"),
    (lambda s: b"{not json", f"{INDEX} is not JSON"),
    (lambda s: DEEP, f"{INDEX} nests deeper than 32 levels"),
    (lambda s: mutated(s, lambda i: i.update(versions=[1])),
     f"{INDEX}.versions must be an object, not list"),
    (lambda s: mutated(s, lambda i: i.update(channels="stable")),
     f"{INDEX}.channels must be an object, not str"),
    (lambda s: mutated(s, lambda i: i["versions"]["1.0.0"].pop("target")),
     f"{INDEX}.versions['1.0.0'].target is missing"),
    (lambda s: mutated(s, lambda i: i["versions"]["1.0.0"].update(target=7)),
     f"{INDEX}.versions['1.0.0'].target must be a string, not int"),
    (lambda s: mutated(s, lambda i: i["channels"].update(stable="9" * 5000)),
     "channels['stable'] '99999999999999999999'... is longer than 64 characters"),
    (lambda s: mutated(s, lambda i: i["channels"].update(stable="2.0.0")),
     "channels['stable'] names '2.0.0', which the index does not list"),
    (lambda s: mutated(s, lambda i: i["versions"].update({"1.0": i["versions"]["1.0.0"]})),
     "lists '1.0.0' and '1.0', one version (PEP 440)"),
])
def test_malformed_package_index_is_refused(scene, make, words):
    forge_index(scene, make(scene))
    scene.refused("update", words=words)
    scene.refused("install", "hello==1.0.0", words=words)


@pytest.mark.parametrize("custom,words", [
    ("in-toto", "custom['in-toto'] must be an object"),
    ({"layout": 5, "links": []}, "custom['in-toto'].layout must be a target path"),
    ({"layout": "in-toto/layouts/hello.1.layout", "links": "x.link"},
     "custom['in-toto'].links must be a list of at most 1000 paths"),
    ({"layout": "in-toto/layouts/hello.1.layout", "links": [None]},
     "custom['in-toto'].links[0] must be a target path"),
])
def test_malformed_custom_metadata_is_refused(scene, custom, words):
    """Version 2.0.0's target carries a malformed in-toto field (whatever key signed it)."""
    from custody.formats.index import VersionEntry
    from custody.repository.releases import load_index

    repo = CustodyRepository(scene.repo_dir)
    artifact = scene.served.chain("hello 1.0.0").verify_dir / "hello.tar.gz"
    with repo.transaction():
        repo.add_target("packages/hello/2.0.0/hello.tar.gz", artifact,
                        custom={"in-toto": custom})
        index = load_index(repo, "hello")
        index.versions["2.0.0"] = VersionEntry("packages/hello/2.0.0/hello.tar.gz")
        index.channels["stable"] = "2.0.0"
        repo.add_target(INDEX, index.to_bytes())
        repo.publish_metadata()
    scene.refused("update", words="TUF refused the metadata of "
                                  f"packages/hello/2.0.0/hello.tar.gz: {words}")
