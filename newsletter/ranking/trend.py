"""The trending signal: where a paper stands on the day's trending list.

A paper with upvotes (Hugging Face) scores

    score = log2(1 + upvotes) - age / HALF_LIFE_DAYS

where ``age`` is the number of whole days from the UTC day it was first seen to the list's
day: every day of age halves what its upvotes (plus one) are worth, so that yesterday's
paper with 55 upvotes stands with today's paper with 27. The log keeps a paper with a
thousand upvotes from staying on top for a week. Because age enters as a difference, the
order of two papers does not depend on the moment it is computed: a day's list, its feed
and the reasons in the emails all agree.

The list, best first:

1. papers with upvotes, by score;
2. papers with a place on a trending page (``trending_rank``: the sample page lists its
   papers in trending order) and no upvotes: the newest page first, in the page's order;
3. the others (arXiv papers, which carry no signal): newest first, by publication time
   (or first seen).

Ties go to the better trending rank, then the newer paper, then the id. Pure functions of
the papers' fields: :mod:`newsletter.ranking.trending` orders the stored papers with them,
the ranking engine the candidates of an edition.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from typing import Protocol

#: Days over which a paper's upvotes (plus one) lose half their worth.
HALF_LIFE_DAYS = 1.0


class Signals(Protocol):
    """What the order is made of: a stored paper (``Paper``) or its row (``TrendingRow``)."""

    @property
    def id(self) -> str: ...
    @property
    def upvotes(self) -> int | None: ...
    @property
    def trending_rank(self) -> int | None: ...
    @property
    def first_seen_at(self) -> str | None: ...
    @property
    def published_at(self) -> str | None: ...


def age_days(first_seen_at: str | None, day: date) -> int:
    """Whole days from the UTC day of ``first_seen_at`` (ISO-8601 UTC) to ``day``; 0 for a
    paper first seen that day or later, or never."""
    if not first_seen_at:
        return 0
    return max(0, (day - date.fromisoformat(first_seen_at[:10])).days)


def trending_score(upvotes: int | None, age: int) -> float | None:
    """``log2(1 + upvotes) - age / HALF_LIFE_DAYS``; None for a paper without upvotes."""
    if not upvotes or upvotes <= 0:
        return None
    return math.log2(1 + upvotes) - age / HALF_LIFE_DAYS


def has_signal(paper: Signals) -> bool:
    """Whether the paper is trending at all: it has upvotes or a place on a trending page."""
    return bool(paper.upvotes and paper.upvotes > 0) or paper.trending_rank is not None


def trending_order(papers: Sequence[Signals], day: date) -> list[int]:
    """The indices of ``papers`` in the order of ``day``'s trending list (see the module)."""
    scores = [trending_score(p.upvotes, age_days(p.first_seen_at, day)) for p in papers]

    def key(i: int) -> tuple[int, float, int, float]:
        paper, score = papers[i], scores[i]
        rank = math.inf if paper.trending_rank is None else paper.trending_rank
        if score is not None:
            return (0, -score, 0, rank)
        if paper.trending_rank is not None:
            return (1, 0.0, age_days(paper.first_seen_at, day), rank)
        return (2, 0.0, 0, rank)

    # Stable sorts, the least significant key first: id, then newest, then the tiers.
    order = sorted(range(len(papers)), key=lambda i: papers[i].id)
    order.sort(key=lambda i: papers[i].published_at or papers[i].first_seen_at or "", reverse=True)
    order.sort(key=key)
    return order


def trending_reason(upvotes: int | None, position: int) -> str:
    """Why a trending paper was picked: ``trending: 55 upvotes, #3 on today's trending
    list``, or its place alone for a paper without upvotes."""
    place = f"#{position} on today's trending list"
    if upvotes and upvotes > 0:
        return f"trending: {upvotes:,} upvote{'s' if upvotes != 1 else ''}, {place}"
    return place
