"""Every refusal of the repository, in one place; each message is one sentence.

Each class carries the exit code ``custody-repo`` and ``custody-keys`` end
with (``exit_code``), from one table that their ``--help`` repeats:

=====  ==============================================================
code   meaning
=====  ==============================================================
0      done
1      refused or failed; nothing changed
2      usage: bad arguments
3      saved as a pending change: offline signatures are needed
4      the bucket failed (credentials, network): the change is committed
       in the local tree, or nothing changed; ``custody-repo sync`` finishes it
=====  ==============================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_PENDING = 3
EXIT_BUCKET = 4

#: The table above, as ``custody-repo --help`` and ``custody-keys --help`` print it.
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "done"),
    (EXIT_REFUSED, "refused or failed (one sentence on stderr); nothing changed"),
    (EXIT_USAGE, "usage: bad arguments"),
    (EXIT_PENDING, "saved as a pending change: offline signatures are needed "
                   "(custody-keys pending list)"),
    (EXIT_BUCKET, "the bucket failed (credentials, network): the change is committed in the "
                  "local tree, or nothing changed; custody-repo sync finishes it"),
)


def exit_code_help(intro: str) -> str:
    """``intro`` and the exit-code table, for a click group's help (kept unwrapped)."""
    import textwrap

    rows = "\n".join(textwrap.fill(meaning, 78, initial_indent=f"  {code}  ",
                                    subsequent_indent="     ") for code, meaning in EXIT_CODES)
    return f"{intro}\n\n\b\nExit codes:\n{rows}"


class RepositoryError(Exception):
    """Base class: the repository refused or failed an operation; nothing changed."""

    exit_code = EXIT_REFUSED


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


class BucketError(RepositoryError):
    """The bucket replica refused or could not be reached; the local tree is consistent.

    The message names the bucket, says whether the change was committed
    locally (the bucket then serves the previous state, whole) and that
    ``custody-repo sync`` finishes the upload once the bucket answers.
    """

    exit_code = EXIT_BUCKET


class PendingSignaturesError(RepositoryError):
    """An offline role needs more signatures; it was saved for a signing ceremony."""

    exit_code = EXIT_PENDING

    def __init__(self, message: str, role: str, have: int, need: int) -> None:
        super().__init__(message)
        self.role, self.have, self.need = role, have, need
