"""What every custody command line shares: refusals as one sentence and exit code 1."""

from __future__ import annotations

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
