"""Ingest: read papers from a file, a URL or the remote sources, and store them.

One bad record never stops the others: it is reported (with where it was) and skipped. A
request that fails for good is reported too, and what came before it is kept."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import httpx

from ..fetch import FetchError, fetch_text
from ..models import Paper
from ..sources import FetchFailure, RecordError, Source
from ..sources.arxiv_api import parse_arxiv_atom
from ..sources.arxiv_rss import parse_arxiv_rss
from ..sources.hf_daily import parse_hf_daily
from ..sources.jsonl import looks_like_jsonl, parse_jsonl
from ..sources.sample_page import looks_like_sample_page, parse_sample_page
from .database import Store

log = logging.getLogger(__name__)

FORMATS: dict[str, Callable[[str], Iterable[Paper | RecordError]]] = {
    "sample-page": parse_sample_page,
    "jsonl": parse_jsonl,
    "arxiv-atom": parse_arxiv_atom,
    "arxiv-rss": parse_arxiv_rss,
    "hf-daily": parse_hf_daily,
}
BATCH_SIZE = 500


class IngestError(ValueError):
    """The input as a whole cannot be read (as opposed to one bad record in it)."""


@dataclass
class IngestReport:
    """What one ingest did. ``errors`` are bad records (skipped); ``failures`` are requests
    that failed after their retries (the papers behind them are missing)."""

    fetched: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    #: The newest publication time among the papers read (ISO-8601 UTC), if any had one.
    newest: str | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        data = asdict(self)
        del data["newest"]
        return data

    def __str__(self) -> str:
        text = (
            f"{self.fetched} read: {self.new} new, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.skipped} skipped"
        )
        return text + (f", {len(self.failures)} request(s) failed" if self.failures else "")


@dataclass
class IngestSummary:
    """Several sources' reports, with their totals."""

    sources: dict[str, IngestReport] = field(default_factory=dict)
    #: Papers embedded for the semantic model afterwards (``ranking.embeddings.embed_new_papers``).
    embedded: int = 0

    def to_dict(self) -> dict:
        totals = IngestReport()
        for report in self.sources.values():
            for name in ("fetched", "new", "updated", "unchanged", "skipped"):
                setattr(totals, name, getattr(totals, name) + getattr(report, name))
            totals.errors += report.errors
            totals.failures += report.failures
        return {
            **totals.to_dict(),
            "embedded": self.embedded,
            "sources": {k: v.to_dict() for k, v in self.sources.items()},
        }

    @property
    def failed(self) -> bool:
        return any(r.failures for r in self.sources.values())


def sample_papers_path() -> Path:
    """The bundled demo data set: 195 real titles and abstracts from a trending-papers page."""
    return Path(str(resources.files("newsletter") / "data" / "trending-papers-page.txt"))


def detect_format(text: str, name: str = "") -> str:
    """The format of ``text``, from its content (``name``, a path or URL, breaks ties)."""
    head = text.lstrip()[:2000]
    if name.lower().endswith((".jsonl", ".ndjson")) or looks_like_jsonl(text):
        return "jsonl"
    if head.startswith("["):
        return "hf-daily"
    if head.startswith("<"):
        if "announce_type" in text or "rss.arxiv.org" in head or "<rss" in head:
            return "arxiv-rss"
        if "<feed" in head:
            return "arxiv-atom"
    if looks_like_sample_page(text):
        return "sample-page"
    raise IngestError(
        f"cannot tell the format of {name or 'the input'}; pass --format ({', '.join(FORMATS)})"
    )


def parse_text(text: str, fmt: str | None = None, name: str = "") -> Iterable[Paper | RecordError]:
    fmt = fmt or detect_format(text, name)
    if fmt not in FORMATS:
        raise IngestError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    return FORMATS[fmt](text)


def read_input(path: Path) -> str:
    """The text of an input file, or an IngestError that says why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise IngestError(f"{path}: no such file") from exc
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise IngestError(f"{path}: cannot read: {exc.strerror}") from exc


def ingest_text(
    store: Store, text: str, fmt: str | None = None, name: str = "input"
) -> IngestReport:
    return store_records(store, parse_text(text, fmt, name), name)


def ingest_path(store: Store, path: Path, fmt: str | None = None) -> IngestReport:
    return ingest_text(store, read_input(path), fmt, str(path))


def ingest_url(
    store: Store, client: httpx.Client, url: str, fmt: str | None = None
) -> IngestReport:
    try:
        text = fetch_text(client, url)
    except FetchError as exc:
        raise IngestError(str(exc)) from exc
    return ingest_text(store, text, fmt, url)


def ingest_sources(store: Store, sources: Sequence[Source], client: httpx.Client) -> IngestSummary:
    """Ingest each source in turn; one that fails is reported and the others still run.
    Each remembers the newest paper it brought, so the next run asks only for newer ones."""
    summary = IngestSummary()
    for source in sources:
        key = f"source.{source.cursor}.newest"
        report = store_records(store, source.fetch(client, store.get_meta(key)), source.name)
        # A run with a failed request may have missed older papers behind it: the mark
        # moves only after a complete run, so the next one asks for them again.
        if not report.failures and report.newest and report.newest > (store.get_meta(key) or ""):
            store.set_meta(key, report.newest)
        for failure in report.failures:
            log.error("%s failed: %s (the papers fetched before it are kept)", source.name, failure)
        summary.sources[source.name] = report
    return summary


def store_records(
    store: Store, records: Iterable[Paper | RecordError | FetchFailure], name: str
) -> IngestReport:
    """Save the papers in batches (one transaction each), counting what happened."""
    report = IngestReport()
    batch: list[Paper] = []

    def flush() -> None:
        with store.transaction():
            for paper in batch:
                outcome = store.save_paper(paper)
                setattr(report, outcome, getattr(report, outcome) + 1)
        batch.clear()

    for record in records:
        if isinstance(record, FetchFailure):
            report.failures.append(str(record))
            continue
        if isinstance(record, RecordError):
            report.skipped += 1
            report.errors.append(f"{name}: {record}")
            log.warning("%s: %s", name, record)
            continue
        report.fetched += 1
        if record.published_at and record.published_at > (report.newest or ""):
            report.newest = record.published_at
        batch.append(record)
        if len(batch) >= BATCH_SIZE:
            flush()
    flush()
    counts = {k: v for k, v in report.to_dict().items() if k not in ("errors", "failures")}
    store.log_event("ingest", source=name, failures=report.failures, **counts)
    log.info("ingested %s: %s", name, report)
    return report
