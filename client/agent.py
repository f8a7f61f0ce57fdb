"""The self-update API for agents, and ``custody run``, the supervisor that restarts them.

An agent that custody installed updates itself in four moves, each of which
can be interrupted at any point without leaving an unproven version live::

    from custody.client.agent import Agent

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
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from packaging.version import Version

from custody.client.config import default_home
from custody.client.errors import EXIT_UNHEALTHY, ConfigError, Interrupted
from custody.client.packages import Outcome, PackageManager
from custody.client.reports import record, report
from custody.client.state import CONFIRMATION, MAX_INTERRUPTED, State

#: The exit code with which an agent asks its supervisor to start it again
#: (in whatever version is now current): EX_TEMPFAIL from sysexits.h.
RESTART_EXIT = 75
PACKAGE_ENV = "CUSTODY_PACKAGE"
DEFAULT_CONFIRM_WITHIN = 120.0


class Agent:
    """One installed package that updates itself (see the module docstring).

    An agent lives for days; a TUF session (python-tuf's `Updater`) is made
    for one refresh. So the agent holds configuration only, its name and
    home, and every call starts a session of its own (`_session`): each
    `check` refreshes from the trusted metadata on disk, and nothing one poll
    learned (an outage, a refusal, a timestamp) outlives it. A release
    published while the agent runs is seen by its next poll; a repository
    that comes back is reached by the first poll after it does.
    """

    def __init__(self, name: str, home: Path | None = None) -> None:
        self.name = name
        self.home = home or default_home()

    def _session(self) -> PackageManager:
        """A fresh session: the configuration as it is now, and a TUF refresh not yet made."""
        return PackageManager(self.home)

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
        offered, _ = self._session().updater.resolve_version(self.name, None, package.channel,
                                                            package.current)
        if Version(offered) <= Version(package.current) or package.failure(offered):
            return None
        return offered

    def update(self, confirm_within: float = DEFAULT_CONFIRM_WITHIN) -> Outcome:
        """Verify and switch to the channel's version, on probation for ``confirm_within`` s."""
        channel = self._state().channel
        return self._session().install(self.name, None, channel, confirm_within=confirm_within)

    def confirm(self) -> Outcome:
        """This version is healthy: make it live (too late after the deadline), and report it."""
        session = self._session()
        return report_probation(session, session.confirm(self.name), healthy=True)

    def rollback(self, reason: str = "reported unhealthy by the agent") -> Outcome:
        """Give up on the version on probation (reported), or, if none, roll back the live one."""
        session = self._session()
        if self._state().pending is not None:
            return report_probation(session, session.reject(self.name, reason), healthy=False)
        return session.rollback(self.name)

    @staticmethod
    def restart() -> NoReturn:
        """Ask the supervisor to start the agent again, in the now current version."""
        sys.exit(RESTART_EXIT)


def report_probation(session: PackageManager, outcome: Outcome, healthy: bool) -> Outcome:
    """Send the end of a probation to the repository, if this host opted in to reports.

    An agent's new version is proven (or not) here, not by ``custody update``:
    so this is where its rollout learns that it failed, and pauses itself
    when too many hosts say so. A confirmation (``healthy``) is an "updated"
    report; a rejection (``reject`` returns the version still live as
    ``version`` and the rejected one as ``previous``) an "unhealthy" one with
    its reason. Nothing is reported when nothing changed; reporting never raises.
    """
    if not outcome.changed:
        return outcome
    config = session.config
    if not healthy:
        sent = report(config, outcome.name, "unhealthy", EXIT_UNHEALTHY, outcome.version,
                      outcome.previous, outcome.note)
    else:
        sent = report(config, outcome.name, "updated", 0, outcome.previous, outcome.version)
    record(session.home, config, [sent])
    return outcome


def _stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> int:
    """SIGTERM the agent, SIGKILL it after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def _until(deadline: float | None) -> str:
    return datetime.fromtimestamp(deadline or 0, UTC).strftime("%H:%M:%S UTC")


def _after_restart(home: Path, name: str, version: str) -> str:
    """What an agent that exited with `RESTART_EXIT` did, as the state now tells it."""
    package = State.load(home).package(name)
    failure = package.failure(version)
    if failure is not None and package.current != version:
        return f"{name} {version} rolled itself back ({failure['reason']}); starting " \
               f"{package.current}"
    pending = package.pending
    if pending is not None and pending.version != version:
        return f"{name} {version} installed {pending.version}; starting it on probation " \
               f"until {_until(pending.deadline)}"
    return f"{name} {version} asked to be restarted; starting {package.current}"


def _left_on_probation(home: Path, name: str, version: str) -> str:
    """What a signal to the supervisor leaves behind: said, since it rolls nothing back."""
    pending = State.load(home).package(name).pending
    if pending is None or pending.kind != CONFIRMATION or pending.version != version:
        return f"stopped {name} {version}"
    return (f"stopped {name} {version}, which stays on probation until "
            f"{_until(pending.deadline)}: the next 'custody run' starts it again to confirm; "
            f"after that time it is rolled back, and a later update tries it again (attempt "
            f"{_attempt(home, name, version)} of {MAX_INTERRUPTED})")


def _attempt(home: Path, name: str, version: str) -> int:
    """Which interrupted attempt a probation stopped now would be."""
    tried = State.load(home).package(name).interrupted.get(version, {})
    return int(tried.get("attempts", 0)) + 1


def supervise(home: Path, name: str, command: Sequence[str], poll: float = 0.2,
              log: object = None) -> int:
    """Run ``command`` as the agent ``name`` (see the module docstring); its exit code.

    The command runs with the version's directory as its working directory
    and ``CUSTODY_HOME``, ``CUSTODY_PACKAGE`` and ``CUSTODY_VERSION`` set.
    The supervisor holds no session: each start reads the state afresh, and
    each rollback is a session of its own.

    A signal to the supervisor stops the agent first, then propagates
    (`Interrupted`, whose ``aftermath`` says what is left: a version on
    probation stays pending, with the deadline it had, since the stop says
    nothing about its health; the next start resumes its probation).
    """
    say = log if callable(log) else (lambda message: None)
    while True:
        for sentence in PackageManager(home).recover():
            say(sentence)
        package = State.load(home).package(name)
        pending = package.pending if package.pending and \
            package.pending.kind == CONFIRMATION else None
        version = pending.version if pending else package.current
        if pending is not None:  # watched from now on: a missed deadline is a verdict
            PackageManager(home).watch_probation(name, True)
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
                        session = PackageManager(home)
                        report_probation(session, session.reject(
                            name, "did not confirm its health before the deadline"),
                            healthy=False)
                        say(f"{name} {version} did not confirm its health in time; "
                            f"rolled back to {now.current}")
                        break
                if code is None:
                    time.sleep(poll)
        except Interrupted as exc:
            _stop(proc)
            if pending is not None:  # nobody watches it now: a missed deadline is no verdict
                PackageManager(home).watch_probation(name, False, timeout=5.0)
            exc.aftermath = _left_on_probation(home, name, version)
            raise
        except BaseException:
            _stop(proc)
            raise
        if code is None:
            continue  # rolled back after a missed deadline: start the previous version
        if code == RESTART_EXIT:
            say(_after_restart(home, name, version))
            continue
        if pending is not None and State.load(home).package(name).pending is not None:
            session = PackageManager(home)
            report_probation(session, session.reject(
                name, f"exited with code {code} before confirming its health"), healthy=False)
            say(f"{name} {version} exited with code {code} before confirming its health; "
                "rolled back")
            continue
        return code
