"""An edition: which papers each subscriber gets on a date.

:func:`plan_edition` ranks (or reads back what the ledger recorded), :func:`preview` shows
it; :mod:`newsletter.sending.delivery` sends it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import scipy.sparse as sp

from ..mail.render import Renderer
from ..models import DeliveryStatus, Paper, Pick, Section, Subscriber
from ..ranking import embeddings, semantic
from ..ranking.engine import RankingParams, SemanticInputs, Signals, rank
from ..ranking.trending import SECTION_POOL, trending_papers, trending_sections
from ..settings import Settings
from ..store import Store
from ..tokens import link_signer
from .ledger import Delivery, History, Ledger

log = logging.getLogger(__name__)

#: Most papers kept to fit the term weights of the lexical model.
CORPUS_LIMIT = 50_000


def candidate_window(edition: date, settings: Settings) -> tuple[str, str]:
    """[start, end) in ISO-8601 UTC: papers first seen in it may go into the edition. The
    window runs until now (or the end of the edition's day, if later): a paper first seen
    after midnight UTC but before a reader's local delivery hour (Los Angeles at 18:00 is
    02:00 UTC the next day) belongs in that reader's edition, and the next one only takes
    papers seen after this one was planned."""
    start = datetime.combine(edition - timedelta(days=settings.candidate_days), time(), UTC)
    end = max(
        datetime.combine(edition + timedelta(days=1), time(), UTC),
        datetime.now(UTC) + timedelta(seconds=1),
    )
    return start.isoformat(timespec="microseconds"), end.isoformat(timespec="microseconds")


def plan_edition(
    store: Store,
    settings: Settings,
    edition: date,
    subscribers: Sequence[Subscriber],
    rerank: bool = False,
    trending_today: bool = True,
) -> dict[int, list[Pick]]:
    """The papers each subscriber gets in ``edition``: their picks, best first, then their
    "Trending today" section (``Section.TRENDING``), which the ledger records with them.

    A subscriber whose message for this edition is already in the ledger gets the papers
    recorded there, so a retry or a preview after the send shows what was sent. The others
    are ranked together over the papers that are new to them, with their feedback and, when
    the semantic extra is installed, sentence embeddings. ``rerank`` ranks everyone anew,
    recorded or not: what the edition would pick with the profiles as they are now.
    ``trending_today=False`` plans the picks alone, without the sections.
    """
    ledger = Ledger(store)
    recorded = {} if rerank else ledger.for_edition(edition)
    plan = {s.id: _recorded_picks(store, recorded[s.id]) for s in subscribers if s.id in recorded}
    to_rank = [s for s in subscribers if s.id not in recorded]
    start, end = candidate_window(edition, settings)
    papers = store.papers_seen_between(start, end)
    if to_rank and papers:
        history = ledger.history(edition, start)
        signals = _signals(store, to_rank)
        picks = rank(
            to_rank,
            papers,
            Eligibility(to_rank, papers, history),
            RankingParams.from_settings(settings),
            corpus=_corpus(store, papers),
            signals=signals,
            semantic=_semantic_inputs(store, settings, to_rank, papers, signals),
        )
        sections = (
            _trending_sections(store, settings, edition, to_rank, picks, history, signals)
            if trending_today
            else {}
        )
        plan.update({sid: [*own, *sections.get(sid, [])] for sid, own in picks.items()})
    plan.update({s.id: [] for s in to_rank if s.id not in plan})
    return plan


def _trending_sections(
    store: Store,
    settings: Settings,
    edition: date,
    subscribers: Sequence[Subscriber],
    picks: dict[int, list[Pick]],
    history: dict[int, History],
    signals: Signals,
) -> dict[int, list[Pick]]:
    """Each reader's "Trending today" section, from the edition day's trending list."""
    sizes = [
        settings.trending_papers if s.trending_papers is None else s.trending_papers
        for s in subscribers
    ]
    if max(sizes, default=0) <= 0:
        return {}
    day_list = trending_papers(store, edition, SECTION_POOL, days=settings.candidate_days)
    return trending_sections(
        day_list,
        subscribers,
        picks,
        sent={sid: h.paper_ids for sid, h in history.items()},
        disliked={sid: {p.id for p in ps} for sid, ps in signals.disliked.items()},
        sizes=sizes,
    )


def _signals(store: Store, subscribers: Sequence[Subscriber]) -> Signals:
    """The liked and disliked papers of ``subscribers``."""
    feedback = store.feedback([s.id for s in subscribers])
    papers = {p.id: p for p in store.papers_by_ids({pid for f in feedback.values() for pid in f})}
    signals = Signals()
    for subscriber_id, marks in feedback.items():
        for paper_id, signal in marks.items():
            if paper_id in papers:
                group = signals.liked if signal > 0 else signals.disliked
                group.setdefault(subscriber_id, []).append(papers[paper_id])
    return signals


def _semantic_inputs(
    store: Store,
    settings: Settings,
    subscribers: Sequence[Subscriber],
    papers: Sequence[Paper],
    signals: Signals,
) -> SemanticInputs | None:
    model = semantic.embedder(settings)
    if model is None:
        return None
    feedback = {
        p.id: p for group in (signals.liked, signals.disliked) for ps in group.values() for p in ps
    }
    feedback_vectors = embeddings.paper_vectors(store, model, list(feedback.values())).centroids()
    return SemanticInputs(
        papers=embeddings.paper_vectors(store, model, papers),
        profiles=embeddings.profile_vectors(store, model, subscribers),
        feedback=dict(zip(feedback, feedback_vectors, strict=True)),
        center=embeddings.corpus_center(store, model),
    )


def _corpus(store: Store, papers: list[Paper]) -> list[Paper]:
    """Recent papers for the model's term weights: a thin day alone says little about IDF."""
    if len(papers) >= CORPUS_LIMIT:
        return papers
    return store.recent_papers(CORPUS_LIMIT)


