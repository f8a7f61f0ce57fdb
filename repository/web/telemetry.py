"""``/metrics`` for Prometheus, and the API's request counters (`custody.repository.metrics`)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState

from custody.repository.metrics import Metrics
from custody.repository.web import EXTENSION, authorized

telemetry = Blueprint("telemetry", __name__)
_KEY = "custody-metrics"


def _metrics() -> Metrics:
    found: Metrics = current_app.extensions[_KEY]
    return found


@telemetry.record_once
def _install(state: BlueprintSetupState) -> None:
    """One `Metrics` per application, over the repository it serves."""
    state.app.extensions[_KEY] = Metrics(state.app.extensions[EXTENSION].paths)


@telemetry.after_app_request
def count(response: Response) -> Response:
    if request.path.startswith("/api/"):
        metrics = _metrics()
        metrics.requests.labels(request.path, str(response.status_code)).inc()
        if request.path == "/api/v1/releases" and response.status_code == 201:
            metrics.publishes.inc()
    return response


@telemetry.get("/metrics")
def prometheus() -> Response:
    """The metrics, for a scraper with a ``metrics`` (or operator) token.

    Prometheus sends it as its scrape config's ``authorization`` (a bearer
    token). The page names packages, rollouts, roles and their expiry, and
    how many hosts report what: not for anyone on the network.
    """
    if authorized("metrics") is None:
        response = jsonify(error="a metrics token is required (Authorization: Bearer; "
                                 "custody-repo token create DIR NAME --scope metrics)")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="custody metrics"'
        return response
    body, content_type = _metrics().render()
    return Response(body, content_type=content_type)
