"""The agent of the day-in-the-life test: docs/examples/agent.py, with a journal.

Every start and every unit of work is appended to ``$FLEET_JOURNAL`` as
``host version state`` (state: ``start``, ``probation``, ``live``), so the
test can prove afterwards which version each host ever ran, and how. The
self-test fails in a release whose ``FRAGILE`` file is present on hosts whose
client home holds a ``fragile`` file: the bad release of the day.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from custody.client.agent import Agent
from custody.client.errors import ClientError

POLL_SECONDS = float(os.environ.get("MYAGENT_POLL_SECONDS", "0.3"))
HOST = os.environ["FLEET_HOST"]


def journal(state: str) -> None:
    version = Path("VERSION").read_text().strip()
    with open(os.environ["FLEET_JOURNAL"], "a") as log:
        log.write(f"{HOST} {version} {state}\n")


def healthy() -> bool:
    fragile_release = Path("FRAGILE").exists()
    fragile_host = (Path(os.environ["CUSTODY_HOME"]) / "fragile").exists()
    return not (fragile_release and fragile_host)


def main() -> int:
    agent = Agent.from_environment()
    journal("start")
    if agent.awaiting_confirmation():
        journal("probation")
        if not healthy():
            agent.rollback("self-test failed")
            agent.restart()
        agent.confirm()
    while True:
        try:
            if agent.check():
                agent.update(confirm_within=60)
                agent.restart()
        except ClientError as exc:
            print(f"update check failed ({type(exc).__name__}): {exc}", file=sys.stderr)
        journal("live")
        time.sleep(POLL_SECONDS)


if __name__ == "__main__":
    sys.exit(main())
