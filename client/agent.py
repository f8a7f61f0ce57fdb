"""The self-update API for agents, and ``custody run``, the supervisor that restarts them.

An agent that custody installed updates itself in four moves, each of which
can be interrupted at any point without leaving an unproven version live::

    from client.agent import Agent

    agent = Agent.from_environment()        # CUSTODY_HOME, CUSTODY_PACKAGE from `custody run`
    if agent.awaiting_confirmation():       # we are the new version, on probation
        self_test()                         # whatever "healthy" means for this agent
        agent.confirm()                     # now we are live
    offer = agent.check()                   # a newer version, not known bad?
    if offer:
        agent.update(confirm_within=120)    # TUF + in-toto, unpack, switch; pending
        agent.restart()                     # exit 75: the supervisor starts the new version

`supervise` (``custody run NAME -- CMD``) starts the agent in its current
version, restarts it when it exits with `RESTART_EXIT`, and watches a version
on probation: if it exits, or has not confirmed by the deadline, the
supervisor stops it, rolls back (recording the version as failed, so that
the next check skips it) and starts the previous version again. Without a
supervisor, any later ``custody`` command rolls back a probation whose
deadline has passed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from packaging.version import Version

from client.config import default_home
from client.errors import ConfigError
from client.packages import Outcome, PackageManager
from client.state import CONFIRMATION, State

#: The exit code with which an agent asks its supervisor to start it again
#: (in whatever version is now current): EX_TEMPFAIL from sysexits.h.
RESTART_EXIT = 75
PACKAGE_ENV = "CUSTODY_PACKAGE"
DEFAULT_CONFIRM_WITHIN = 120.0


class Agent:
    """One installed package that updates itself (see the module docstring)."""

    def __init__(self, name: str, home: Path | None = None) -> None:
        self.name = name
        self.home = home or default_home()
        self.manager = PackageManager(self.home)

    @classmethod
    def from_environment(cls) -> Agent:
        """The agent ``custody run`` started: ``CUSTODY_PACKAGE`` and ``CUSTODY_HOME``."""
        name = os.environ.get(PACKAGE_ENV)
        if not name:
            raise ConfigError(f"{PACKAGE_ENV} is not set; start the agent with 'custody run'")
        return cls(name)

    def _state(self):
        return State.load(self.home).package(self.name)

    @property
    def version(self) -> str:
        """The version this process runs: the one on probation if any, else the live one."""
        package = self._state()
        return package.pending.version if package.pending else package.current

    def awaiting_confirmation(self) -> bool:
        pending = self._state().pending
        return pending is not None and pending.kind == CONFIRMATION and not pending.expired()

    def check(self) -> str | None:
        """A newer version on the package's channel that is not known bad, or ``None``.

        Reads only TUF-verified metadata (the package index); nothing is
        downloaded or verified with in-toto yet.
        """
        package = self._state()
        offered, _ = self.manager.updater.resolve_version(self.name, None, package.channel,
                                                          package.current)
        if Version(offered) <= Version(package.current) or package.failure(offered):
            return None
        return offered

    def update(self, confirm_within: float = DEFAULT_CONFIRM_WITHIN) -> Outcome:
        """Verify and switch to the channel's version, on probation for ``confirm_within`` s."""
        channel = self._state().channel
        return self.manager.install(self.name, None, channel, confirm_within=confirm_within)

    def confirm(self) -> Outcome:
        """This version is healthy: make it live (too late after the deadline)."""
        return self.manager.confirm(self.name)

    def rollback(self, reason: str = "reported unhealthy by the agent") -> Outcome:
        """Give up on the version on probation (or, if none, roll back the live one)."""
        if self._state().pending is not None:
            return self.manager.reject(self.name, reason)
        return self.manager.rollback(self.name)

    @staticmethod
    def restart() -> NoReturn:
        """Ask the supervisor to start the agent again, in the now current version."""
        sys.exit(RESTART_EXIT)


def _stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> int:
    """SIGTERM the agent, SIGKILL it after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def supervise(home: Path, name: str, command: Sequence[str], poll: float = 0.2,
              log: object = None) -> int:
    """Run ``command`` as the agent ``name`` (see the module docstring); its exit code.

    The command runs with the version's directory as its working directory
    and ``CUSTODY_HOME``, ``CUSTODY_PACKAGE`` and ``CUSTODY_VERSION`` set.
    A signal to the supervisor stops the agent first (`Interrupted` or
    ``KeyboardInterrupt`` propagate after it).
    """
    manager = PackageManager(home)
    say = log if callable(log) else (lambda message: None)
    while True:
        for sentence in manager.recover():
            say(sentence)
        package = State.load(home).package(name)
        pending = package.pending if package.pending and \
            package.pending.kind == CONFIRMATION else None
        version = pending.version if pending else package.current
        env = {**os.environ, "CUSTODY_HOME": str(home), PACKAGE_ENV: name,
               "CUSTODY_VERSION": version}
        proc = subprocess.Popen(list(command), cwd=home / "packages" / name / version, env=env)
        try:
            code = None
            while code is None:
                code = proc.poll()
                if code is None and pending is not None:
                    now = State.load(home).package(name)
                    if now.pending is None:
                        pending = None  # confirmed (or rolled back by someone else)
                    elif now.pending.expired():
                        _stop(proc)
                        manager.reject(name, "did not confirm its health before the deadline")
                        say(f"{name} {version} did not confirm its health in time; "
                            f"rolled back to {now.current}")
                        break
                if code is None:
                    time.sleep(poll)
        except BaseException:
            _stop(proc)
            raise
        if code is None:
            continue  # rolled back after a missed deadline: start the previous version
        if code == RESTART_EXIT:
            say(f"{name} {version} asked to be restarted")
            continue
        if pending is not None and State.load(home).package(name).pending is not None:
            manager.reject(name, f"exited with code {code} before confirming its health")
            say(f"{name} {version} exited with code {code} before confirming its health; "
                "rolled back")
            continue
        return code
