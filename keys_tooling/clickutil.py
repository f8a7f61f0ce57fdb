"""click pieces the custody command lines share: refusals as one sentence, number types."""

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
