"""The client's home directory and configuration.

::

    <home>/config.json        repository URLs (mirrors), pinned layout keys, policies
    <home>/metadata/          TUF trusted metadata (python-tuf's cache)
    <home>/cache/             verified artifacts, by TUF target path (not downloaded again)
    <home>/packages/<name>/<version>/   installed trees
    <home>/packages/<name>/current      symlink to the active version
    <home>/state.json         what is installed: current, previous, pending and failed versions
    <home>/lock               one installer at a time
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from custody.client.errors import ConfigError
from custody.client.health import DEFAULT_TIMEOUT
from custody.client.network import NetworkOptions
from custody.client.unpack import DEFAULT_LIMITS, UnpackLimits
from custody.intoto.files import write_atomic

HOME_ENV = "CUSTODY_HOME"


def default_home() -> Path:
    """``CUSTODY_HOME``, else the per-user data directory."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "custody"


def new_client_id() -> str:
    import secrets

    return secrets.token_hex(16)


@dataclass
class HealthCheck:
    """A package's own health check: argv run in the new version, and its time limit."""

    command: list[str]
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def from_json(cls, data: Any) -> HealthCheck:
        if isinstance(data, list):  # the first round stored the bare command
            return cls([str(a) for a in data])
        return cls([str(a) for a in data["command"]], float(data.get("timeout", DEFAULT_TIMEOUT)))


@dataclass
class ClientConfig:
    """``<home>/config.json``."""

    urls: list[str] = field(default_factory=list)
    layout_keys: list[dict[str, Any]] = field(default_factory=list)
    layout_threshold: int | None = None
    inspections: str = "refuse"
    health_checks: dict[str, HealthCheck] = field(default_factory=dict)
    timeout: float = 30.0
    min_rate: float = 1024.0
    slow_grace: float = 5.0
    # A random id made at init: the host's place in staged rollouts, and how its
    # reports are told apart. Says nothing about the host.
    client_id: str = ""
    report_url: str | None = None
    report_token: str | None = None
    max_unpacked_mib: int = DEFAULT_LIMITS.max_bytes >> 20
    max_unpack_ratio: float = DEFAULT_LIMITS.max_ratio
    # Enterprise networks (`custody.client.network`): None takes the environment's
    # http_proxy, HTTPS_PROXY, NO_PROXY and SSL_CERT_FILE, as curl does; "" turns
    # an environment proxy off. A client certificate (and key) for mutual TLS.
    http_proxy: str | None = None
    https_proxy: str | None = None
    no_proxy: str | None = None
    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    # Which build of a version this host installs (`custody.formats.platforms`): None
    # is this host's own platform; set it to install another's (an x86_64 host
    # running aarch64 builds under emulation, or a fleet that names its own).
    platform: str | None = None

    @property
    def unpack_limits(self) -> UnpackLimits:
        """The bounds on what one artifact may unpack to (`custody.client.unpack`)."""
        return UnpackLimits(self.max_unpacked_mib << 20, self.max_unpack_ratio)

    def network(self) -> NetworkOptions:
        """How requests reach the mirrors: these settings over the environment's.

        Raises `ConfigError` for a proxy or a file the settings cannot mean.
        """
        return NetworkOptions.resolve(self.http_proxy, self.https_proxy, self.no_proxy,
                                      self.ca_bundle, self.client_cert, self.client_key)

    def host_platform(self) -> str:
        """The platform whose builds this host installs: ``platform``, else its own.

        Raises `ConfigError` for a ``platform`` that is no platform name.
        """
        from custody.formats.errors import FormatError
        from custody.formats.platforms import check_platform, host_platform

        try:
            return host_platform() if self.platform is None else \
                check_platform(self.platform, "the configured platform")
        except FormatError as exc:
            raise ConfigError(f"{exc}") from exc

    @staticmethod
    def path(home: Path) -> Path:
        return home / "config.json"

    @classmethod
    def load(cls, home: Path) -> ClientConfig:
        try:
            data = json.loads(cls.path(home).read_text())
            checks = data.pop("health_checks", {})
            config = cls(**data, health_checks={n: HealthCheck.from_json(c)
                                                for n, c in checks.items()})
        except FileNotFoundError as exc:
            raise ConfigError(f"{home} is not initialised; run 'custody init' first") from exc
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ConfigError(f"{cls.path(home)} is malformed: {exc}") from exc
        if not config.client_id:  # a home made before rollouts existed
            config.client_id = new_client_id()
            config.save(home)
        return config

    def save(self, home: Path) -> None:
        write_atomic(self.path(home), json.dumps(asdict(self), indent=1).encode())