class Eligibility:
    """(subscribers x papers), read a block of subscribers at a time (``eligible[rows]``):
    True where the paper is new to the subscriber, first seen after their last edition and
    never sent to them. Only the pairs already sent are stored; the whole matrix, 100 MB of
    booleans for 100,000 subscribers and 1,000 papers, never exists."""

    def __init__(
        self,
        subscribers: Sequence[Subscriber],
        papers: Sequence[Paper],
        history: dict[int, History],
    ):
        self.seen = np.array([_epoch(p.first_seen_at) for p in papers])
        self.since = np.array(
            [
                _epoch(history[s.id].last_edition_at) if s.id in history else -np.inf
                for s in subscribers
            ]
        )
        column = {p.id: i for i, p in enumerate(papers)}
        rows, cols = [], []
        for row, subscriber in enumerate(subscribers):
            if subscriber.id in history:
                for paper_id in history[subscriber.id].paper_ids:
                    if paper_id in column:
                        rows.append(row)
                        cols.append(column[paper_id])
        self.sent = sp.csr_matrix(
            (np.ones(len(rows), dtype=bool), (rows, cols)), shape=(len(subscribers), len(papers))
        )

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        return (self.seen[None, :] > self.since[rows, None]) & ~self.sent[rows].toarray()


def _epoch(stamp: str | None) -> float:
    return datetime.fromisoformat(stamp).timestamp() if stamp else -np.inf


def _recorded_picks(store: Store, delivery: Delivery) -> list[Pick]:
    papers = {p.id: p for p in store.papers_by_ids(delivery.paper_ids)}
    return [
        Pick(papers[r["id"]], r["score"], r["reason"], Section(r.get("section", Section.PICKS)))
        for r in delivery.picks
        if r["id"] in papers
    ]


#: Ledger states of a message that reached (or may have reached) its reader.
DELIVERED = frozenset({DeliveryStatus.SENT, DeliveryStatus.UNKNOWN})


def sent_picks(store: Store, subscriber: Subscriber, edition: date) -> list[Pick] | None:
    """The papers of the email ``subscriber`` got in ``edition``, as the ledger recorded
    them (order, reasons and sections), for "View in your browser"; None if no message of
    that edition went to them."""
    delivery = Ledger(store).get(edition, subscriber.id)
    if delivery is None or delivery.status not in DELIVERED:
        return None
    return _recorded_picks(store, delivery)


def preview(
    store: Store, settings: Settings, email: str, edition: date
) -> tuple[Subscriber, list[Pick], Renderer]:
    """What ``email`` gets (or got) in ``edition``, without sending or recording anything."""
    subscriber = store.get_subscriber(email.strip())
    picks = plan_edition(store, settings, edition, [subscriber]).get(subscriber.id, [])
    renderer = Renderer(settings, link_signer(settings, store, real_send=False))
    return subscriber, picks, renderer


def preview_picks(
    store: Store, settings: Settings, subscriber: Subscriber, edition: date
) -> list[Pick]:
    """The papers ``edition`` would pick for the subscriber's profile as it is now, even
    once the edition was sent: a subscriber who changes their interests after reading
    today's email wants to see what the change does. Only their own picks: the day's
    trending list is the same for everyone."""
    plan = plan_edition(store, settings, edition, [subscriber], rerank=True, trending_today=False)
    return plan[subscriber.id]


def recently_sent(
    store: Store, subscriber: Subscriber, editions: int = 3
) -> list[tuple[str, Paper]]:
    """(edition date, paper) for the papers of the subscriber's last few editions, newest
    edition first."""
    deliveries = Ledger(store).recent_sent(subscriber.id, editions)
    return [(d.edition, paper) for d in deliveries for paper in store.papers_by_ids(d.paper_ids)]
