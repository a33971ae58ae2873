"""arXiv's daily announcement feeds: ``rss.arxiv.org/atom/<cats>`` (Atom) and
``rss.arxiv.org/rss/<cats>`` (RSS 2.0) carry the same entries, so both are read.

Each entry's summary reads ``arXiv:2508.13426v1 Announce Type: cross Abstract: ...``; the
abstract is the text after ``Abstract:`` (or, without that marker, after the header). On
days without announcements (weekends, holidays) the feed has no entries, which is not an
error."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from ..fetch import FetchError, fetch_text
from ..models import Paper, arxiv_id
from . import RECORD_FAILURES, FetchFailure, FetchResult, ParseResult, RecordError
from .xmlfeed import ARXIV, ATOM, feed_entries, text_of, timestamp

SOURCE = "arxiv-rss"
DEFAULT_URL = "https://rss.arxiv.org/atom"
_KINDS = {f"{ATOM}feed": f"{ATOM}entry", "rss": "item"}
_OAI_PREFIX = re.compile(r"^oai:arxiv\.org:", re.I)
_ANNOUNCE_HEADER = re.compile(r"^arXiv:\S+\s+Announce Type:\s*\S+\s*", re.I)


def parse_arxiv_rss(text: str) -> ParseResult:
    """Papers from an announcement feed, Atom or RSS 2.0. Broken bodies and entries are
    reported as in :func:`~newsletter.sources.arxiv_api.parse_arxiv_atom`."""
    for item in feed_entries(text, _KINDS):
        if isinstance(item, RecordError):
            yield item
            continue
        label, entry = item
        raw_id = _raw_id(entry)
        try:
            yield paper_from_item(entry)
        except RECORD_FAILURES as exc:
            yield RecordError(f"{label} ({raw_id})" if raw_id else label, str(exc))


def paper_from_item(entry: ET.Element) -> Paper:
    """A paper from an Atom ``<entry>`` or an RSS ``<item>``; ValueError says what is wrong."""
    atom = entry.tag == f"{ATOM}entry"
    ns = ATOM if atom else ""
    raw_id = _raw_id(entry)
    key = arxiv_id(_OAI_PREFIX.sub("", raw_id))
    if key is None:
        raise ValueError(f"id {raw_id!r} is not an arXiv id" if raw_id else "missing id")
    title = text_of(entry, f"{ns}title")
    if not title:
        raise ValueError("missing title")
    summary = text_of(entry, f"{ns}summary" if atom else "description")
    _, marker, after = summary.partition("Abstract:")
    abstract = after.strip() if marker else _ANNOUNCE_HEADER.sub("", summary)
    if not abstract:
        raise ValueError("missing abstract")
    categories = [(c.get("term") if atom else c.text) or "" for c in entry.findall(f"{ns}category")]
    creators = text_of(entry, "{http://purl.org/dc/elements/1.1/}creator")
    announce_type = text_of(entry, f"{ARXIV}announce_type")
    return Paper(
        id=key,
        title=title,
        abstract=abstract,
        source=SOURCE,
        authors=[name.strip() for name in creators.split(",") if name.strip()],
        categories=list(dict.fromkeys(c.strip() for c in categories if c.strip())),
        url=f"https://arxiv.org/abs/{key}",
        published_at=timestamp(text_of(entry, f"{ns}published" if atom else "pubDate"), "date"),
        # new, cross (primary category elsewhere), replace or replace-cross (a new version)
        extra={"announce_type": announce_type} if announce_type else {},
    )


def _raw_id(entry: ET.Element) -> str:
    """``oai:arXiv.org:2508.13426v1``, from Atom ``<id>`` or RSS ``<guid>``."""
    return text_of(entry, f"{ATOM}id" if entry.tag == f"{ATOM}entry" else "guid")


@dataclass
class ArxivRSSSource:
    """Today's announcements of each category: ``{base_url}/{category}``. A category whose
    feed cannot be fetched is reported; the other categories still come in."""

    categories: list[str]
    base_url: str = DEFAULT_URL
    retries: int = 4
    sleep: Callable[[float], None] = time.sleep
    #: The largest response read (None: no cap); the settings' ``max_response_bytes``.
    max_bytes: int | None = None
    name: str = SOURCE

    @property
    def cursor(self) -> str:
        return f"{self.name}:{','.join(sorted(self.categories))}"

    def fetch(self, client: httpx.Client, since: str | None) -> FetchResult:
        for category in self.categories:
            url = f"{self.base_url.rstrip('/')}/{category}"
            try:
                text = fetch_text(
                    client, url, retries=self.retries, sleep=self.sleep, max_bytes=self.max_bytes
                )
            except FetchError as exc:
                yield FetchFailure(f"arxiv-rss {category}", str(exc))
                continue
            yield from parse_arxiv_rss(text)
