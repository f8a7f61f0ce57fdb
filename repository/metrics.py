"""``/metrics`` for Prometheus: the repository's state, read at scrape time, and API counters.

State (seconds to expiry per role, rollout percentages, reports by result,
versions per package) is read from disk when Prometheus scrapes, so every
gunicorn worker answers the same. Request and publish counters are per
process; under ``custody-repo serve`` they are shared through
prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` under
``private/``, set before the workers start).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from custody.repository.reports import ReportStore
from custody.repository.storage import RepoPaths

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class StateCollector(Collector):
    """Gauges computed from the repository on disk at each scrape."""

    def __init__(self, paths: RepoPaths) -> None:
        self.paths = paths

    def collect(self) -> Iterator[Any]:
        from custody.repository.maintenance import status
        from custody.repository.releases import load_index
        from custody.repository.repo import CustodyRepository
        from custody.repository.status import expires_at, is_bin

        repo = CustodyRepository(self.paths.root)
        now = datetime.now(UTC)
        expiry = GaugeMetricFamily("custody_role_expiry_seconds",
                                   "Seconds until the role's metadata expires (bins: earliest)",
                                   labels=["role"])
        earliest: dict[str, float] = {}
        for row in status(repo):
            role = "bins" if is_bin(row["role"]) else row["role"]
            when = expires_at(row["expires"])
            seconds = (when - now).total_seconds()
            earliest[role] = min(seconds, earliest.get(role, seconds))
        for role, seconds in sorted(earliest.items()):
            expiry.add_metric([role], seconds)
        yield expiry
        versions = GaugeMetricFamily("custody_package_versions",
                                     "Versions published per package", labels=["package"])
        rollout = GaugeMetricFamily("custody_rollout_percent",
                                    "Share of hosts a rollout gives the new version",
                                    labels=["package", "channel", "version", "state"])
        packages = self.paths.targets / "packages"
        for folder in sorted(packages.glob("*")) if packages.exists() else []:
            index = load_index(repo, folder.name)
            if not index.versions:
                continue
            versions.add_metric([index.name], len(index.versions))
            for channel, r in sorted(index.rollouts.items()):
                rollout.add_metric([index.name, channel, r.version, r.state], r.percent)
        yield versions
        yield rollout
        yield self._pending(now)
        reports = GaugeMetricFamily("custody_reports", "Health reports stored, by result",
                                    labels=["result"])
        store = ReportStore.open(self.paths)
        try:
            for result, count in sorted(store.by_result().items()):
                reports.add_metric([result], count)
        finally:
            store.close()
        yield reports


    def _pending(self, now: datetime) -> GaugeMetricFamily:
        """How long each change has waited for offline signatures (a ceremony not held)."""
        from custody.repository.pending import draft_dir, is_draft, load_all

        pending = GaugeMetricFamily(
            "custody_pending_change_age_seconds",
            "Seconds a change has waited for offline signatures (genesis: the first version)",
            labels=["change"])
        for change in load_all(self.paths):
            created = datetime.strptime(change.created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            pending.add_metric([change.name], (now - created).total_seconds())
        if is_draft(self.paths):
            saved = (draft_dir(self.paths) / "pending.json").stat().st_mtime
            pending.add_metric(["genesis"], now.timestamp() - saved)
        return pending


class Metrics:
    """The counters the server updates, and the page Prometheus scrapes."""

    def __init__(self, paths: RepoPaths) -> None:
        self.paths = paths
        self.counters = CollectorRegistry(auto_describe=True)
        self.requests = Counter("custody_api_requests", "API requests by endpoint and status",
                                ["endpoint", "status"], registry=self.counters)
        self.publishes = Counter("custody_api_publishes", "Releases published through the API",
                                 registry=self.counters)

    def render(self) -> tuple[bytes, str]:
        registry = CollectorRegistry()
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            multiprocess.MultiProcessCollector(registry)
        else:
            registry.register(_Forward(self.counters))
        registry.register(StateCollector(self.paths))
        return generate_latest(registry), CONTENT_TYPE_LATEST


class _Forward(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        yield from self.registry.collect()
