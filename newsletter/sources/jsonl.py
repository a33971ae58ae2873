"""JSON Lines: one paper per line, ``{"id", "title", "abstract", "authors", "categories",
"url", "published", "upvotes"}``; only title and abstract are required (``summary`` is
accepted for ``abstract``), and a paper without an id is keyed by its title.

A file is read a line at a time, each line decoded on its own: memory stays bounded
whatever the size, and an invalid UTF-8 byte, a line longer than :data:`MAX_LINE_BYTES` or
JSON nested too deeply costs only its line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO, Any

from ..models import Paper, paper_id, paper_link, safe_url
from . import (
    RECORD_FAILURES,
    ParseResult,
    RecordError,
    RecordWarning,
    count,
    json_failure,
    publication_time,
    shown,
)

SOURCE = "jsonl"
#: The longest line read; a longer one is skipped (a paper's record is a few kilobytes).
MAX_LINE_BYTES = 2**20


def looks_like_jsonl(text: str) -> bool:
    return text.lstrip().startswith("{")


def read_lines(file: IO[bytes]) -> Iterator[bytes]:
    """The lines of a binary file, one at a time, without their ``\\n``. Of a line longer
    than :data:`MAX_LINE_BYTES`, only the first ``MAX_LINE_BYTES + 1`` bytes come (so that
    :func:`parse_jsonl` reports it); the rest is read past, never held."""
    while line := file.readline(MAX_LINE_BYTES + 1):
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while (rest := file.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
        yield line.removesuffix(b"\n")


def parse_jsonl(lines: str | Iterable[bytes | str], source: str = SOURCE) -> ParseResult:
    """Papers from a whole text or from its lines (bytes are decoded a line at a time). A
    bad line is reported by its number and skipped; a refused link costs only the link."""
    if isinstance(lines, str):
        lines = lines.split("\n")
    for number, raw in enumerate(lines, start=1):
        where = f"line {number}"
        if len(raw) > MAX_LINE_BYTES:
            yield RecordError(where, f"longer than {MAX_LINE_BYTES:,} bytes")
            continue
        try:
            line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError as exc:
            yield RecordError(where, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield RecordError(where, f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        except RECORD_FAILURES as exc:  # nested too deeply, an integer of 4,300+ digits
            yield RecordError(where, f"not readable JSON ({json_failure(exc)})")
            continue
        if not isinstance(record, dict):
            yield RecordError(where, f"expected a JSON object, got {type(record).__name__}")
            continue
        try:
            paper = paper_from_record(record, source)
        except RECORD_FAILURES as exc:
            yield RecordError(where, str(exc))
            continue
        if (url := _text(record, "url")) and safe_url(url) is None:
            yield RecordWarning(where, f"url {shown(url)} dropped: only http(s) links are kept")
        yield paper


def paper_from_record(record: dict[str, Any], source: str) -> Paper:
    """A paper from one JSON object; ValueError names the field that is wrong. Its link is
    the arXiv page of an arXiv id, else ``url`` if that is http(s) (see ``paper_link``)."""
    title = _text(record, "title")
    abstract = _text(record, "abstract") or _text(record, "summary")
    if not title:
        raise ValueError("missing title")
    if not abstract:
        raise ValueError(f"paper {title[:60]!r} has no abstract")
    raw_id = record.get("id")
    if raw_id is not None and not isinstance(raw_id, str | int):
        raise ValueError("id must be a string")
    key = paper_id(str(raw_id) if raw_id is not None else None, title)
    return Paper(
        id=key,
        title=" ".join(title.split()),
        abstract=abstract,
        source=source,
        authors=_names(record.get("authors"), "authors"),
        categories=_names(record.get("categories"), "categories"),
        url=paper_link(key, _text(record, "url")),
        published_at=_timestamp(record.get("published")),
        upvotes=count(record.get("upvotes"), "upvotes"),
    )


def _text(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, got {type(value).__name__}")
    return value.strip()


def _names(value: Any, key: str) -> list[str]:
    """A list of names from a list of strings, a list of ``{"name": ...}`` or a comma list."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list):
        raise ValueError(f"{key} must be a list")
    names = []
    for item in value:
        name = item.get("name") if isinstance(item, dict) else item
        if not isinstance(name, str):
            raise ValueError(f"{key} must hold strings")
        if name.strip():
            names.append(name.strip())
    return names


def _timestamp(value: Any) -> str | None:
    if value in (None, ""):
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise ValueError(f"published is not an ISO-8601 time: {shown(value)}") from exc
    return publication_time(moment, "published")
