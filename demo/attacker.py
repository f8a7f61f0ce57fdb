"""An attacker holding the repository server's online keys and no functionary key.

    attacker.py REPO NAME VERSION ARTIFACT LINK_DIR

`force_publish` puts an artifact into the repository with whatever links it
likes, signed with the online keys, skipping every check the server makes,
and points the ``stable`` channel at it: exactly what a compromised server
can do. Clients must refuse it. The demo and the attack suite both use it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from custody.formats.index import VersionEntry
from custody.repository.releases import layout_versions, links_from_dir, load_index, set_channel
from custody.repository.repo import CustodyRepository


def force_publish(repo_dir: Path, name: str, version: str, artifact: Path,
                  links: Mapping[str, bytes], layout: str | None = None,
                  with_intoto: bool = True, extra_targets: Mapping[str, bytes] = {},
                  ) -> str:
    """Publish with the online keys only; return the artifact's target path."""
    repo = CustodyRepository(repo_dir)
    with repo.transaction():
        for path, data in extra_targets.items():
            repo.add_target(path, data)
        target_path = f"packages/{name}/{version}/{artifact.name}"
        info = repo.add_target(target_path, artifact)
        custom = None
        if with_intoto:
            digest = info.hashes["sha256"]
            paths = []
            for rel, data in links.items():
                paths.append(f"in-toto/links/{digest}/{rel}")
                repo.add_target(paths[-1], data)
            layout = layout or layout_versions(repo, name)[-1][1]
            custom = {"in-toto": {"layout": layout, "links": paths}}
        repo.add_target(target_path, artifact, custom=custom)
        index = load_index(repo, name)
        index.versions[version] = VersionEntry(target_path)
        repo.add_target(index.target_path(name), index.to_bytes())
        set_channel(repo, name, "stable", version)
    return target_path


def main() -> None:
    repo_dir, name, version, artifact, link_dir = sys.argv[1:6]
    force_publish(Path(repo_dir), name, version, Path(artifact), links_from_dir(Path(link_dir)))


if __name__ == "__main__":
    main()
