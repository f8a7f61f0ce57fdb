"""A self-contained mirror for air-gapped hosts: ``custody-repo export DIR OUT --package NAME``.

OUT receives what a fresh client needs to install the chosen packages with
every TUF and in-toto check intact, laid out as the served tree is (so
``custody init --url file:///media/usb/OUT`` reads it): every root version
(a client with an older root walks the chain), the current timestamp and
snapshot and every role version the snapshot names, and for each package its
index, every version's artifact and links, and its layouts. Files are copied
in the publish order, ``timestamp.json`` last, so exporting over an older
export leaves a consistent mirror at every moment. Nothing in OUT is trusted
for being there: a copy tampered with on the way is refused by the client.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from custody.formats.sigstore import ROOT_PATH as SIGSTORE_ROOT
from custody.repository.errors import NotFoundError, RepositoryError
from custody.repository.releases import _links_of, layout_versions, load_index
from custody.repository.repo import CustodyRepository
from custody.repository.storage import copy_atomic, write_order_of


def export_mirror(repo: CustodyRepository, out: Path,
                  packages: Sequence[str]) -> tuple[int, int]:
    """Write the mirror (module docstring) into ``out``; (files, bytes) copied."""
    public = repo.paths.public
    snapshot = repo.published("snapshot")
    if snapshot is None:
        raise RepositoryError(f"{repo.paths.root} has published nothing yet")
    metadata = {p for p in repo.paths.metadata.glob("*root.json")}
    metadata |= {repo.paths.metadata_file("timestamp"),
                 repo.paths.metadata_file("snapshot", snapshot.signed.version)}
    for name, meta in snapshot.signed.meta.items():  # type: ignore[attr-defined]
        metadata.add(repo.paths.metadata_file(name[: -len(".json")], meta.version))
    targets: set[Path] = set()

    def add_target(path: str) -> None:
        info = repo.find_target(path)
        if info is None:
            raise NotFoundError(f"{path} is listed but not published")
        targets.add(repo.paths.target_file(path, info.hashes["sha256"]))
        for link in _links_of(info):
            add_target(link)

    for package in packages:
        index = load_index(repo, package)
        if not index.versions:
            raise NotFoundError(f"the repository has no package {package!r}")
        add_target(index.target_path(package))
        for entry in index.versions.values():
            for target in entry.targets().values():  # every platform's build
                add_target(target)
        for _, layout in layout_versions(repo, package):
            add_target(layout)
    if repo.find_target(SIGSTORE_ROOT) is not None:  # keyless steps verify offline too
        add_target(SIGSTORE_ROOT)
    ordered = sorted(targets) + sorted(metadata, key=lambda p: write_order_of(p.name))
    copied = 0
    for source in ordered:
        copy_atomic(source, out / source.relative_to(public))
        copied += source.stat().st_size
    return len(ordered), copied
