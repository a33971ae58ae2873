"""``/metrics`` in Prometheus' text format (prometheus-client), read from the store at each
scrape by a custom collector: the figures are the overview's (:func:`newsletter.sending.stats.overview`),
so the dashboard, ``newsletter stats`` and a scrape agree. Nothing is counted in memory: a
scrape of any web process gives the same answer, and a restart loses nothing.

Every metric is a gauge, as the ledger's rows move between states (a failed message is
sent later) and the store, not the process, holds the counts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..sending.stats import OUTCOMES, Overview, edition_outcomes, overview
from ..settings import Settings
from ..store import Store


def _epoch(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class StoreCollector(Collector):
    """The metrics of one overview, and the progress of the latest edition."""

    def __init__(self, figures: Overview, latest: tuple[str, dict[str, int]] | None):
        self.figures = figures
        self.latest = latest

    def collect(self) -> Iterator[GaugeMetricFamily]:
        figures = self.figures
        messages = GaugeMetricFamily(
            "newsletter_messages", "Messages in the delivery ledger, by status.", labels=["status"]
        )
        for status in sorted({*OUTCOMES, *figures.messages}):
            messages.add_metric([status], figures.messages.get(status, 0))
        yield messages

        progress = GaugeMetricFamily(
            "newsletter_edition_messages",
            "Messages of the latest edition, by status.",
            labels=["edition", "status"],
        )
        if self.latest:
            edition, counts = self.latest
            for status, n in sorted(counts.items()):
                progress.add_metric([edition, status], n)
        yield progress

        subscribers = GaugeMetricFamily(
            "newsletter_subscribers", "Subscribers, by status.", labels=["status"]
        )
        for status, n in figures.subscribers.items():
            subscribers.add_metric([status], n)
        yield subscribers

        rates = figures.rates
        yield GaugeMetricFamily(
            "newsletter_bounce_rate",
            "Bounces per message over the editions of the last 30 days.",
            value=rates.bounce_rate,
        )
        yield GaugeMetricFamily(
            "newsletter_complaint_rate",
            "Spam complaints per message over the editions of the last 30 days.",
            value=rates.complaint_rate,
        )

        papers = GaugeMetricFamily(
            "newsletter_ingest_papers",
            "Papers of each source's last ingest, by result.",
            labels=["source", "result"],
        )
        failures = GaugeMetricFamily(
            "newsletter_ingest_failures",
            "Failed requests of each source's last ingest.",
            labels=["source"],
        )
        failed_runs = GaugeMetricFamily(
            "newsletter_ingest_failed_runs",
            "Recent ingest runs of each source that had failures.",
            labels=["source"],
        )
        last_ingest = GaugeMetricFamily(
            "newsletter_ingest_last_timestamp_seconds",
            "When each source was last ingested (Unix time).",
            labels=["source"],
        )
        for source in figures.sources:
            for result, n in source.last.items():
                papers.add_metric([source.source, result], n)
            failures.add_metric([source.source], len(source.last_failures))
            failed_runs.add_metric([source.source], source.failed_runs)
            if (at := _epoch(source.last_at)) is not None:
                last_ingest.add_metric([source.source], at)
        yield from (papers, failures, failed_runs, last_ingest)

        durations = GaugeMetricFamily(
            "newsletter_last_run_seconds",
            "Where the last delivery run's time went (rank: planning the edition).",
            labels=["step"],
        )
        stats = (figures.last_run or {}).get("stats") or {}
        for step in ("total", "rank", "deliver", "render", "compose", "ledger", "wait"):
            if isinstance(stats.get(step), int | float):
                durations.add_metric([step], float(stats[step]))
        yield durations

        yield GaugeMetricFamily(
            "newsletter_worker_running",
            "Whether a sender holds the sending lock (1) or not (0).",
            value=1.0 if figures.worker.get("running") else 0.0,
        )


def metrics_text(store: Store, settings: Settings, now: float) -> tuple[bytes, str]:
    """The scrape's body and its content type."""
    figures = overview(store, settings, datetime.fromtimestamp(now, UTC))
    latest = figures.editions[-1]["edition"] if figures.editions else None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        StoreCollector(figures, (latest, edition_outcomes(store, latest)) if latest else None)
    )
    return generate_latest(registry), CONTENT_TYPE_LATEST
