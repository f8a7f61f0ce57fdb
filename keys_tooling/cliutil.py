"""What every custody command line shares: refusals as one sentence and exit code 1."""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def fails_cleanly(program: str, *errors: type[BaseException]) -> Callable[[F], F]:
    """Decorate a click command: the given errors print ``program: reason`` and exit.

    The exit code is the error's ``exit_code`` attribute, 1 without one; an
    ``output`` attribute (a health check's last lines) is shown indented under
    the sentence. Usage errors stay click's (exit code 2); anything else is a
    bug and keeps its traceback.
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except errors as exc:
                click.echo(f"{program}: {exc}", err=True)
                output = getattr(exc, "output", "")
                if output:
                    click.echo("\n".join(f"  | {line}" for line in output.splitlines()),
                               err=True)
                sys.exit(getattr(exc, "exit_code", 1))

        return wrapper  # type: ignore[return-value]

    return decorate


class Seconds(click.ParamType):
    """A finite number of seconds (or days): ``nan``, ``inf`` and negatives are usage errors."""

    name = "seconds"

    def __init__(self, allow_zero: bool = False) -> None:
        self.allow_zero = allow_zero

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        import math

        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number) or number < 0 or (number == 0 and not self.allow_zero):
            self.fail(f"{value!r} must be a finite number above 0"
                      + (" (or 0)" if self.allow_zero else ""), param, ctx)
        return number


PORT = click.IntRange(1, 65535)
POSITIVE = click.IntRange(min=1)


EX_SOFTWARE = 70  # sysexits.h: an internal software error


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
        except Exception as exc:  # the last line of defence: a bug
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
            click.echo(f"{program}: internal error ({type(exc).__name__}: {message}); details "
                       f"in {path}", err=True)
            sys.exit(EX_SOFTWARE)
        code = result if isinstance(result, int) else 0
        if fast_exit:
            _exit_now(code)
        sys.exit(code)

    return run


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

