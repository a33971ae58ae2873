"""An edition: which papers each subscriber gets on a date, and sending it.

This is the core API that the CLI (and later the web app and the worker) call:
:func:`plan_edition` ranks, :func:`send_edition` renders, claims, sends and records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import scipy.sparse as sp

from . import semantic
from .ledger import Delivery, History, Ledger
from .models import Paper, Status, Subscriber
from .ranking import Pick, RankingParams, SemanticInputs, Signals, rank
from .render import Renderer
from .settings import DEFAULT_FROM, Settings, SettingsError
from .store import Store, SubscriberNotFound
from .tokens import link_signer
from .transports import SendResult, Transport, TransportError, transport_from_url

log = logging.getLogger(__name__)

#: Most papers kept to fit the term weights of the lexical model.
CORPUS_LIMIT = 50_000


def candidate_window(edition: date, settings: Settings) -> tuple[str, str]:
    """[start, end) in ISO-8601 UTC: papers first seen in it may go into the edition."""
    start = datetime.combine(edition - timedelta(days=settings.candidate_days), time(), UTC)
    end = datetime.combine(edition + timedelta(days=1), time(), UTC)
    end = max(end, datetime.now(UTC) + timedelta(seconds=1)) if edition >= date.today() else end
    return start.isoformat(timespec="microseconds"), end.isoformat(timespec="microseconds")


def plan_edition(
    store: Store,
    settings: Settings,
    edition: date,
    subscribers: Sequence[Subscriber],
    rerank: bool = False,
) -> dict[int, list[Pick]]:
    """The papers each subscriber gets in ``edition``, best first.

    A subscriber whose message for this edition is already in the ledger gets the papers
    recorded there, so a retry or a preview after the send shows what was sent. The others
    are ranked together over the papers that are new to them, with their feedback and, when
    the semantic extra is installed, sentence embeddings. ``rerank`` ranks everyone anew,
    recorded or not: what the edition would pick with the profiles as they are now.
    """
    ledger = Ledger(store)
    recorded = {} if rerank else ledger.for_edition(edition)
    plan = {s.id: _recorded_picks(store, recorded[s.id]) for s in subscribers if s.id in recorded}
    to_rank = [s for s in subscribers if s.id not in recorded]
    papers = store.papers_seen_between(*candidate_window(edition, settings))
    if to_rank and papers:
        eligible = _eligibility(to_rank, papers, ledger.history(edition))
        signals = _signals(store, to_rank)
        plan.update(
            rank(
                to_rank,
                papers,
                eligible,
                RankingParams.from_settings(settings),
                corpus=_corpus(store, papers),
                signals=signals,
                semantic=_semantic_inputs(store, settings, to_rank, papers, signals),
            )
        )
    plan.update({s.id: [] for s in to_rank if s.id not in plan})
    return plan


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
    feedback_vectors = semantic.paper_vectors(store, model, list(feedback.values())).centroids()
    return SemanticInputs(
        papers=semantic.paper_vectors(store, model, papers),
        profiles=semantic.profile_vectors(store, model, subscribers),
        feedback=dict(zip(feedback, feedback_vectors, strict=True)),
    )


def _corpus(store: Store, papers: list[Paper]) -> list[Paper]:
    """Recent papers for the model's term weights: a thin day alone says little about IDF."""
    if len(papers) >= CORPUS_LIMIT:
        return papers
    return store.recent_papers(CORPUS_LIMIT)


def _eligibility(
    subscribers: Sequence[Subscriber], papers: Sequence[Paper], history: dict[int, History]
) -> sp.csr_matrix:
    """(subscribers x papers): True where the paper is new to the subscriber: first seen
    after their last edition and never sent to them."""
    seen = np.array([_epoch(p.first_seen_at) for p in papers])
    since = np.array(
        [_epoch(history[s.id].last_edition_at) if s.id in history else -np.inf for s in subscribers]
    )
    eligible = sp.csr_matrix(seen[None, :] > since[:, None])
    column = {p.id: i for i, p in enumerate(papers)}
    sent = [
        (row, column[pid])
        for row, s in enumerate(subscribers)
        if s.id in history
        for pid in history[s.id].paper_ids
        if pid in column
    ]
    if sent:
        rows, cols = zip(*sent, strict=True)
        already = sp.csr_matrix(
            (np.ones(len(sent), dtype=bool), (rows, cols)), shape=eligible.shape
        )
        eligible = eligible > already
    return eligible


def _epoch(stamp: str | None) -> float:
    return datetime.fromisoformat(stamp).timestamp() if stamp else -np.inf


def _recorded_picks(store: Store, delivery: Delivery) -> list[Pick]:
    papers = {p.id: p for p in store.papers_by_ids(delivery.paper_ids)}
    return [
        Pick(papers[r["id"]], r["score"], r["reason"]) for r in delivery.picks if r["id"] in papers
    ]


# -- sending ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    email: str
    status: str  # sent | would-send | skipped | failed | rejected
    detail: str
    papers: int = 0
    message_id: str | None = None


@dataclass
class SendReport:
    edition: date
    transport: str
    dry_run: bool
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        return counts

    def to_dict(self) -> dict:
        return {
            "edition": self.edition.isoformat(),
            "transport": self.transport,
            "dry_run": self.dry_run,
            "counts": self.counts,
            "outcomes": [asdict(o) for o in self.outcomes],
        }


