"""API bearer tokens, stored hashed: in ``private/tokens.json``, or the configured database.

A token is shown once, at creation; the repository keeps only its SHA-256,
so a copy of the private state does not leak publishing rights. With a
PostgreSQL server configured (`custody.repository.database`) the tokens live
there, so that every publisher sharing that server accepts the same ones.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime

from custody.repository.config import RepoConfig
from custody.repository.database import Database
from custody.repository.errors import NotFoundError
from custody.repository.storage import RepoPaths, locked, write_atomic

PREFIX = "cst_"
#: What a token may do. ``publish``: push releases and drive rollouts (CI);
#: ``report``: send health reports (shared by a fleet, so it can do nothing else);
#: ``operator``: everything, and the dashboard.
SCOPES = ("publish", "report", "operator", "metrics")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _load(paths: RepoPaths, shared: Database | None = None,
          config: RepoConfig | None = None) -> dict[str, dict[str, str]]:
    database = shared or _database(paths, config)
    if database is not None:
        try:
            rows = database.execute("SELECT id, name, sha256, scope, created FROM tokens")
            return {row[0]: dict(zip(("name", "sha256", "scope", "created"), row[1:],
                                     strict=True)) for row in rows.fetchall()}
        finally:
            if shared is None:
                database.close()
    try:
        return json.loads(paths.tokens.read_text())
    except FileNotFoundError:
        return {}


def rows(database: Database) -> list[tuple]:
    """Every token on a server, as (id, name, sha256, scope, created); none where the
    table does not exist yet (reading creates nothing: a backup writes nothing)."""
    if not database.has_table("tokens"):
        return []
    return [tuple(row) for row in database.execute(
        "SELECT id, name, sha256, scope, created FROM tokens").fetchall()]


def _database(paths: RepoPaths, config: RepoConfig | None = None) -> Database | None:
    """The configured server's ``tokens`` table, or None: the JSON file.

    ``config``: the repository's, when the caller holds it (a server: no read per request).
    """
    url = (config or RepoConfig.load(paths)).database
    if not url:
        return None
    database = Database.open(paths.private, url)
    if not database.has_table("tokens"):
        create_table(database)
    return database


def create_table(database: Database) -> None:
    """The ``tokens`` table on a server (custody-repo database set makes it, once)."""
    database.execute("CREATE TABLE IF NOT EXISTS tokens (id TEXT PRIMARY KEY, name TEXT, "
                     "sha256 TEXT, scope TEXT, created TEXT)")


def create_token(paths: RepoPaths, name: str, scope: str = "publish") -> tuple[str, str]:
    """A new token for ``name``; returns (token id, token). The token is not stored."""
    if scope not in SCOPES:
        raise NotFoundError(f"no token scope {scope!r} (scopes: {', '.join(SCOPES)})")
    token = PREFIX + secrets.token_urlsafe(32)
    token_id = _digest(token)[:12]
    entry = {"name": name, "sha256": _digest(token), "scope": scope,
             "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    database = _database(paths)
    if database is not None:
        try:
            database.execute("INSERT INTO tokens (id, name, sha256, scope, created) "
                             "VALUES (?, ?, ?, ?, ?)", (token_id, *entry.values()))
        finally:
            database.close()
        return token_id, token
    with locked(paths):
        tokens = _load(paths)
        tokens[token_id] = entry
        write_atomic(paths.tokens, json.dumps(tokens, indent=1).encode(), 0o600)
    return token_id, token


def revoke_token(paths: RepoPaths, token_id: str) -> None:
    database = _database(paths)
    if database is not None:
        try:
            removed = database.execute("DELETE FROM tokens WHERE id = ?", (token_id,)).rowcount
        finally:
            database.close()
        if not removed:
            raise NotFoundError(f"no token with id {token_id}")
        return
    with locked(paths):
        tokens = _load(paths)
        if tokens.pop(token_id, None) is None:
            raise NotFoundError(f"no token with id {token_id}")
        write_atomic(paths.tokens, json.dumps(tokens, indent=1).encode(), 0o600)


def check_token(paths: RepoPaths, token: str, scope: str = "publish",
                shared: Database | None = None, config: RepoConfig | None = None) -> str | None:
    """The name the token was created for, if it may act in ``scope``; else None.

    Constant-time comparison; tokens made before scopes existed are publish tokens.
    ``shared`` and ``config``: the configured server's connection and the repository's
    configuration, kept by the caller (a web worker), so a request reads neither anew.
    """
    digest = _digest(token)
    found = None
    for entry in _load(paths, shared, config).values():
        if hmac.compare_digest(entry["sha256"], digest) and \
                entry.get("scope", "publish") in (scope, "operator"):
            found = entry["name"]
    return found


def list_tokens(paths: RepoPaths) -> dict[str, dict[str, str]]:
    return {tid: {k: v for k, v in e.items() if k != "sha256"} for tid, e in _load(paths).items()}
