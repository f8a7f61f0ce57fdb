"""A self-updating agent, in full: run it with ``custody run myagent -- python3 agent.py``.

``python3 agent.py --self-test`` runs its self-test alone, as a health check
(``custody health-check set myagent -- python3 agent.py --self-test``).

It lives in its own package (``myagent``), so custody installed this very
file after TUF and in-toto verified it. ``custody run`` starts it in the
current version's directory; exit code 75 asks for a restart, into whatever
version is current by then.
"""

from __future__ import annotations

import os
import sys
import time

from custody.client.agent import Agent
from custody.client.errors import ClientError

POLL_SECONDS = float(os.environ.get("MYAGENT_POLL_SECONDS", "3600"))


def healthy() -> bool:
    """The agent's own self-test: configuration loads, its port opens, its state reads."""
    return True


def do_work() -> None:
    """Whatever the agent is for."""


def main(once: bool = False) -> int:
    agent = Agent.from_environment()
    if agent.awaiting_confirmation():  # this is a new version, on probation
        if not healthy():
            agent.rollback("self-test failed")  # recorded as known bad; never retried
            agent.restart()  # the supervisor starts the previous version
        agent.confirm()  # live from now on
    while True:
        try:
            offer = agent.check()  # TUF-verified metadata only; skips known-bad versions
            if offer:
                agent.update(confirm_within=120)  # TUF + in-toto, unpack, switch
                agent.restart()
        except ClientError as exc:  # refused, unreachable, ...: keep running this version
            print(f"update check failed ({type(exc).__name__}): {exc}", file=sys.stderr)
        do_work()
        if once:
            return 0
        time.sleep(POLL_SECONDS)


if __name__ == "__main__":
    if "--self-test" in sys.argv:
        sys.exit(0 if healthy() else 1)
    sys.exit(main(once="--once" in sys.argv))
