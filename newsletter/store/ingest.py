"""Ingest: read papers from a file, a URL or the remote sources, and store them.

One bad record never stops the others: it is reported (with where it was) and skipped,
whether the parser refuses it or the database does. A request that fails for good is
reported too, and what came before it is kept; so is a reader that breaks down midway.

JSON Lines is read a line at a time from files and downloads alike, so memory stays bounded
whatever the size. The other formats are documents, parsed whole; a download of any format
is capped at ``max_response_bytes`` (the papers before the cut are kept)."""

from __future__ import annotations

import logging
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import resources
from itertools import chain
from pathlib import Path
from typing import IO

import httpx
import psycopg

from ..fetch import FetchError, ResponseTooLarge, download
from ..models import Paper
from ..sources import RECORD_FAILURES, FetchFailure, RecordError, RecordWarning, Source
from ..sources.arxiv_api import parse_arxiv_atom
from ..sources.arxiv_rss import parse_arxiv_rss
from ..sources.hf_daily import parse_hf_daily
from ..sources.jsonl import looks_like_jsonl, parse_jsonl, read_lines
from ..sources.sample_page import looks_like_sample_page, parse_sample_page
from .interface import Store

log = logging.getLogger(__name__)

Record = Paper | RecordError | RecordWarning
FORMATS: dict[str, Callable[[str], Iterable[Record]]] = {
    "sample-page": parse_sample_page,
    "jsonl": parse_jsonl,
    "arxiv-atom": parse_arxiv_atom,
    "arxiv-rss": parse_arxiv_rss,
    "hf-daily": parse_hf_daily,
}
BATCH_SIZE = 500
#: How much of an input its format is told from, when it may be JSON Lines.
HEAD_BYTES = 64 * 1024
#: What the database may raise for one paper's values (rather than for the database as a
#: whole, like a lock or a full disk): that paper is reported and skipped.
STORE_REFUSALS = (
    *RECORD_FAILURES,
    sqlite3.DataError,
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    psycopg.DataError,
    psycopg.IntegrityError,
)


class IngestError(ValueError):
    """The input as a whole cannot be read (as opposed to one bad record in it)."""


@dataclass
class IngestReport:
    """What one ingest did. ``errors`` are bad records (skipped); ``warnings`` are records
    kept without a refused value (a link that is not http or https); ``failures`` are
    requests that failed after their retries, or a reader that broke down (the papers behind
    them are missing)."""

    fetched: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
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
        if self.warnings:
            text += f", {len(self.warnings)} warning(s)"
        return text + (f", {len(self.failures)} request(s) failed" if self.failures else "")


