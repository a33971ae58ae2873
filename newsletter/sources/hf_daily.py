"""Hugging Face daily papers (``GET https://huggingface.co/api/daily_papers``): a JSON list
of items, each with the paper (``paper.id`` is its arXiv id, ``paper.upvotes``,
``paper.authors[].name``, ``paper.githubRepo``) and the discussion (``numComments``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..models import Paper, arxiv_id
from . import ParseResult, RecordError
from .jsonl import paper_from_record

SOURCE = "hf-daily"


@dataclass
class DailyPaper(Paper):
    """A paper with the Hugging Face discussion around it. The store saves only the
    :class:`Paper` fields (upvotes among them); these are for a caller that wants them."""

    num_comments: int | None = None
    github_repo: str | None = None


def parse_hf_daily(text: str) -> ParseResult:
    """Papers from the response body. A body that is not a JSON list is one ``document``
    error; a bad item is reported as ``items[N] (id)`` (0-based, as in jq) and skipped."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        yield RecordError("document", f"not valid JSON ({exc.msg} at line {exc.lineno})")
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
        except ValueError as exc:
            yield RecordError(where, str(exc))


def paper_from_item(item: Any) -> DailyPaper:
    """A paper from one list item; ValueError says what is missing or wrong."""
    if not isinstance(item, dict):
        raise ValueError(f"expected a JSON object, got {type(item).__name__}")
    paper = item.get("paper")
    if not isinstance(paper, dict):
        raise ValueError("missing paper object")
    raw_id = paper.get("id")
    if not isinstance(raw_id, str) or not raw_id.strip():
        raise ValueError("missing paper.id")
    key = arxiv_id(raw_id)
    record = {
        "id": raw_id,
        "title": paper.get("title") or item.get("title"),
        "abstract": paper.get("summary") or item.get("summary"),
        "authors": paper.get("authors"),
        "url": f"https://arxiv.org/abs/{key}" if key else f"https://huggingface.co/papers/{raw_id}",
        "published": paper.get("publishedAt") or item.get("publishedAt"),
        "upvotes": paper.get("upvotes"),
    }
    github_repo = paper.get("githubRepo")
    if github_repo is not None and not isinstance(github_repo, str):
        raise ValueError(f"githubRepo must be a string, got {type(github_repo).__name__}")
    return DailyPaper(
        **vars(paper_from_record(record, SOURCE)),
        num_comments=_count(item.get("numComments"), "numComments"),
        github_repo=github_repo or None,
    )


def _count(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value
