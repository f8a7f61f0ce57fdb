"""``POST /api/v1/rollouts``: start, raise, pause, resume, complete or abort a rollout."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from custody.repository import rollouts as operations
from custody.repository.errors import InvalidReleaseError, LockedError, NotFoundError
from custody.repository.repo import CustodyRepository
from custody.repository.web import authorized, error, site

rollouts = Blueprint("rollouts", __name__)


@rollouts.post("/api/v1/rollouts")
def act() -> Any:
    if authorized("publish") is None:
        return error(401, "a valid publish or operator token is required")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return error(400, "send a JSON object: package, channel, action, ...")
    action = body.get("action")
    package, channel = body.get("package"), body.get("channel")
    if not isinstance(package, str) or not isinstance(channel, str):
        return error(400, "the fields 'package' and 'channel' are required strings")
    try:
        repo = CustodyRepository(site().paths.root)
        with repo.transaction():
            if action == "start":
                result = operations.start(
                    repo, package, channel, str(body.get("version", "")),
                    number(body, "percent"), number(body, "max_failure_rate", None),
                    int(number(body, "min_reports", 20)))
            elif action == "raise":
                result = operations.set_percent(repo, package, channel,
                                                number(body, "percent"))
            elif action == "pause":
                result = operations.pause(repo, package, channel,
                                          str(body.get("reason") or "paused by hand"))
            elif action == "resume":
                result = operations.resume(repo, package, channel)
            elif action in ("complete", "abort"):
                version = getattr(operations, action)(repo, package, channel)
                return jsonify(action=action, version=version), 200
            else:
                return error(400, "action must be start, raise, pause, resume, complete or "
                                  "abort")
    except (InvalidReleaseError, NotFoundError, ValueError) as exc:
        return error(404 if isinstance(exc, NotFoundError) else 400, str(exc))
    except LockedError as exc:
        return error(503, str(exc))
    return jsonify(action=action, rollout=result.to_dict()), 200


def number(body: dict, name: str, default: Any = ...) -> Any:
    """A JSON number field of a request body (``ValueError`` names it)."""
    value = body.get(name, None if default is ... else default)
    if value is None and default is not ...:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"the field {name!r} must be a number")
    return value
