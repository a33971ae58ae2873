"""Ingest: read papers from a file in one of the known formats and store them.

One bad record never stops the others: it is reported (with its line) and skipped."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from .models import Paper
from .sources import RecordError
from .sources.jsonl import looks_like_jsonl, parse_jsonl
from .sources.sample_page import looks_like_sample_page, parse_sample_page
from .store import Store

log = logging.getLogger(__name__)

FORMATS: dict[str, Callable[[str], Iterable[Paper | RecordError]]] = {
    "sample-page": parse_sample_page,
    "jsonl": parse_jsonl,
}
BATCH_SIZE = 500


class IngestError(ValueError):
    """The input as a whole cannot be read (as opposed to one bad record in it)."""


@dataclass
class IngestReport:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"{self.new} new, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.skipped} skipped"
        )


def sample_papers_path() -> Path:
    """The bundled demo data set: 195 real titles and abstracts from a trending-papers page."""
    return Path(str(resources.files("newsletter") / "data" / "trending-papers-page.txt"))


def detect_format(text: str, path: Path | None = None) -> str:
    if path is not None and path.suffix.lower() in {".jsonl", ".ndjson"}:
        return "jsonl"
    if looks_like_jsonl(text):
        return "jsonl"
    if looks_like_sample_page(text):
        return "sample-page"
    raise IngestError(f"cannot tell the format of the input; pass --format ({', '.join(FORMATS)})")


def ingest_text(
    store: Store, text: str, fmt: str | None = None, name: str = "input"
) -> IngestReport:
    fmt = fmt or detect_format(text)
    if fmt not in FORMATS:
        raise IngestError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    return store_records(store, FORMATS[fmt](text), name)


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


def ingest_path(store: Store, path: Path, fmt: str | None = None) -> IngestReport:
    text = read_input(path)
    return ingest_text(store, text, fmt or detect_format(text, path), name=str(path))


def store_records(store: Store, records: Iterable[Paper | RecordError], name: str) -> IngestReport:
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
        if isinstance(record, RecordError):
            report.skipped += 1
            report.errors.append(f"{name}: {record}")
            log.warning("%s: %s", name, record)
            continue
        batch.append(record)
        if len(batch) >= BATCH_SIZE:
            flush()
    flush()
    store.log_event(
        "ingest", source=name, **{k: v for k, v in report.to_dict().items() if k != "errors"}
    )
    log.info("ingested %s: %s", name, report)
    return report
