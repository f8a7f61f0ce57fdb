"""Every refusal of the client, in one place, saying which layer refused and what.

`TufRefusal` wraps python-tuf's errors (freshness, rollback, signatures,
lengths, hashes); `IntotoRefusal` wraps the in-toto engine's (layout, step,
rule, artifact, key). The command line prints ``str(error)`` as its one
sentence and exits 1.
"""

from __future__ import annotations


class ClientError(Exception):
    """Base class: an operation was refused or failed; the installed state is unchanged."""


class TufRefusal(ClientError):
    """TUF refused the repository's metadata or a download (the layer is named first)."""


class IntotoRefusal(ClientError):
    """in-toto refused the artifact's supply chain."""


class MissingSupplyChainError(ClientError):
    """The target carries no in-toto metadata, and the caller did not opt out."""


class PackageNotFoundError(ClientError):
    """No such package, version or channel in the repository (or not installed)."""


class DowngradeError(ClientError):
    """The resolved version is older than the installed one."""


class InstallError(ClientError):
    """Unpacking or installing failed (unsafe archive, disk error); nothing changed."""


class HealthCheckError(ClientError):
    """The new version failed its health check and was rolled back."""


class ConfigError(ClientError):
    """The client home is missing or its configuration is malformed."""
