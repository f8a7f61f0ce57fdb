"""Staged rollouts: a channel moves to a new version for a growing share of the fleet.

The state lives in the package index (`custody.formats.index.Rollout`), which every
client already reads through TUF: nothing new to fetch, and every change is
a signed, versioned publish. While a rollout runs the channel still names the
previous version; hosts whose stable bucket is below the percentage get the
new one. ``complete`` moves the channel; ``pause`` stops adding hosts (those
already moved stay: a client never moves backwards); ``abort`` ends it with
the channel unchanged.

What a compromised online key can do with a rollout: hold hosts back (pause,
or never raise) or let them in early (raise to 100%): a timing attack on a
genuine release it could mount anyway by moving the channel. What it cannot:
make a host install anything in-toto did not verify (every version still
passes the owners' newest layout) or move a host backwards (the client
refuses lower versions whatever the index says).

With ``max_failure_rate``, the server pauses the rollout itself when the
hosts that reported on the new version failed their health checks at a
higher rate, once ``min_reports`` hosts reported (`check_halt`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from packaging.version import Version

from custody.formats.index import PackageIndex, Rollout
from custody.repository.errors import InvalidReleaseError, NotFoundError
from custody.repository.releases import check_channel, load_index
from custody.repository.repo import CustodyRepository
from custody.repository.reports import ReportStore, Summary


class RolloutError(InvalidReleaseError):
    """A rollout operation that does not fit the rollout's state."""


def _save(repo: CustodyRepository, index: PackageIndex) -> None:
    repo.add_target(PackageIndex.target_path(index.name), index.to_bytes())
    repo.publish_metadata()


def _rollout(index: PackageIndex, channel: str) -> Rollout:
    rollout = index.rollouts.get(channel)
    if rollout is None:
        raise NotFoundError(f"{index.name} has no rollout on {channel!r}")
    return rollout


def start(repo: CustodyRepository, name: str, channel: str, version: str, percent: float,
          max_failure_rate: float | None = None, min_reports: int = 20) -> Rollout:
    """Begin moving ``channel`` to ``version`` for ``percent`` of the hosts."""
    check_channel(channel)
    index = load_index(repo, name)
    found = index.find(version) if index.versions else None
    if found is None:
        raise NotFoundError(f"{name} {version} is not published")
    current = index.channels.get(channel)
    if current is None:
        raise NotFoundError(f"{name} has no {channel!r} channel to roll out on; publish "
                            f"to it first")
    if Version(found) <= Version(current):
        raise RolloutError(f"{name} {channel} is at {current}; a rollout moves it forward, "
                           f"not to {found}")
    if channel in index.rollouts:
        raise RolloutError(f"{name} {channel} already rolls out "
                           f"{index.rollouts[channel].version}; complete or abort it first")
    rollout = Rollout(found, _percent(percent), "active", "", max_failure_rate, min_reports,
                      datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    index.rollouts[channel] = rollout
    _save(repo, index)
    return rollout


def _percent(value: float) -> float:
    if not 0 <= value <= 100:
        raise RolloutError(f"a rollout percentage is 0 to 100, not {value:g}")
    return float(value)


def set_percent(repo: CustodyRepository, name: str, channel: str, percent: float) -> Rollout:
    """Raise the share of hosts (raising only adds hosts; lowering would strand none, but
    would no longer mean what it says: pause instead)."""
    index = load_index(repo, name)
    rollout = _rollout(index, channel)
    if _percent(percent) < rollout.percent:
        raise RolloutError(f"the rollout is at {rollout.percent:g}%; lowering it would not "
                           "move any host back: pause it instead")
    rollout.percent = percent
    _save(repo, index)
    return rollout


def pause(repo: CustodyRepository, name: str, channel: str, reason: str) -> Rollout:
    index = load_index(repo, name)
    rollout = _rollout(index, channel)
    rollout.state, rollout.reason = "paused", reason
    _save(repo, index)
    return rollout


def resume(repo: CustodyRepository, name: str, channel: str) -> Rollout:
    index = load_index(repo, name)
    rollout = _rollout(index, channel)
    rollout.state, rollout.reason = "active", ""
    _save(repo, index)
    return rollout


def complete(repo: CustodyRepository, name: str, channel: str) -> str:
    """Every host gets the version: the channel moves to it and the rollout ends."""
    index = load_index(repo, name)
    rollout = _rollout(index, channel)
    index.channels[channel] = rollout.version
    del index.rollouts[channel]
    _save(repo, index)
    return rollout.version


def abort(repo: CustodyRepository, name: str, channel: str) -> str:
    """End the rollout, the channel unchanged; hosts that moved stay on the new version."""
    index = load_index(repo, name)
    rollout = _rollout(index, channel)
    del index.rollouts[channel]
    _save(repo, index)
    return rollout.version


@dataclass
class Status:
    package: str
    channel: str
    previous: str
    rollout: Rollout
    summary: Summary

    def lines(self) -> list[str]:
        r, s = self.rollout, self.summary
        lines = [f"{self.package} {self.channel}: {self.previous} -> {r.version} at "
                 f"{r.percent:g}% ({r.state}{': ' + r.reason if r.reason else ''})",
                 f"reporting hosts on {r.version}: {s.hosts}, healthy {s.successes}, "
                 f"failed {s.failed} ({s.failure_rate:.0%})"
                 + (f"; halts above {r.max_failure_rate:.0%} once {r.min_reports} hosts "
                    "reported" if r.max_failure_rate is not None else "")]
        lines += [f"  {count} x {reason}" for reason, count in sorted(
            s.failures.items(), key=lambda kv: -kv[1])]
        return lines


def status(repo: CustodyRepository, store: ReportStore, name: str, channel: str) -> Status:
    index = load_index(repo, name)
    rollout = _rollout(index, channel)
    return Status(name, channel, index.channels[channel], rollout,
                  store.summary(name, rollout.version))


def check_halt(repo: CustodyRepository, store: ReportStore, name: str) -> list[str]:
    """Pause every active rollout of ``name`` whose new version fails on too many hosts.

    Runs in a transaction (the server calls it after storing reports); returns
    one sentence per rollout paused.
    """
    index = load_index(repo, name)
    paused = []
    for channel, rollout in index.rollouts.items():
        if rollout.state != "active" or rollout.max_failure_rate is None:
            continue
        summary = store.summary(name, rollout.version)
        if summary.hosts >= rollout.min_reports and \
                summary.failure_rate > rollout.max_failure_rate:
            worst = max(summary.failures.items(), key=lambda kv: kv[1])[0]
            rollout.state = "paused"
            rollout.reason = (f"halted: {summary.failed} of {summary.hosts} reporting hosts "
                              f"({summary.failure_rate:.0%}) failed, above "
                              f"{rollout.max_failure_rate:.0%}; most often {worst}")
            paused.append(f"{name} {channel} {rollout.version}: {rollout.reason}")
    if paused:
        _save(repo, index)
    return paused
