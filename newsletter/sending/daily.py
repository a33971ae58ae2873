"""The daily run: ingest from the enabled sources, then send the edition.

A source that fails does not stop the edition: it goes out with what the other sources
(and earlier ingests) brought, and the log and the report say which source failed."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from ..ranking import embeddings
from ..settings import Settings, SettingsError
from ..sources.registry import build_source, http_client
from ..store import Store
from ..store.ingest import IngestReport, IngestSummary, ingest_sources
from ..subscribers.subscriptions import expire_pending
from .delivery import send_edition
from .report import SendReport

log = logging.getLogger(__name__)


@dataclass
class DailyReport:
    ingest: IngestSummary
    send: SendReport

    def to_dict(self) -> dict:
        return {"ingest": self.ingest.to_dict(), "send": self.send.to_dict()}


def ingest_enabled_sources(store: Store, settings: Settings) -> IngestSummary:
    """Fetch every source enabled in the settings. A source that cannot even be built (a
    setting missing) is reported like one that failed, and the others still run."""
    sources, summary = [], IngestSummary()
    for name in settings.sources:
        try:
            sources.append(build_source(name, settings))
        except SettingsError as exc:
            log.error("source %s is not usable: %s", name, exc)
            summary.sources[name] = _failed(str(exc))
    if sources:
        with http_client(settings) as client:
            summary.sources.update(ingest_sources(store, sources, client).sources)
    summary.embedded, summary.embedded_profiles = embeddings.embed_pending(store, settings)
    return summary


def _failed(message: str) -> IngestReport:
    return IngestReport(failures=[message])


def run_daily(store: Store, settings: Settings, edition: date) -> DailyReport:
    expire_pending(store, settings)
    summary = ingest_enabled_sources(store, settings)
    if summary.failed:
        failed = [name for name, r in summary.sources.items() if r.failures]
        log.warning("sending the edition without what %s would have brought", ", ".join(failed))
    return DailyReport(summary, send_edition(store, settings, edition))
