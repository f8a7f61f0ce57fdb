"""``custody-tuf-client``: the tuf-conformance client-under-test protocol.

::

    custody-tuf-client --metadata-dir D init ROOT
    custody-tuf-client --metadata-dir D --metadata-url U refresh
    custody-tuf-client --metadata-dir D --metadata-url U --target-name T [--target-name T2]
                       --target-base-url B --target-dir DIR download

Exit 0 on full success, 1 otherwise. This is the TUF half of the custody
client (python-tuf's ngclient with custody's fetcher), so the public
conformance suite tests it as it tests python-tuf and go-tuf. Trusted
metadata lives under non-versioned names in ``--metadata-dir`` (ngclient's
own cache format); artifacts already in ``--target-dir`` with matching
hashes are not fetched again.

Each target is looked up by its own Updater, refreshed from the trusted
metadata on disk: ngclient keeps delegated roles it has verified for the
rest of an Updater's life, so a role verified through one delegator would
otherwise be trusted when a later lookup reaches it through another. The
price is one timestamp request per additional target.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from tuf.api.exceptions import DownloadError as TufDownloadError
from tuf.api.exceptions import RepositoryError
from tuf.ngclient import Updater

from custody.client.fetcher import MirrorFetcher
from custody.keys_tooling.cliutil import VersionAction, guarded


def _updater(args: argparse.Namespace, target_dir: str | None = None,
             target_url: str | None = None) -> Updater:
    base = args.metadata_url.rstrip("/")
    fetcher = MirrorFetcher([base], timeout=30.0)  # ngclient hands it absolute URLs
    return Updater(args.metadata_dir, base + "/", target_dir,
                   target_url.rstrip("/") + "/" if target_url else None, fetcher=fetcher,
                   bootstrap=None)


def cmd_init(args: argparse.Namespace) -> None:
    Path(args.metadata_dir).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.root, Path(args.metadata_dir) / "root.json")


def cmd_refresh(args: argparse.Namespace) -> None:
    _updater(args).refresh()


def cmd_download(args: argparse.Namespace) -> None:
    Path(args.target_dir).mkdir(parents=True, exist_ok=True)
    for name in args.target_name:
        updater = _updater(args, args.target_dir, args.target_base_url)
        updater.refresh()
        info = updater.get_targetinfo(name)
        if info is None:
            raise RepositoryError(f"target {name} not found")
        local = str(Path(args.target_dir) / quote(name, safe=""))
        if updater.find_cached_target(info, local) is None:
            updater.download_target(info, local)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="custody-tuf-client")
    parser.add_argument("--version", action=VersionAction)
    parser.add_argument("--metadata-dir", required=True)
    parser.add_argument("--metadata-url")
    parser.add_argument("--target-name", action="append", default=[])
    parser.add_argument("--target-base-url")
    parser.add_argument("--target-dir")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init")
    init.add_argument("root")
    sub.add_parser("refresh")
    sub.add_parser("download")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    needs = {"refresh": ["metadata_url"],
             "download": ["metadata_url", "target_name", "target_base_url", "target_dir"]}
    missing = [n for n in needs.get(args.command, []) if not getattr(args, n)]
    if missing:
        parser.error(f"{args.command} needs --{missing[0].replace('_', '-')}")
    try:
        {"init": cmd_init, "refresh": cmd_refresh, "download": cmd_download}[args.command](args)
    except (RepositoryError, TufDownloadError, OSError) as exc:
        print(f"custody-tuf-client: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


#: The console script: bugs exit 70 with one sentence (keys_tooling.cliutil.guarded).
console = guarded("custody-tuf-client", main)
