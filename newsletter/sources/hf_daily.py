"""Hugging Face daily papers (``GET https://huggingface.co/api/daily_papers``): a JSON list
of items, each with the paper (``paper.id`` is its arXiv id, ``paper.upvotes``,
``paper.authors[].name``, ``paper.githubRepo``) and the discussion (``numComments``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import quote

import httpx

from ..fetch import FetchError, fetch_text
from ..models import Paper
from . import (
    RECORD_FAILURES,
    FetchFailure,
    FetchResult,
    ParseResult,
    RecordError,
    count,
    json_failure,
)
from .jsonl import paper_from_record

SOURCE = "hf-daily"
DEFAULT_URL = "https://huggingface.co/api/daily_papers"


def parse_hf_daily(text: str) -> ParseResult:
    """Papers from the response body. A body that is not a JSON list is one ``document``
    error; a bad item is reported as ``items[N] (id)`` (0-based, as in jq) and skipped."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        yield RecordError("document", f"not valid JSON ({exc.msg} at line {exc.lineno})")
        return
    except RECORD_FAILURES as exc:  # nested too deeply, an integer of 4,300+ digits
        yield RecordError("document", f"not readable JSON ({json_failure(exc)})")
        return
    if not isinstance(items, list):
        yield RecordError("document", f"expected a JSON list, got {type(items).__name__}")
        return
    for index, item in enumerate(items):
        where = f"items[{index}]"
        paper = item.get("paper") if isinstance(item, dict) else None
        if isinstance(paper, dict) and isinstance(paper.get("id"), str):
            where = f"{where} ({paper['id']})"
        try:
            yield paper_from_item(item)
        except RECORD_FAILURES as exc:
            yield RecordError(where, str(exc))


def paper_from_item(item: Any) -> Paper:
    """A paper from one list item; ValueError says what is missing or wrong."""
    if not isinstance(item, dict):
        raise ValueError(f"expected a JSON object, got {type(item).__name__}")
    paper = item.get("paper")
    if not isinstance(paper, dict):
        raise ValueError("missing paper object")
    raw_id = paper.get("id")
    if not isinstance(raw_id, str) or not raw_id.strip():
        raise ValueError("missing paper.id")
    record = {
        "id": raw_id,
        "title": paper.get("title") or item.get("title"),
        "abstract": paper.get("summary") or item.get("summary"),
        "authors": paper.get("authors"),
        # An arXiv paper's link is its arXiv page (paper_from_record builds it from the id).
        "url": f"https://huggingface.co/papers/{quote(raw_id.strip(), safe='')}",
        "published": paper.get("publishedAt") or item.get("publishedAt"),
        "upvotes": paper.get("upvotes"),
    }
    github_repo = paper.get("githubRepo")
    if github_repo is not None and not isinstance(github_repo, str):
        raise ValueError(f"githubRepo must be a string, got {type(github_repo).__name__}")
    result = paper_from_record(record, SOURCE)
    extra = {
        "num_comments": count(item.get("numComments"), "numComments"),
        "github_repo": github_repo,
    }
    result.extra = {k: v for k, v in extra.items() if v not in (None, "")}
    return result


@dataclass
class HFDailySource:
    """The papers of one day's Hugging Face daily list (default: today's): upvotes become
    the papers' trending signal."""

    day: date | None = None
    base_url: str = DEFAULT_URL
    retries: int = 4
    sleep: Callable[[float], None] = time.sleep
    #: The largest response read (None: no cap); the settings' ``max_response_bytes``.
    max_bytes: int | None = None
    name: str = SOURCE

    @property
    def cursor(self) -> str:
        return self.name

    def fetch(self, client: httpx.Client, since: str | None) -> FetchResult:
        day = self.day or date.today()
        try:
            text = fetch_text(
                client,
                self.base_url,
                params={"date": day.isoformat()},
                retries=self.retries,
                sleep=self.sleep,
                max_bytes=self.max_bytes,
            )
        except FetchError as exc:
            yield FetchFailure(f"hf-daily {day}", str(exc))
            return
        yield from parse_hf_daily(text)
