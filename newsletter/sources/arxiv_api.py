"""The arXiv API (``export.arxiv.org/api/query``): an Atom feed, one ``<entry>`` per paper.

The API reports a bad query as a feed holding one entry whose id is
``http://arxiv.org/api/errors#...`` and whose title is ``Error``; that entry becomes a
:class:`RecordError` carrying the API's message, never a paper."""

from __future__ import annotations

import logging
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlencode

import httpx

from ..fetch import FetchError, fetch_text
from ..models import Paper, arxiv_id
from . import RECORD_FAILURES, FetchFailure, FetchResult, ParseResult, RecordError
from .xmlfeed import ARXIV, ATOM, feed_entries, text_of, timestamp

log = logging.getLogger(__name__)

SOURCE = "arxiv"
DEFAULT_URL = "https://export.arxiv.org/api/query"
_KINDS = {f"{ATOM}feed": f"{ATOM}entry"}
_ERROR_ID = re.compile(r"^https?://(?:export\.)?arxiv\.org/api/errors\b")


def build_query_url(
    base_url: str, categories: Iterable[str], terms: Iterable[str], start: int, max_results: int
) -> str:
    """The query URL for the newest papers in any of ``categories`` that match every term:
    ``search_query=(cat:cs.AI OR cat:cs.LG) AND all:"graph neural"``, newest first."""
    if start < 0 or max_results < 1:
        raise ValueError(f"need start >= 0 and max_results >= 1, got {start} and {max_results}")
    cats = [f"cat:{c.strip()}" for c in categories if c.strip()]
    words = [" ".join(t.replace('"', " ").split()) for t in terms]
    clauses = [f'all:"{w}"' if " " in w else f"all:{w}" for w in words if w]
    if not cats and not clauses:
        raise ValueError("an arXiv query needs at least one category or term")
    if cats:
        clauses.insert(0, f"({' OR '.join(cats)})" if len(cats) > 1 else cats[0])
    params = {
        "search_query": " AND ".join(clauses),
        "sortBy": "submittedDate",
        "sortOrder": "descending",
        "start": start,
        "max_results": max_results,
    }
    return f"{base_url}?{urlencode(params, safe=':')}"


def parse_arxiv_atom(text: str) -> ParseResult:
    """Papers from an API response. A body that is not well-formed XML yields one
    ``document`` error and then the papers of its complete entries (see
    :func:`~newsletter.sources.xmlfeed.feed_entries`); a bad entry is reported as
    ``entry N (id)`` and skipped."""
    for item in feed_entries(text, _KINDS):
        if isinstance(item, RecordError):
            yield item
            continue
        label, entry = item
        raw_id = text_of(entry, f"{ATOM}id")
        where = f"{label} ({raw_id})" if raw_id else label
        if _ERROR_ID.match(raw_id):
            detail = text_of(entry, f"{ATOM}summary") or "no detail given"
            yield RecordError(where, f"arXiv API error: {detail}")
            continue
        try:
            yield paper_from_entry(entry)
        except RECORD_FAILURES as exc:
            yield RecordError(where, str(exc))


def paper_from_entry(entry: ET.Element) -> Paper:
    """A paper from one Atom ``<entry>``; ValueError says what is missing or wrong."""
    raw_id = text_of(entry, f"{ATOM}id")
    key = arxiv_id(raw_id)
    if key is None:
        raise ValueError(f"id {raw_id!r} is not an arXiv abs URL" if raw_id else "missing id")
    title = text_of(entry, f"{ATOM}title")
    if not title:
        raise ValueError("missing title")
    abstract = text_of(entry, f"{ATOM}summary")
    if not abstract:
        raise ValueError("missing summary")
    primary = entry.find(f"{ARXIV}primary_category")
    terms = [primary.get("term", "")] if primary is not None else []
    terms += [c.get("term", "") for c in entry.findall(f"{ATOM}category")]
    return Paper(
        id=key,
        title=title,
        abstract=abstract,
        source=SOURCE,
        authors=[n for a in entry.findall(f"{ATOM}author") if (n := text_of(a, f"{ATOM}name"))],
        categories=list(dict.fromkeys(t.strip() for t in terms if t.strip())),
        url=f"https://arxiv.org/abs/{key}",
        published_at=timestamp(text_of(entry, f"{ATOM}published"), "published"),
    )


@dataclass
class ArxivAPISource:
    """The newest papers in some categories (and/or matching some terms), page by page,
    newest first, until the papers are older than the last ingest or ``max_results`` is
    reached. arXiv asks API users for about three seconds between requests."""

    categories: list[str]
    terms: list[str] = field(default_factory=list)
    base_url: str = DEFAULT_URL
    page_size: int = 100
    max_results: int = 500
    delay: float = 3.0
    retries: int = 4
    sleep: Callable[[float], None] = time.sleep
    #: The largest response read (None: no cap); the settings' ``max_response_bytes``.
    max_bytes: int | None = None
    name: str = SOURCE

    @property
    def cursor(self) -> str:
        return f"{self.name}:{','.join(sorted(self.categories))}:{','.join(sorted(self.terms))}"

    def fetch(self, client: httpx.Client, since: str | None) -> FetchResult:
        for start in range(0, self.max_results, self.page_size):
            if start:
                self.sleep(self.delay)
            size = min(self.page_size, self.max_results - start)
            url = build_query_url(self.base_url, self.categories, self.terms, start, size)
            try:
                text = fetch_text(
                    client, url, retries=self.retries, sleep=self.sleep, max_bytes=self.max_bytes
                )
            except FetchError as exc:
                yield FetchFailure(f"arxiv page {start // self.page_size + 1}", str(exc))
                return
            entries = reached_known = 0
            for record in parse_arxiv_atom(text):
                if isinstance(record, Paper):
                    entries += 1
                    if since and record.published_at and record.published_at <= since:
                        reached_known += 1
                        continue
                yield record
            if entries < size or reached_known:
                log.info("arxiv: stopped after %d result(s)", start + entries)
                return
