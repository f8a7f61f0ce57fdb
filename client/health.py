"""Health checks: run a package's own check in its new version, bounded and killable.

A check is a command (argv, no shell) run with the new version's directory
as its working directory and ``CUSTODY_PACKAGE``, ``CUSTODY_VERSION`` and
``CUSTODY_PREVIOUS_VERSION`` in its environment. It runs in a session of its
own, so that a timeout or an interrupt kills it and everything it started,
and its output (stdout and stderr together) goes to a file, so that a
chatty check can never block on a full pipe; the last lines are kept for
the failure message.

Signals: `deferred_signals` turns SIGINT and SIGTERM into `Interrupted`
exceptions where they land, and `signals_blocked` holds them back during a
rollback so that a second Ctrl-C cannot interrupt the switch back.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from custody.client.errors import Interrupted

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0
TAIL_LINES = 10
HANDLED = (signal.SIGINT, signal.SIGTERM)


@dataclass
class CheckResult:
    """How a check ended: ``ok``, a short ``detail`` and the last lines it printed."""

    ok: bool
    detail: str
    tail: str

    @property
    def reason(self) -> str:
        last = self.tail.strip().splitlines()[-1:] if self.tail.strip() else []
        return self.detail + (f": {last[0][:200]}" if last else "")


def _child_setup(mask: set[int | signal.Signals], parent: int) -> None:
    """In the check's process: the caller's signal mask, and death with custody (Linux).

    The parent blocks SIGINT and SIGTERM while it forks (a signal landing in
    fork's own handlers would be lost); the check gets the mask from before.
    A custody killed by SIGKILL cannot kill its check; the kernel can, through
    PR_SET_PDEATHSIG. The next custody command then rolls the version back
    (`PackageManager.recover`). A custody killed between the fork and the prctl
    call is caught by comparing the parent: the check then never starts.
    """
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # custody died before the prctl took effect
        os._exit(1)


def _kill_group(proc: subprocess.Popen[bytes], grace: float = 2.0) -> None:
    """SIGTERM the check's session, then SIGKILL what is left after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # grandchildren left behind
            return
        except subprocess.TimeoutExpired:
            continue


def run_check(command: Sequence[str], cwd: Path, env: dict[str, str],
              timeout: float = DEFAULT_TIMEOUT) -> CheckResult:
    """Run ``command``; whatever interrupts the wait kills the check before it propagates."""
    with tempfile.TemporaryFile() as output:
        proc: subprocess.Popen[bytes] | None = None
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        try:
            try:
                proc = subprocess.Popen(
                    list(command), cwd=cwd, stdin=subprocess.DEVNULL, stdout=output,
                    stderr=subprocess.STDOUT, env={**os.environ, **env},
                    start_new_session=True,
                    preexec_fn=functools.partial(_child_setup, mask, os.getpid()))
            except OSError as exc:
                return CheckResult(False, f"cannot run {command[0]!r}: {exc.strerror}", "")
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a held signal lands here
            started = time.monotonic()
            code: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            assert proc is not None
            _kill_group(proc)
            code = None
        except BaseException:
            if proc is not None:
                _kill_group(proc)
            raise
        output.seek(0)
        text = output.read()[-65536:].decode(errors="replace")
    if text:
        log.info("health check output:\n%s", text.rstrip())
    tail = "\n".join(text.rstrip().splitlines()[-TAIL_LINES:])
    if code is None:
        return CheckResult(False, f"timed out after {timeout:g} s", tail)
    if code != 0:
        detail = f"exit code {code}" if code > 0 else f"killed by signal {-code}"
        return CheckResult(False, detail, tail)
    log.info("health check passed in %.1f s", time.monotonic() - started)
    return CheckResult(True, "passed", tail)


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise `Interrupted` in the main thread while this is active."""
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in HANDLED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back (delivered on exit): for rollbacks, which must finish."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
