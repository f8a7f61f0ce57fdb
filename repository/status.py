"""What ``custody-repo status`` reports, and what ``status --check`` alerts on.

A repository with hash bins has hundreds or thousands of bin roles that are
alike; listing each one buries what an operator needs (root and targets
expiring, a ceremony waiting). `summarize_bins` folds them into one line,
and `problems` turns the report into the alerts a cron job or CI needs, as
tuf-on-ci's expiry monitoring does: a role that expires within the warning
window, one signed by fewer keys than its threshold, a pending ceremony.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from custody.repository.config import BINS_PREFIX


@dataclass
class BinSummary:
    """The bin roles, folded: how many, which versions, the earliest expiry, signatures."""

    count: int
    versions: tuple[int, int]
    earliest_expiry: str
    fully_signed: int

    def line(self) -> str:
        low, high = self.versions
        versions = f"v{low}" if low == high else f"v{low}-v{high}"
        return (f"{'bins':<12} {self.count} roles, {versions}, earliest expiry "
                f"{self.earliest_expiry}, {self.fully_signed}/{self.count} signed at threshold")


def is_bin(role: str) -> bool:
    return role.startswith(f"{BINS_PREFIX}-")


def summarize_bins(rows: Sequence[Mapping[str, Any]]) -> BinSummary | None:
    bins = [row for row in rows if is_bin(row["role"])]
    if not bins:
        return None
    versions = [row["version"] for row in bins]
    return BinSummary(len(bins), (min(versions), max(versions)),
                      min(row["expires"] for row in bins),
                      sum(row["signatures"] >= row["threshold"] for row in bins))


def expires_at(text: str) -> datetime:
    """A status row's ``expires`` (``2027-11-27T16:57:30Z``) as an aware datetime."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _expires(row: Mapping[str, Any]) -> datetime:
    return expires_at(row["expires"])


ONLINE = ("timestamp", "snapshot", "releases")


def problems(rows: Sequence[Mapping[str, Any]], pending: Sequence[str], days: float,
             online_margin: timedelta = timedelta(hours=6),
             now: datetime | None = None) -> list[str]:
    """One sentence per thing that needs an operator within ``days`` (bins folded).

    Offline roles (root, targets, layouts) are reported when they expire
    within ``days``: someone must hold a signing ceremony. Online roles
    expire in days by design and are re-signed by the server; they are
    reported only when less than ``online_margin`` is left, which means the
    re-signing (the server's timer or a cron'd ``bump``) is not happening.
    """
    now = now or datetime.now(UTC)
    horizon = now + timedelta(days=days)
    online_horizon = now + online_margin
    found: list[str] = []
    expiring_bins = [row for row in rows if is_bin(row["role"])
                     and _expires(row) <= online_horizon]
    unsigned_bins = [row for row in rows if is_bin(row["role"])
                     and row["signatures"] < row["threshold"]]
    for row in rows:
        if is_bin(row["role"]):
            continue
        when = _expires(row)
        if when <= now:
            found.append(f"{row['role']} expired at {row['expires']}")
        elif row["role"] in ONLINE and when <= online_horizon:
            found.append(f"{row['role']} expires at {row['expires']} and was not re-signed: "
                         "is the server's re-signing timer (or a cron'd bump) running?")
        elif row["role"] not in ONLINE and when <= horizon:
            found.append(f"{row['role']} expires at {row['expires']}, within {days:g} days: "
                         "hold a signing ceremony")
        if row["signatures"] < row["threshold"]:
            found.append(f"{row['role']} has {row['signatures']} of {row['threshold']} "
                         "signatures")
    if expiring_bins:
        first = min(expiring_bins, key=_expires)
        found.append(f"{len(expiring_bins)} bin roles expire soon and were not re-signed "
                     f"(first {first['role']} at {first['expires']})")
    if unsigned_bins:
        found.append(f"{len(unsigned_bins)} bin roles are signed below their threshold")
    found += [f"a signing ceremony for {role} is pending (custody-keys pending show, or "
              "drop)" for role in pending]
    return found
