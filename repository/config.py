"""The repository's private configuration: hash bins, expiry periods, online keys."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from securesystemslib.signer import Key, Signer

from custody.keys_tooling.errors import KeyToolingError
from custody.keys_tooling.keys import load_signer
from custody.repository.errors import NotARepositoryError, RepositoryError
from custody.repository.storage import RepoPaths, write_atomic

ONLINE_ROLES = ("timestamp", "snapshot", "releases", "bins")
"""Roles whose keys live on the server: it re-signs them without a person."""

DEFAULT_EXPIRY_DAYS = {
    "root": 365, "targets": 365, "layouts": 365,
    "releases": 30, "bins": 30, "snapshot": 7, "timestamp": 1,
}
BINS_PREFIX = "bins"


@dataclass
class KeySpec:
    """An online key: a private key file under ``private/`` or a signer URI with its key."""

    path: str | None = None
    uri: str | None = None
    public: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def signer(self, paths: RepoPaths) -> Signer:
        try:
            if self.path is not None:
                return load_signer(str(paths.private / self.path))
            if self.uri is None or self.public is None:
                raise RepositoryError("an online key needs a path, or a URI and its public key")
            public = dict(self.public)
            return load_signer(self.uri, public_key=Key.from_dict(public.pop("keyid"), public))
        except KeyToolingError as exc:
            raise RepositoryError(f"cannot load an online key: {exc}") from exc


@dataclass
class RepoConfig:
    """``private/config.json``."""

    bins: int = 0
    expiry_days: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_EXPIRY_DAYS))
    online_keys: dict[str, list[KeySpec]] = field(default_factory=dict)
    run_inspections: bool = False
    max_upload_mib: int = 1024
    bump_margin_hours: int = 12
    # The served tree's replica in an S3-compatible bucket (repository.bucket), if any:
    # ``s3://bucket/prefix`` and the endpoint of a non-AWS store.
    public_url: str | None = None
    endpoint_url: str | None = None
    # gc deletes what no current snapshot reaches only this long after it stopped being
    # current, so that a client's refresh in flight still finds its files.
    gc_retention_hours: float = 24.0
    # The fleet's state (reports; tokens too) on a PostgreSQL server, ``postgresql://...``,
    # instead of SQLite in private/ (repository.database): what two publishers share.
    database: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["online_keys"] = {
            role: [spec.to_dict() for spec in specs]
            for role, specs in self.online_keys.items()
        }
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RepoConfig:
        config = cls(**{k: v for k, v in data.items() if k != "online_keys"})
        config.expiry_days = {**DEFAULT_EXPIRY_DAYS, **config.expiry_days}
        config.online_keys = {
            role: [KeySpec(**spec) for spec in specs]
            for role, specs in data.get("online_keys", {}).items()
        }
        return config

    @classmethod
    def load(cls, paths: RepoPaths) -> RepoConfig:
        try:
            return cls.from_dict(json.loads(paths.config.read_text()))
        except FileNotFoundError as exc:
            raise NotARepositoryError(
                f"{paths.root} is not a custody repository (no private/config.json)"
            ) from exc
        except (ValueError, TypeError) as exc:
            raise RepositoryError(f"{paths.config} is malformed: {exc}") from exc

    def save(self, paths: RepoPaths) -> None:
        write_atomic(paths.config, json.dumps(self.to_dict(), indent=1).encode(), 0o600)

    @property
    def bit_length(self) -> int:
        return self.bins.bit_length() - 1 if self.bins else 0
