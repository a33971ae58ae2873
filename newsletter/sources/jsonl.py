"""JSON Lines: one paper per line, ``{"id", "title", "abstract", "authors", "categories",
"url", "published", "upvotes"}``; only title and abstract are required (``summary`` is
accepted for ``abstract``), and a paper without an id is keyed by its title."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ..models import Paper, paper_id, to_utc_iso
from . import ParseResult, RecordError

SOURCE = "jsonl"


def looks_like_jsonl(text: str) -> bool:
    return text.lstrip().startswith("{")


def parse_jsonl(text: str, source: str = SOURCE) -> ParseResult:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield RecordError(where, f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(record, dict):
            yield RecordError(where, f"expected a JSON object, got {type(record).__name__}")
            continue
        try:
            yield paper_from_record(record, source)
        except ValueError as exc:
            yield RecordError(where, str(exc))


def paper_from_record(record: dict[str, Any], source: str) -> Paper:
    """A paper from one JSON object; ValueError names the field that is wrong."""
    title = _text(record, "title")
    abstract = _text(record, "abstract") or _text(record, "summary")
    if not title:
        raise ValueError("missing title")
    if not abstract:
        raise ValueError(f"paper {title[:60]!r} has no abstract")
    raw_id = record.get("id")
    if raw_id is not None and not isinstance(raw_id, str | int):
        raise ValueError("id must be a string")
    return Paper(
        id=paper_id(str(raw_id) if raw_id is not None else None, title),
        title=" ".join(title.split()),
        abstract=abstract,
        source=source,
        authors=_names(record.get("authors"), "authors"),
        categories=_names(record.get("categories"), "categories"),
        url=_text(record, "url"),
        published_at=_timestamp(record.get("published")),
        upvotes=_count(record.get("upvotes")),
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
        return to_utc_iso(datetime.fromisoformat(str(value)))
    except ValueError as exc:
        raise ValueError(f"published is not an ISO-8601 time: {value!r}") from exc


def _count(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"upvotes must be a non-negative integer, got {value!r}")
    return value
