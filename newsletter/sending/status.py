"""What an operator wants to know at a glance: is the worker running, when did it last and
when will it next run, how far is the current edition, and how the last editions fared
(bounce and complaint rates, beside the thresholds mailbox providers publish)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime

from ..models import Status, to_utc_iso
from ..settings import Settings
from ..store import Store
from ..subscribers.bounces import EVENT_KINDS
from .ledger import DeliveryStatus, Ledger
from .locking import LockBusy, SendingLock

#: Editions whose rates ``newsletter status`` shows.
RATE_EDITIONS = 7
#: Gmail's bulk-sender guidelines: keep the spam rate reported in Postmaster Tools under
#: 0.3%, and aim for under 0.1% (Yahoo asks the same); a bounce rate is commonly kept under 2%.
COMPLAINT_RATE_LIMIT = 0.003
COMPLAINT_RATE_AIM = 0.001
BOUNCE_RATE_LIMIT = 0.02
THRESHOLDS = {
    "complaint_rate": {"limit": COMPLAINT_RATE_LIMIT, "aim": COMPLAINT_RATE_AIM},
    "bounce_rate": {"limit": BOUNCE_RATE_LIMIT},
}


@dataclass(frozen=True)
class EditionRates:
    """How one edition fared. ``delivered`` is what a mail server accepted or refused at
    once (the rate's denominator); ``hard_bounces`` are the refusals at send time and the
    hard bounces reported later for this edition (by a VERP bounce, which names it);
    ``soft_bounces`` and ``complaints`` likewise. Bounces and complaints reported without
    an edition (the relays' webhooks) are not counted here."""

    edition: str
    delivered: int
    hard_bounces: int
    soft_bounces: int
    complaints: int

    @property
    def bounce_rate(self) -> float:
        return self.hard_bounces / self.delivered if self.delivered else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complaints / self.delivered if self.delivered else 0.0

    @property
    def over(self) -> list[str]:
        """The thresholds this edition is past: ``bounce_rate``, ``complaint_rate``."""
        return [
            name
            for name, rate, limit in [
                ("bounce_rate", self.bounce_rate, BOUNCE_RATE_LIMIT),
                ("complaint_rate", self.complaint_rate, COMPLAINT_RATE_LIMIT),
            ]
            if rate >= limit
        ]

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "bounce_rate": self.bounce_rate,
            "complaint_rate": self.complaint_rate,
            "over": self.over,
        }


def edition_rates(store: Store, last: int = RATE_EDITIONS) -> list[EditionRates]:
    """The bounce and complaint rates of the ``last`` editions, newest first."""
    editions = store.deliveries.recent_editions(last)
    kinds = [EVENT_KINDS["hard_bounce"], EVENT_KINDS["soft_bounce"], EVENT_KINDS["complaint"]]
    events = store.event_counts_by_edition(kinds, editions)
    rates = []
    for edition in editions:
        counts = store.deliveries.counts(edition)
        reported = events.get(edition, {})
        refused = counts.get(DeliveryStatus.REJECTED, 0)
        rates.append(
            EditionRates(
                edition=edition,
                delivered=counts.get(DeliveryStatus.SENT, 0) + refused,
                hard_bounces=refused + reported.get(kinds[0], 0),
                soft_bounces=reported.get(kinds[1], 0),
                complaints=reported.get(kinds[2], 0),
            )
        )
    return rates


def sender_running(settings: Settings) -> str | None:
    """Who holds the sending lock ("pid N", or "shard 0/2: pid N, ..." when shards run), or
    None when nobody does."""
    lock = SendingLock(settings.db)
    try:
        lock.acquire()
    except LockBusy as busy:
        return busy.holders
    lock.release()
    return None


def status_report(
    store: Store, settings: Settings, edition: date, now: datetime | None = None
) -> dict:
    """The worker, the edition (its counts, the senders holding its messages now, those a
    crash left unknown, those that failed), the list and the papers."""
    ledger = Ledger(store)
    moment = to_utc_iso(now or datetime.now(UTC))
    return {
        "worker": {
            "running": sender_running(settings),
            "last_delivery": store.get_meta("worker.last_delivery"),
            "last_ingest": store.get_meta("worker.last_ingest"),
            "last_bounce_scan": store.get_meta("worker.last_bounce_scan"),
            "next_run": store.get_meta("worker.next_run"),
        },
        "edition": {
            "date": edition.isoformat(),
            "counts": ledger.counts(edition),
            "senders": [
                {
                    "owner": holder.owner,
                    "messages": holder.messages,
                    "lease_until": holder.until,
                    "lease_ran_out": holder.until is not None and holder.until <= moment,
                }
                for holder in store.deliveries.holders(edition.isoformat())
            ],
            "unknown": [
                {"subscriber_id": e["subscriber_id"], **e["detail"]}
                for e in ledger.unknown(edition)
            ],
            "failed": [
                {
                    "email": d.email,
                    "attempts": d.attempts,
                    "last_error": d.last_error,
                    "next_attempt_at": d.next_attempt_at,
                }
                for d in ledger.failed(edition)
            ],
        },
        "rates": {
            "editions": [rates.to_dict() for rates in edition_rates(store)],
            "thresholds": THRESHOLDS,
        },
        "subscribers": {s.value: store.count_subscribers(s) for s in Status},
        "papers": store.count("papers"),
    }