@dataclass
class IngestSummary:
    """Several sources' reports, with their totals."""

    sources: dict[str, IngestReport] = field(default_factory=dict)
    #: Papers and readers' interests embedded for the semantic model afterwards
    #: (``ranking.embeddings.embed_pending``).
    embedded: int = 0
    embedded_profiles: int = 0

    def to_dict(self) -> dict:
        totals = IngestReport()
        for report in self.sources.values():
            for name in ("fetched", "new", "updated", "unchanged", "skipped"):
                setattr(totals, name, getattr(totals, name) + getattr(report, name))
            totals.errors += report.errors
            totals.warnings += report.warnings
            totals.failures += report.failures
        return {
            **totals.to_dict(),
            "embedded": self.embedded,
            "embedded_profiles": self.embedded_profiles,
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
    if _is_jsonl(text, name):
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


def _is_jsonl(text: str, name: str) -> bool:
    return name.lower().endswith((".jsonl", ".ndjson")) or looks_like_jsonl(text)


def parse_text(text: str, fmt: str | None = None, name: str = "") -> Iterable[Record]:
    fmt = fmt or detect_format(text, name)
    if fmt not in FORMATS:
        raise IngestError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    return FORMATS[fmt](text)


def parse_file(
    file: IO[bytes], fmt: str | None = None, name: str = "", encoding: str = "utf-8"
) -> Iterable[Record]:
    """The records of an open binary file: JSON Lines a line at a time as they are read,
    the other formats (documents) parsed whole, in ``encoding`` (a bad byte becomes U+FFFD).
    The format is told (or an IngestError raised) before this returns."""
    head = file.read(HEAD_BYTES)
    file.seek(0)
    if fmt is None and _is_jsonl(head.decode(encoding, errors="replace"), name):
        fmt = "jsonl"
    if fmt == "jsonl":
        return parse_jsonl(read_lines(file))
    return parse_text(file.read().decode(encoding, errors="replace"), fmt, name)


@contextmanager
def read_input(path: Path, fmt: str | None = None) -> Iterator[Iterable[Record]]:
    """The records of an input file (see :func:`parse_file`), while it is open; an
    IngestError says why it cannot be read."""
    try:
        file = path.open("rb")
    except FileNotFoundError as exc:
        raise IngestError(f"{path}: no such file") from exc
    except OSError as exc:
        raise IngestError(f"{path}: cannot read: {exc.strerror}") from exc
    with file:
        try:
            records = parse_file(file, fmt, str(path))
        except OSError as exc:
            raise IngestError(f"{path}: cannot read: {exc.strerror}") from exc
        yield records


def ingest_text(
    store: Store, text: str, fmt: str | None = None, name: str = "input"
) -> IngestReport:
    return store_records(store, parse_text(text, fmt, name), name)


def ingest_path(store: Store, path: Path, fmt: str | None = None) -> IngestReport:
    with read_input(path, fmt) as records:
        return store_records(store, records, str(path))


def ingest_url(
    store: Store,
    client: httpx.Client,
    url: str,
    fmt: str | None = None,
    max_bytes: int | None = None,
) -> IngestReport:
    """Download ``url`` into a temporary file (with the retries of a fetch, and at most
    ``max_bytes``), then read it as a file. A response over the cap is a failure; the
    papers in its first ``max_bytes`` bytes are kept."""
    with tempfile.TemporaryFile() as file:
        cut: list[FetchFailure] = []
        try:
            encoding = download(client, url, file, max_bytes=max_bytes)
        except ResponseTooLarge as exc:
            encoding = exc.encoding
            cut.append(FetchFailure(url, f"{exc}; the papers before the cut are kept"))
        except FetchError as exc:
            raise IngestError(str(exc)) from exc
        file.seek(0)
        return store_records(store, chain(parse_file(file, fmt, url, encoding), cut), url)


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
    store: Store, records: Iterable[Record | FetchFailure], name: str
) -> IngestReport:
    """Save the papers in batches (one transaction each), counting what happened. A paper
    the database refuses is undone alone (a savepoint) and reported by its id; a reader
    that raises is a failure, and the papers it gave before are stored."""
    report = IngestReport()
    batch: list[Paper] = []

    def skip(where: str, message: object) -> None:
        report.skipped += 1
        report.errors.append(f"{where}: {message}")
        log.warning("%s: %s", where, message)

    def flush() -> None:
        with store.transaction():
            for paper in batch:
                try:
                    with store.savepoint():
                        outcome = store.save_paper(paper)
                except STORE_REFUSALS as exc:
                    skip(f"{name}: paper {paper.id}", f"cannot be stored ({exc})")
                    continue
                setattr(report, outcome, getattr(report, outcome) + 1)
                report.fetched += 1
                if paper.published_at and paper.published_at > (report.newest or ""):
                    report.newest = paper.published_at
        batch.clear()

    for record in _guarded(records, name, report):
        if isinstance(record, FetchFailure):
            report.failures.append(str(record))
        elif isinstance(record, RecordError):
            skip(name, record)
        elif isinstance(record, RecordWarning):
            report.warnings.append(f"{name}: {record}")
            log.warning("%s: %s", name, record)
        else:
            batch.append(record)
            if len(batch) >= BATCH_SIZE:
                flush()
    flush()
    lists = ("errors", "warnings", "failures")
    counts = {k: v for k, v in report.to_dict().items() if k not in lists}
    store.log_event("ingest", source=name, failures=report.failures, **counts)
    log.info("ingested %s: %s", name, report)
    return report


def _guarded(
    records: Iterable[Record | FetchFailure], name: str, report: IngestReport
) -> Iterator[Record | FetchFailure]:
    """``records``, until the reader raises: that ends them with a failure in ``report``
    (with the traceback in the log), so a hostile input or a parser bug the per-record
    checks did not foresee costs the rest of that input, never the whole run."""
    try:
        yield from records
    except Exception as exc:  # anything a reader may raise: reported, never lost
        log.exception("%s: reading stopped", name)
        report.failures.append(f"{name}: reading stopped by {type(exc).__name__}: {exc}"[:500])
