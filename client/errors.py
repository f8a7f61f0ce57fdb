"""Every refusal and failure of the client, in one place, each with its exit code.

`TufRefusal` wraps python-tuf's errors (freshness, rollback, signatures,
lengths, hashes); `IntotoRefusal` wraps the in-toto engine's (layout, step,
rule, artifact, key). The command line prints ``str(error)`` as its one
sentence and exits with the class's ``exit_code``: one table, shared by
every ``custody`` command, so that a fleet's monitoring can tell an attack
(1) from an outage (3) from a bad release (4) without parsing sentences.

=====  ==========================================================
code   meaning
=====  ==========================================================
0      done, or already up to date (a known-bad version skipped)
1      refused for security: TUF or in-toto (and downgrades)
2      usage: bad arguments, client not initialised
3      repository unreachable on every mirror; try later
4      health check failed (or never confirmed); rolled back
5      not found: no such package, version or channel; not installed
6      local failure: unpacking, disk, another installer busy
7      the installer (pip, uv) failed for its own reasons
130    interrupted by SIGINT (143 by SIGTERM); rolled back first
=====  ==========================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_UNHEALTHY = 4
EXIT_NOT_FOUND = 5
EXIT_LOCAL = 6
EXIT_INSTALLER = 7
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

#: The table of exit codes, as docs/cli.md and the README show it (a test keeps them equal).
EXIT_CODES: tuple[tuple[str, str], ...] = (
    ("0", "done, or already up to date (a known-bad version skipped counts as done)"),
    ("1", "refused for security: TUF or in-toto refused, or a downgrade was refused"),
    ("2", "usage: bad arguments, or the client home is not initialised"),
    ("3", "repository unreachable on every mirror (connection, DNS, timeout, 5xx); try later"),
    ("4", "a health check failed, or a new version never confirmed; rolled back"),
    ("5", "not found: no such package, version or channel; not installed"),
    ("6", "local failure: unpacking, disk, another custody process busy"),
    ("7", "custody pip/uv: the installer failed for its own reasons (no matching "
          "distribution, conflicting requirements); its output says why"),
    ("130", "interrupted by SIGINT (143: SIGTERM), after rolling back what was unfinished"),
)


def exit_code_table() -> str:
    """`EXIT_CODES` as a Markdown table."""
    rows = [f"| {code} | {meaning} |" for code, meaning in EXIT_CODES]
    return "\n".join(["| exit code | meaning |", "| --- | --- |", *rows])


#: When ``update`` ends with several failures, the exit code is the first of
#: these that occurred: a security refusal outranks everything else.
EXIT_PRIORITY = (EXIT_REFUSED, EXIT_UNHEALTHY, EXIT_LOCAL, EXIT_NOT_FOUND, EXIT_UNREACHABLE,
                 EXIT_USAGE)


class ClientError(Exception):
    """Base class: an operation was refused or failed; the installed state is unchanged."""

    exit_code = EXIT_REFUSED


class TufRefusal(ClientError):
    """TUF refused the repository's metadata or a download (the layer is named first)."""


class IntotoRefusal(ClientError):
    """in-toto refused the artifact's supply chain."""


class MissingSupplyChainError(ClientError):
    """The target carries no in-toto metadata, and the caller did not opt out."""


class DowngradeError(ClientError):
    """The resolved version is older than the installed one."""


class RepositoryUnreachable(ClientError):
    """No mirror could be reached (connection, DNS, timeout, 5xx): an outage, not an attack."""

    exit_code = EXIT_UNREACHABLE


class PackageNotFoundError(ClientError):
    """No such package, version or channel in the repository (or not installed)."""

    exit_code = EXIT_NOT_FOUND


class InstallError(ClientError):
    """Unpacking or installing failed (unsafe archive, disk error); nothing changed."""

    exit_code = EXIT_LOCAL


class UnsafeArchiveError(InstallError):
    """The artifact's archive would write outside its directory or create devices: refused."""

    exit_code = EXIT_REFUSED


class CorruptArchiveError(InstallError):
    """The artifact is truncated or corrupt: it verified, but cannot be what was built."""

    exit_code = EXIT_REFUSED


class TamperedInstallError(ClientError):
    """The files on disk are not those of the verified artifact (``custody verify``)."""


class BusyError(ClientError):
    """Another custody process held the home's lock for too long."""

    exit_code = EXIT_LOCAL


class HealthCheckError(ClientError):
    """The new version failed its health check and was rolled back.

    ``output`` holds the last lines the check printed, shown under the sentence.
    """

    exit_code = EXIT_UNHEALTHY

    def __init__(self, message: str, output: str = "", version: str | None = None,
                 previous: str | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.output = output
        self.version, self.previous, self.reason = version, previous, reason


class ConfigError(ClientError):
    """The client home is missing or its configuration is malformed."""

    exit_code = EXIT_USAGE


class InstallerUsageError(ConfigError):
    """``custody pip``/``custody uv`` was asked for something custody does not pass on.

    Another package source (an index, find-links, a URL or path requirement),
    an option custody does not know, or no environment to install into: the
    installer never runs.
    """


class InstallerFailed(ClientError):
    """pip or uv exited non-zero with every file custody served verified: not an attack.

    A fleet must tell an unsatisfiable requirement from a refusal (1), so this
    has its own code.
    """

    exit_code = EXIT_INSTALLER


class Interrupted(BaseException):
    """A signal (SIGINT, SIGTERM) arrived; raised where it lands so ``finally`` blocks roll back.

    A ``BaseException``, like ``KeyboardInterrupt``: no ``except Exception``
    may swallow it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum
        #: What the interrupted command left, for its last sentence: an update rolls
        #: back what it had not finished; ``custody run`` says what it leaves pending.
        self.aftermath = "anything unfinished was rolled back"

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
