"""The operator's dashboard at ``/ui`` of ``custody-repo serve``: one page, server-rendered.

Behind an operator token (``custody-repo token create DIR NAME --scope operator``):
the login form trades it for a signed session cookie. Panels: roles with
versions, signers and time to expiry (highlighted within 14 days, or past
the online roles' re-signing margin), pending ceremonies, packages with
versions and channels, rollouts with progress and failure rates, and the
refusals clients reported recently. Flask's templates, no JavaScript.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, redirect, render_template, request, session, url_for

from custody.formats.index import PackageIndex
from custody.repository.maintenance import status
from custody.repository.repo import CustodyRepository
from custody.repository.reports import ReportStore
from custody.repository.status import ONLINE, expires_at, is_bin, summarize_bins
from custody.repository.storage import RepoPaths, write_atomic
from custody.repository.tokens import check_token

WARN_DAYS = 14


@dataclass
class RoleRow:
    role: str
    version: str
    signers: str
    expires: str
    left: str
    warn: bool


@dataclass
class RolloutRow:
    package: str
    channel: str
    previous: str
    version: str
    percent: float
    state: str
    reason: str
    hosts: int
    failed: int
    rate: str


@dataclass
class Overview:
    roles: list[RoleRow] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    packages: list[dict[str, Any]] = field(default_factory=list)
    rollouts: list[RolloutRow] = field(default_factory=list)
    refusals: list[dict[str, Any]] = field(default_factory=list)
    reports: int = 0


def _left(expires: str, now: datetime) -> tuple[str, float]:
    when = expires_at(expires)
    days = (when - now).total_seconds() / 86400
    if days < 0:
        return "expired", days
    return (f"{days:.0f} days" if days >= 2 else f"{days * 24:.0f} hours"), days


def overview(paths: RepoPaths, now: datetime | None = None) -> Overview:
    """Everything the page shows, read from the repository and the reports."""
    from custody.repository.ceremony import pending_lines
    from custody.repository.releases import load_index

    now = now or datetime.now(UTC)
    repo = CustodyRepository(paths.root)
    result = Overview()
    rows = status(repo)
    margin_days = repo.config.bump_margin_hours / 2 / 24
    for row in rows:
        if is_bin(row["role"]):
            continue
        left, days = _left(row["expires"], now)
        online = row["role"] in ONLINE
        result.roles.append(RoleRow(
            row["role"], f"v{row['version']}",
            f"{row['signatures']}/{row['threshold']}: " + ", ".join(k[:8] for k in row["keys"]),
            row["expires"], left, days < (margin_days if online else WARN_DAYS)))
    bins = summarize_bins(rows)
    if bins is not None:
        left, days = _left(bins.earliest_expiry, now)
        low, high = bins.versions
        result.roles.append(RoleRow(
            f"bins ({bins.count})", f"v{low}" + (f"-v{high}" if high != low else ""),
            f"{bins.fully_signed}/{bins.count} at threshold", bins.earliest_expiry, left,
            days < margin_days))
    result.pending = [f"{role}: {signatures}" for role, _, signatures in pending_lines(repo)]
    store = ReportStore.open(paths)
    try:
        for folder in sorted((paths.targets / "packages").glob("*")):
            if not folder.is_dir():
                continue
            index: PackageIndex = load_index(repo, folder.name)
            if not index.versions:
                continue
            result.packages.append({"name": index.name, "versions": list(index.versions),
                                    "channels": index.channels})
            for channel, rollout in sorted(index.rollouts.items()):
                summary = store.summary(index.name, rollout.version)
                result.rollouts.append(RolloutRow(
                    index.name, channel, index.channels[channel], rollout.version,
                    rollout.percent, rollout.state, rollout.reason, summary.hosts,
                    summary.failed, f"{summary.failure_rate:.0%}"))
        result.refusals = store.recent(20, ("refused",))
        result.reports = store.count()
    finally:
        store.close()
    return result


def _secret(paths: RepoPaths) -> bytes:
    """The key that signs session cookies: made once, kept in private/ (0600)."""
    path = paths.private / "ui-secret"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        write_atomic(path, secrets.token_bytes(32), 0o600)
        return path.read_bytes()


def install(app: Flask, paths: RepoPaths) -> None:
    """Add ``/ui`` to the server's application."""
    app.secret_key = _secret(paths)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict")
    ui = Blueprint("ui", __name__, template_folder=str(Path(__file__).with_name("templates")))

    @ui.get("/ui")
    def page() -> Any:
        if not session.get("operator"):
            return redirect(url_for("ui.login"))
        return render_template("dashboard.html", view=overview(paths),
                               operator=session["operator"])

    @ui.route("/ui/login", methods=["GET", "POST"])
    def login() -> Any:
        error = ""
        if request.method == "POST":
            name = check_token(paths, request.form.get("token", ""), "operator")
            if name is not None:
                session.clear()
                session["operator"] = name
                return redirect(url_for("ui.page"))
            error = "That is not an operator token."
        return render_template("login.html", error=error), 401 if error else 200

    @ui.post("/ui/logout")
    def logout() -> Any:
        session.clear()
        return redirect(url_for("ui.login"))

    app.register_blueprint(ui)


__all__ = ["Overview", "install", "overview"]
