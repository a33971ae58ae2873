"""What the public pages show of the day's trending list (the home page, ``/trending/DAY``)
and its Atom feed (``/trending.atom``, made with feedgen). Nothing here knows a reader: the
same list for everyone, with no personal link."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from urllib.parse import quote

from feedgen.feed import FeedGenerator

from ..mail.render import paper_url, short_authors, trim_words
from ..mail.text import display_text, one_line
from ..ranking.trending import PAGE_SIZE, TrendingPaper
from ..settings import Settings

#: How much of an abstract a listing shows: its first lines.
LISTING_ABSTRACT_CHARS = 280
FEED_ABSTRACT_CHARS = 600


@dataclass(frozen=True)
class Listing:
    """One paper of a list as a page shows it."""

    position: int
    title: str
    url: str
    authors: str
    upvotes: int | None
    abstract: str


def listing(item: TrendingPaper) -> Listing:
    paper = item.paper
    return Listing(
        position=item.position,
        title=one_line(display_text(paper.title)),
        url=paper_url(paper),
        authors=short_authors(paper.authors),
        upvotes=paper.upvotes if paper.upvotes and paper.upvotes > 0 else None,
        abstract=trim_words(display_text(paper.abstract), LISTING_ABSTRACT_CHARS),
    )


def page_number(text: str | None) -> int:
    """The ``?page=`` of a list, 1 for anything that is not a whole number from 1."""
    try:
        number = int(text or "1")
    except ValueError:
        return 1
    return min(max(number, 1), 10_000)


def page_offset(page: int) -> int:
    return (page - 1) * PAGE_SIZE


def parse_day(text: str) -> date | None:
    """``YYYY-MM-DD`` as a date, or None."""
    try:
        return date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        return None


def atom_feed(settings: Settings, day: date, papers: list[TrendingPaper]) -> bytes:
    """The Atom feed of ``day``'s trending list: one entry per paper, in the list's order."""
    base = settings.base_url.rstrip("/")
    feed = FeedGenerator()
    feed.id(f"{base}/trending.atom")
    feed.title(f"{settings.brand}: trending papers")
    feed.subtitle(f"The day's trending research papers, {day.isoformat()}")
    feed.author({"name": settings.brand})
    feed.link(href=f"{base}/trending.atom", rel="self", type="application/atom+xml")
    feed.link(href=f"{base}/trending/{day.isoformat()}", rel="alternate", type="text/html")
    feed.language("en")
    newest = max((p.paper.first_seen_at or "" for p in papers), default="")
    feed.updated(datetime.fromisoformat(newest) if newest else datetime.now(UTC))
    for item in papers:
        paper, shown = item.paper, listing(item)
        entry = feed.add_entry(order="append")
        entry.id(shown.url or f"{base}/trending/{day.isoformat()}#{quote(paper.id, safe='')}")
        entry.title(shown.title)
        if shown.url:
            entry.link(href=shown.url, rel="alternate")
        for name in paper.authors[:20]:
            entry.author({"name": one_line(name)})
        votes = f"{shown.upvotes} upvotes. " if shown.upvotes else ""
        entry.summary(votes + trim_words(display_text(paper.abstract), FEED_ABSTRACT_CHARS))
        if paper.first_seen_at:
            entry.updated(datetime.fromisoformat(paper.first_seen_at))
            entry.published(datetime.fromisoformat(paper.first_seen_at))
    return feed.atom_str(pretty=True)
