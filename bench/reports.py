"""Health-report ingest: reports stored per second by custody-repo serve, SQLite vs PostgreSQL.

A fleet's hosts POST batches of reports to ``/api/v1/reports``; the server
(8 gunicorn workers) stores them and checks the rollouts they concern. The
same load runs against the default SQLite file and against a PostgreSQL
server (Debian's, started for the run), in the same run.

    python bench/reports.py [--seconds 10] [--senders 8] [--batch 50]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BIN, compile_sources, table, write_result
from custody.keys_tooling.keys import generate_key, write_key_pair
from custody.repository.storage import RepoPaths
from custody.repository.tokens import create_token
from tests.helpers import make_repo, running_postgres, running_server

WORKERS = 8


def load(url: str, token: str, seconds: float, senders: int, batch: int) -> tuple[int, int]:
    """(reports stored, failed requests) by ``senders`` threads posting for ``seconds``."""

    def sender(n: int) -> tuple[int, int]:
        session = requests.Session()
        stored = failed = 0
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline:
            body = [{"package": "hello", "from": "1.0.0", "to": "2.0.0", "result": "updated",
                     "exit_code": 0, "client_id": f"s{n}-h{i}-{j}"} for j in range(batch)]
            i += 1
            answer = session.post(f"{url}/api/v1/reports", json=body, timeout=30,
                                  headers={"Authorization": f"Bearer {token}"})
            if answer.status_code == 202:
                stored += batch
            else:
                failed += 1
        return stored, failed

    with ThreadPoolExecutor(senders) as pool:
        results = list(pool.map(sender, range(senders)))
    return sum(r[0] for r in results), sum(r[1] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    compile_sources()
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name, running_postgres() as postgres:
        tmp = Path(tmp_name)
        keys = tmp / "keys"
        keys.mkdir()
        for name in ("root", "targets", "owner", "online"):
            write_key_pair(generate_key("ed25519"), keys / name, None)
        for label in ("SQLite (private/reports.sqlite, the default)",
                      "PostgreSQL (custody-repo database set)"):
            repo = tmp / f"repo-{len(rows)}"
            make_repo(repo, keys)
            if label.startswith("PostgreSQL"):
                subprocess.run([str(BIN / "custody-repo"), "database", "set", str(repo),
                                postgres], check=True, capture_output=True)
            _, token = create_token(RepoPaths(repo), "fleet", "report")
            with running_server(repo, workers=WORKERS) as url:
                load(url, token, 1.0, args.senders, args.batch)  # warm every worker
                stored, failed = load(url, token, args.seconds, args.senders, args.batch)
            rows.append([label, f"{stored / args.seconds:,.0f}", failed])
    text = (f"### Health-report ingest ({WORKERS} server workers, {args.senders} senders, "
            f"batches of {args.batch}, {args.seconds:.0f} s)\n\n"
            + table(["store", "reports stored per second", "failed requests"], rows))
    write_result("reports", text)


if __name__ == "__main__":
    main()
