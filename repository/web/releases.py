"""``POST /api/v1/releases``: verify a release as a client will, then publish it.

Bearer token (publish scope); multipart ``name``, ``version``, optional
``channel``, ``allow_channel_downgrade`` and ``platform`` (the release is that
platform's build of the version, e.g. ``linux-x86_64``), files ``artifact``, ``layout``,
``links``. One transaction: a refused upload changes nothing. Uploads over the
configured size are refused before they are read (the application's
``MAX_CONTENT_LENGTH``); accepted ones are streamed to disk, never held whole
in memory.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from flask import Blueprint, jsonify, request

from custody.repository.errors import (
    BucketError,
    ChannelDowngradeError,
    DuplicateReleaseError,
    InvalidReleaseError,
    LockedError,
    RepositoryError,
)
from custody.repository.releases import Release, check_link_path, publish_release
from custody.repository.repo import CustodyRepository
from custody.repository.web import authorized, error, site

log = logging.getLogger("custody.repository.server")
releases = Blueprint("releases", __name__)


@releases.post("/api/v1/releases")
def publish() -> Any:
    who = authorized("publish")
    if who is None:
        return error(401, "a valid bearer token is required to publish")
    form = request.form
    for field_name in ("name", "version"):
        if not form.get(field_name):
            return error(400, f"the form field {field_name!r} is required")
    artifact = request.files.get("artifact")
    layout = request.files.get("layout")
    if artifact is None or not artifact.filename or layout is None:
        return error(400, "the files 'artifact' and 'layout' are required")
    try:
        links = {check_link_path(f.filename or ""): f.read()
                 for f in request.files.getlist("links")}
        with tempfile.TemporaryDirectory(dir=site().uploads) as tmp:
            name = Path(artifact.filename).name
            staged = Path(tmp) / "artifact"
            artifact.save(staged)  # streamed from werkzeug's spooled file
            release = Release(
                name=form["name"], version=form["version"], artifact=staged,
                layout=layout.read(), links=links, artifact_name=name,
                channel=form.get("channel") or None,
                allow_channel_downgrade=form.get("allow_channel_downgrade", "").lower()
                in ("1", "true", "yes"),
                platform=form.get("platform") or None,
            )
            repo = CustodyRepository(site().paths.root)
            with repo.transaction():
                target = publish_release(repo, release)
    except (DuplicateReleaseError, ChannelDowngradeError) as exc:
        return error(409, str(exc))  # conflicts with what is published
    except InvalidReleaseError as exc:
        return error(400, str(exc))
    except LockedError as exc:
        return error(503, str(exc))
    except BucketError as exc:  # committed locally; the bucket (upstream) failed
        return error(502, str(exc))
    except RepositoryError as exc:
        return error(500, str(exc))
    log.info("%s published %s %s%s", who, release.name, release.version,
             f" ({release.platform})" if release.platform else "")
    return jsonify(target=target, name=release.name, version=release.version,
                   platform=release.platform), 201
