"""What every custody command line shares: a bug is one sentence and exit code 70.

Kept free of click (see `custody.keys_tooling.clickutil` for the click parameter
types): ``custody-intoto`` is an argparse program whose start-up time is part
of every verification.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from typing import Any, NoReturn

EX_SOFTWARE = 70  # sysexits.h: an internal software error

#: The extras of pyproject.toml by the top-level modules they install (a test keeps the
#: two equal). ``pip install custody`` is the client a host needs; a command that needs
#: an extra's module that is absent says which extra to install, in one sentence.
EXTRAS: dict[str, str] = {
    "flask": "repository", "werkzeug": "repository", "gunicorn": "repository",
    "boto3": "repository", "botocore": "repository", "prometheus_client": "repository",
    "requests": "repository", "sigstore": "keyless", "sigstore_models": "keyless",
    "psycopg": "postgresql", "psycopg_binary": "postgresql",
}
#: What a command that lacks an extra's module exits with: the operation failed
#: (1 in every custody command's table), and nothing was done.
EXIT_MISSING_EXTRA = 1


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The sentence for an import of an extra's module that is not installed, else None."""
    module = (exc.name or "").partition(".")[0]
    extra = EXTRAS.get(module)
    if extra is None:
        return None
    return (f"this command needs the {extra} extra ({module} is not installed): "
            f"pip install 'custody[{extra}]'")


def _exit_now(code: int) -> None:
    """Exit without tearing the heap down: flush what the user should see, then leave.

    A verification that loaded three links of 60,000 artifacts each spends
    about 80 ms at exit freeing objects the operating system reclaims at
    once anyway (mypy exits the same way for the same reason). Output
    streams and logging handlers are flushed first; nothing else in these
    commands waits for interpreter shutdown.
    """
    import logging
    import os

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    logging.shutdown()
    os._exit(code)


def guarded(program: str, main: Callable[[], Any],
            fast_exit: bool = False) -> Callable[[], None]:
    """A console-script entry point: a bug prints one sentence and exits 70, not a traceback.

    The traceback is written to a file under the temporary directory (named
    in the sentence, for a bug report) and also printed with ``-v`` or
    ``--verbose``. Everything the command expects to go wrong is handled in
    the command itself, with its own exit code; this is for the rest.
    ``fast_exit`` ends a successful or refused run with `_exit_now`.
    """

    def run() -> None:
        try:
            result = main()
        except (SystemExit, KeyboardInterrupt):
            raise
        except ModuleNotFoundError as exc:
            sentence = missing_extra(exc)
            if sentence is None:
                _crashed(program, exc)
            print(f"{program}: {sentence}", file=sys.stderr)
            sys.exit(EXIT_MISSING_EXTRA)
        except Exception as exc:  # the last line of defence: a bug
            _crashed(program, exc)
        code = result if isinstance(result, int) else 0
        if fast_exit:
            _exit_now(code)
        sys.exit(code)

    return run


def _crashed(program: str, exc: Exception) -> NoReturn:
    """Write the traceback to a file, say one sentence naming it, exit `EX_SOFTWARE`."""
    import tempfile
    import time
    import traceback

    details = traceback.format_exc()
    fd, path = tempfile.mkstemp(prefix=f"{program}-crash-{time.strftime('%Y%m%d')}-",
                                suffix=".txt")
    with open(fd, "w") as out:
        out.write(f"{program} {' '.join(sys.argv[1:])}\n\n{details}")
    if "-v" in sys.argv[1:] or "--verbose" in sys.argv[1:]:
        sys.stderr.write(details)
    message = str(exc).splitlines()[0][:200] if str(exc) else ""
    print(f"{program}: internal error ({type(exc).__name__}: {message}); details "
          f"in {path}", file=sys.stderr)
    sys.exit(EX_SOFTWARE)


class VersionAction(argparse.Action):
    """``--version`` for argparse that looks the version up only when asked.

    ``importlib.metadata`` costs about 20 ms to import, on every start of a
    command that an agent may run every few minutes; click's
    ``version_option(package_name=...)`` is lazy the same way.
    """

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=default,
                         help=help or "show the program's version and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        from importlib.metadata import version

        print(f"{parser.prog} {version('custody')}")  # on stdout, as argparse's own action
        parser.exit()