def select_subscribers(
    store: Store, emails: Sequence[str] | None
) -> tuple[list[Subscriber], list[Outcome]]:
    """Active subscribers (all, or those named); the named ones that cannot get mail are
    reported as skipped."""
    if not emails:
        return store.list_subscribers(Status.ACTIVE), []
    chosen, skipped = [], []
    for email in dict.fromkeys(emails):
        try:
            subscriber = store.get_subscriber(email.strip())
        except SubscriberNotFound:
            skipped.append(Outcome(email, "skipped", "not a subscriber"))
            continue
        if subscriber.status != Status.ACTIVE:
            skipped.append(
                Outcome(subscriber.email, "skipped", f"subscription is {subscriber.status}")
            )
        else:
            chosen.append(subscriber)
    return chosen, skipped


def check_real_send(settings: Settings) -> None:
    if settings.from_address == DEFAULT_FROM or settings.sender_domain == "localhost":
        raise SettingsError(
            "NEWSLETTER_FROM is not set to a real address: mail servers reject mail from "
            f"{settings.sender_email}. Set it, e.g. NEWSLETTER_FROM='Daily Papers <papers@example.org>'"
        )


def send_edition(
    store: Store,
    settings: Settings,
    edition: date,
    *,
    to: Sequence[str] | None = None,
    dry_run: bool = False,
    limit: int | None = None,
    force: bool = False,
    transport: Transport | None = None,
    on_progress: Callable[[Outcome], None] | None = None,
) -> SendReport:
    """Send ``edition`` to every active subscriber (or those in ``to``) who has not had it.

    Each message is claimed in the ledger before it is handed to the transport and recorded
    after, so running the same send twice sends nothing the second time. One subscriber's
    failure is recorded and the run goes on; only a transport that cannot work at all stops
    it (the messages not yet claimed stay for the next run).
    """
    transport = transport or transport_from_url(settings.transport, settings)
    if transport.delivers_mail and not dry_run:
        check_real_send(settings)
    signer = link_signer(settings, store, real_send=transport.delivers_mail and not dry_run)
    renderer = Renderer(settings, signer)
    ledger = Ledger(store)
    subscribers, skipped = select_subscribers(store, to)
    report = SendReport(edition, transport.describe(), dry_run, outcomes=list(skipped))
    plan = plan_edition(store, settings, edition, subscribers)
    recorded = ledger.for_edition(edition)
    sent_count = 0
    opened = False

    def note(outcome: Outcome) -> None:
        report.outcomes.append(outcome)
        if on_progress:
            on_progress(outcome)

    try:
        for subscriber in subscribers:
            picks = plan.get(subscriber.id, [])
            existing = recorded.get(subscriber.id)
            if existing and existing.status == "sent" and not force:
                note(
                    Outcome(
                        subscriber.email,
                        "skipped",
                        f"already sent ({existing.message_id})",
                        len(existing.paper_ids),
                        existing.message_id,
                    )
                )
                continue
            if not picks:
                log.info(
                    "%s: no new paper above the minimum score; no email today", subscriber.email
                )
                store.log_event("edition.empty", subscriber.id, edition.isoformat())
                note(Outcome(subscriber.email, "skipped", "no new paper relevant enough today"))
                continue
            if dry_run:
                note(Outcome(subscriber.email, "would-send", _titles(picks), len(picks)))
                continue
            if limit is not None and sent_count >= limit:
                note(Outcome(subscriber.email, "skipped", f"--limit {limit} reached", len(picks)))
                continue
            delivery, why = ledger.claim(edition, subscriber, picks, settings.sender_domain, force)
            if delivery is None:
                note(Outcome(subscriber.email, "skipped", why, len(picks)))
                continue
            try:
                message = renderer.message(subscriber, picks, edition, delivery.message_id)
            except Exception as exc:  # one broken paper must not stop the others
                log.exception("%s: cannot render the email", subscriber.email)
                ledger.record(delivery, _failure(f"cannot render: {exc}"))
                note(Outcome(subscriber.email, "failed", f"cannot render: {exc}", len(picks)))
                continue
            if not opened:
                try:
                    transport.open()
                except TransportError as exc:
                    ledger.record(delivery, _failure(str(exc)))
                    raise
                opened = True
            result = transport.send(message)
            ledger.record(delivery, result)
            sent_count += result.status == "sent"
            detail = _titles(picks) if result.status == "sent" else (result.error or "")
            note(Outcome(subscriber.email, result.status, detail, len(picks), delivery.message_id))
    finally:
        if opened:
            transport.close()
        store.log_event(
            "edition.run", edition=edition.isoformat(), dry_run=dry_run, counts=report.counts
        )
    return report


def _failure(error: str) -> SendResult:
    return SendResult("failed", error=error)


def _titles(picks: list[Pick]) -> str:
    first = " ".join(picks[0].paper.title.split())
    return (
        first[:70]
        + ("…" if len(first) > 70 else "")
        + (f" (+{len(picks) - 1})" if len(picks) > 1 else "")
    )


def preview(
    store: Store, settings: Settings, email: str, edition: date
) -> tuple[Subscriber, list[Pick], Renderer]:
    """What ``email`` gets (or got) in ``edition``, without sending or recording anything."""
    subscriber = store.get_subscriber(email.strip())
    picks = plan_edition(store, settings, edition, [subscriber]).get(subscriber.id, [])
    renderer = Renderer(settings, link_signer(settings, store, real_send=False))
    return subscriber, picks, renderer
