"""The day's trending list, from the store: the one function every trending page, feed and
email section reads (:func:`trending_papers`), and the "Trending today" sections of the
emails made from it (:func:`trending_sections`). The order is :mod:`newsletter.ranking.trend`'s;
the store gives the papers of the day's window and their signals."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from ..models import Paper, Pick, Section, Subscriber
from ..store import Store
from .engine import mentions
from .trend import age_days, has_signal, trending_order, trending_reason, trending_score

#: Papers a page of the list shows.
PAGE_SIZE = 30
#: How many days before the list's day a paper may have been first seen (the editions'
#: ``candidate_days``, by default).
WINDOW_DAYS = 7


@dataclass(frozen=True)
class TrendingPaper:
    """A paper on the day's trending list."""

    paper: Paper
    #: Its place on the list, 1 for the first.
    position: int
    #: Its trending score (see ``trend``); None for a paper without upvotes.
    score: float | None
    #: Whether it is trending at all (upvotes, or a place on a trending page), rather than
    #: listed for being new.
    trending: bool

    @property
    def reason(self) -> str:
        return trending_reason(self.paper.upvotes, self.position)


def window(day: date, days: int = WINDOW_DAYS) -> tuple[str, str]:
    """[start, end) in ISO-8601 UTC: the first-seen times of the papers on ``day``'s list,
    from midnight UTC ``days`` days before it to the end of it (as an edition's candidates)."""
    start = datetime.combine(day - timedelta(days=days), time(), UTC)
    end = datetime.combine(day + timedelta(days=1), time(), UTC)
    return start.isoformat(timespec="microseconds"), end.isoformat(timespec="microseconds")


def trending_papers(
    store: Store, day: date, limit: int = PAGE_SIZE, offset: int = 0, days: int = WINDOW_DAYS
) -> list[TrendingPaper]:
    """Papers ``offset`` to ``offset + limit`` of ``day``'s trending list (a UTC day): the
    papers first seen in its :func:`window`, in the order of ``trend.trending_order``
    (upvotes with age decay, then trending-page places, then the newest)."""
    rows = store.trending_signals(*window(day, days))
    order = trending_order(rows, day)[offset : offset + max(0, limit)]
    papers = {p.id: p for p in store.papers_by_ids(rows[i].id for i in order)}
    listed = []
    for position, index in enumerate(order, start=offset + 1):
        row = rows[index]
        if row.id in papers:
            score = trending_score(row.upvotes, age_days(row.first_seen_at, day))
            listed.append(TrendingPaper(papers[row.id], position, score, has_signal(row)))
    return listed


#: How deep into the day's list a "Trending today" section looks for papers a reader has
#: not had yet: far beyond any section's size, so a long-time reader's section stays full.
SECTION_POOL = 100


def trending_sections(
    day_list: Sequence[TrendingPaper],
    subscribers: Sequence[Subscriber],
    picks: Mapping[int, Sequence[Pick]],
    sent: Mapping[int, Collection[str]],
    disliked: Mapping[int, Collection[str]],
    sizes: Sequence[int],
) -> dict[int, list[Pick]]:
    """The "Trending today" section of each subscriber's email: the first ``sizes[i]``
    papers of ``day_list`` that are trending (upvotes, or a place on a trending page: a
    paper listed only for being new is not "trending"), not among the reader's ``picks``,
    never ``sent`` to them, not disliked and without one of their muted terms.

    A reader with no picks gets no email, so no section; nor does a reader whose picks
    already are the trending list (``Pick.by_trend``)."""
    pool = [t for t in day_list if t.trending]
    muted = mentions([s.muted_terms for s in subscribers], [t.paper for t in pool])
    sections: dict[int, list[Pick]] = {}
    for row, (subscriber, size) in enumerate(zip(subscribers, sizes, strict=True)):
        own = picks.get(subscriber.id, ())
        if size <= 0 or not own or any(p.by_trend for p in own):
            continue
        taken = {p.paper.id for p in own}
        sent_ids = sent.get(subscriber.id, ())
        disliked_ids = disliked.get(subscriber.id, ())
        muted_cols = set(muted[row].indices.tolist())
        section = []
        for col, listed in enumerate(pool):
            paper_id = listed.paper.id
            if (
                paper_id in taken
                or paper_id in sent_ids
                or paper_id in disliked_ids
                or col in muted_cols
            ):
                continue
            section.append(Pick(listed.paper, listed.score or 0.0, listed.reason, Section.TRENDING))
            if len(section) == size:
                break
        if section:
            sections[subscriber.id] = section
    return sections
