"""Every refusal of the repository, in one place; each message is one sentence."""

from __future__ import annotations


class RepositoryError(Exception):
    """Base class: the repository refused or failed an operation; nothing changed."""


class NotARepositoryError(RepositoryError):
    """The directory holds no custody repository (no ``private/config.json``)."""


class InvalidReleaseError(RepositoryError):
    """A release is malformed: name, version, layout, links or artifact."""


class DuplicateReleaseError(InvalidReleaseError):
    """The version (or a PEP 440-equal spelling of it) is already published."""


class ChannelDowngradeError(InvalidReleaseError):
    """A channel would move to a lower version, and the operator did not ask for that."""


class SupplyChainError(InvalidReleaseError):
    """The release's in-toto verification failed before publishing."""


class SigningError(RepositoryError):
    """A role could not be signed by a threshold of its keys."""


class NotFoundError(RepositoryError):
    """A package, version, layout or role that was named does not exist."""


class LockedError(RepositoryError):
    """Another writer holds the repository lock for longer than we would wait."""


class PendingSignaturesError(RepositoryError):
    """An offline role needs more signatures; it was saved for a signing ceremony."""

    def __init__(self, message: str, role: str, have: int, need: int) -> None:
        super().__init__(message)
        self.role, self.have, self.need = role, have, need
