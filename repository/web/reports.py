"""``POST /api/v1/reports``: hosts' health reports (report scope), which may halt a rollout."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, jsonify, request

from custody.repository.errors import InvalidReleaseError, LockedError
from custody.repository.repo import CustodyRepository
from custody.repository.reports import Report, ReportStore
from custody.repository.rollouts import check_halt
from custody.repository.web import authorized, error, site

log = logging.getLogger("custody.repository.server")
reports = Blueprint("reports", __name__)


@reports.post("/api/v1/reports")
def receive() -> Any:
    if authorized("report") is None:
        return error(401, "a valid report token is required (Authorization: Bearer)")
    body = request.get_json(silent=True)
    items = body if isinstance(body, list) else [body]
    if not 1 <= len(items) <= 100:
        return error(400, "send 1 to 100 reports, as a JSON object or list")
    try:
        parsed = [Report.from_dict(item) for item in items]
    except InvalidReleaseError as exc:
        return error(400, str(exc))
    here = site()
    paths = here.paths
    store = ReportStore.open(paths, here.database(), here.config)
    try:
        store.add(parsed)
        halted: list[str] = []
        for package in sorted({r.package for r in parsed}):
            if not (paths.targets / "packages" / package).exists():
                continue
            repo = CustodyRepository(paths.root)
            with repo.transaction():
                halted += check_halt(repo, store, package)
    except LockedError as exc:
        return error(503, str(exc))
    finally:
        store.close()
    for sentence in halted:
        log.warning("rollout %s", sentence)
    return jsonify(accepted=len(parsed), halted=halted), 202
