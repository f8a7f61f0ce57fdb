"""The CI side of the publish API: ``custody-repo push``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from custody.repository.errors import RepositoryError
from custody.repository.releases import release_evidence


def push_release(server: str, token: str, name: str, version: str, artifact: Path,
                 layout: Path, link_dir: Path, channel: str | None = "stable",
                 timeout: float = 300.0, allow_channel_downgrade: bool = False,
                 attestations: Sequence[Path] = (), platform: str | None = None) -> dict:
    """Upload a release; return the server's answer, or raise with its one-sentence reason."""
    links = release_evidence(link_dir, attestations)
    files: list[tuple[str, tuple[str, Any]]] = [
        ("links", (path, data)) for path, data in links.items()
    ]
    with open(artifact, "rb") as artifact_file, open(layout, "rb") as layout_file:
        files += [("artifact", (artifact.name, artifact_file)),
                  ("layout", (layout.name, layout_file))]
        data = {"name": name, "version": version, "channel": channel or "",
                "allow_channel_downgrade": "1" if allow_channel_downgrade else "",
                "platform": platform or ""}
        try:
            response = requests.post(
                server.rstrip("/") + "/api/v1/releases", data=data, files=files,
                headers={"Authorization": f"Bearer {token}"}, timeout=timeout,
            )
        except requests.RequestException as exc:
            raise RepositoryError(f"cannot reach {server}: {exc}") from exc
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text[:200]}
    if response.status_code != 201:
        raise RepositoryError(
            f"{server} refused the release ({response.status_code}): "
            f"{body.get('error', 'no reason given')}"
        )
    return body
