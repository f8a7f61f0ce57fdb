"""The demo's attacker: holds the repository server's online keys, no functionary key.

    attacker.py REPO NAME VERSION ARTIFACT LINK_DIR

Publishes ARTIFACT as NAME VERSION with whatever links it has, straight into
the repository with the online keys, skipping every check the server makes,
and points the ``stable`` channel at it: exactly what a compromised server
can do. Clients must refuse it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from repository.releases import PackageIndex, layout_versions, links_from_dir, set_channel
from repository.repo import CustodyRepository


def main() -> None:
    repo_dir, name, version, artifact, link_dir = sys.argv[1:6]
    repo = CustodyRepository(repo_dir)
    with repo.transaction():
        artifact_path = Path(artifact)
        digest_info = repo.add_target(f"packages/{name}/{version}/{artifact_path.name}",
                                      artifact_path)
        digest = digest_info.hashes["sha256"]
        links = []
        for rel, data in links_from_dir(Path(link_dir)).items():
            path = f"in-toto/links/{digest}/{rel}"
            repo.add_target(path, data)
            links.append(path)
        newest = layout_versions(repo, name)[-1][1]
        repo.add_target(digest_info.path, artifact_path,
                        custom={"in-toto": {"layout": newest, "links": links}})
        index = PackageIndex.load(repo, name)
        index.versions[version] = {"target": digest_info.path}
        repo.add_target(PackageIndex.target_path(name), index.to_bytes())
        set_channel(repo, name, "stable", version)


if __name__ == "__main__":
    main()
