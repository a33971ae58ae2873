"""The list's health in figures, computed once for the dashboard's overview,
``newsletter stats [--json]`` and ``/metrics``: subscribers by status and per day, the
editions of the last weeks by outcome, bounce and complaint rates beside the providers'
limits, the readers' "more/less like this" signals, each source's last ingest, and what the
worker does. Every count comes from the store (the ledger's rows, the event log)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ..models import Status
from ..settings import Settings
from ..store import Store
from ..subscribers.bounces import EVENT_KINDS
from .status import BOUNCE_RATE_LIMIT, COMPLAINT_RATE_LIMIT, sender_running

#: Days of the subscriber and feedback charts, and of the editions' table.
SUBSCRIBER_DAYS = 90
EDITION_DAYS = 30
#: The outcomes an edition's messages end in, as the overview shows them.
OUTCOMES = ("sent", "failed", "rejected", "unknown", "suppressed")
#: The event kinds behind each subscriber series.
JOINED, CONFIRMED = "subscriber.added", "subscription.confirmed"
STATUS_CHANGE = "subscriber.status"
#: Bounces and complaints reported later, by the relays' webhooks or the bounce mailbox.
HARD_BOUNCE, COMPLAINT = EVENT_KINDS["hard_bounce"], EVENT_KINDS["complaint"]
#: Ingest runs read for the sources' table.
INGEST_EVENTS = 500


@dataclass(frozen=True)
class Rates:
    """Bounces and complaints over the messages of the last ``EDITION_DAYS`` days' editions.
    ``messages`` are those that reached a server's answer (sent or rejected); ``bounces``
    are the messages rejected at once plus the hard bounces the relays reported later."""

    messages: int
    bounces: int
    complaints: int
    bounce_limit: float = BOUNCE_RATE_LIMIT
    complaint_limit: float = COMPLAINT_RATE_LIMIT

    @property
    def bounce_rate(self) -> float:
        return self.bounces / self.messages if self.messages else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complaints / self.messages if self.messages else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "bounce_rate": round(self.bounce_rate, 6),
            "complaint_rate": round(self.complaint_rate, 6),
            "bounce_ok": self.bounce_rate < self.bounce_limit,
            "complaint_ok": self.complaint_rate < self.complaint_limit,
        }


@dataclass(frozen=True)
class SourceHealth:
    """A source's last ingest (its counts) and how many of its recent runs had failures."""

    source: str
    last_at: str
    last: dict[str, int]
    last_failures: list[str]
    runs: int
    failed_runs: int


@dataclass(frozen=True)
class Overview:
    generated_at: str
    subscribers: dict[str, int]
    #: One row per day, oldest first: {day, joined, confirmed, unsubscribed, bounced}.
    subscriber_days: list[dict[str, Any]]
    #: One row per edition with messages, oldest first: {edition, total, <outcome>: n}.
    editions: list[dict[str, Any]]
    rates: Rates
    #: One row per day of the last EDITION_DAYS days: {day, more, less}.
    feedback_days: list[dict[str, Any]]
    sources: list[SourceHealth]
    worker: dict[str, Any]
    #: The last run of the delivery loop: its edition, counts and timings (SendStats).
    last_run: dict[str, Any] | None
    messages: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at,
            "subscribers": self.subscribers,
            "messages": self.messages,
            "subscriber_days": self.subscriber_days,
            "editions": self.editions,
            "rates": self.rates.to_dict(),
            "feedback_days": self.feedback_days,
            "sources": [asdict(s) for s in self.sources],
            "worker": self.worker,
            "last_run": self.last_run,
        }


def _days(today: date, count: int) -> list[str]:
    return [(today - timedelta(days=count - 1 - i)).isoformat() for i in range(count)]


def _subscriber_days(store: Store, today: date) -> list[dict[str, Any]]:
    days = _days(today, SUBSCRIBER_DAYS)
    rows: dict[str, dict[str, Any]] = {
        d: {"day": d, "joined": 0, "confirmed": 0, "unsubscribed": 0, "bounced": 0} for d in days
    }
    kinds = [JOINED, CONFIRMED, STATUS_CHANGE]
    for day, kind, new, n in store.events_per_day(kinds, days[0], detail_key="new"):
        if day not in rows:
            continue
        if kind == JOINED:
            rows[day]["joined"] += n
        elif kind == CONFIRMED:
            rows[day]["confirmed"] += n
        elif new in (Status.UNSUBSCRIBED, Status.BOUNCED):
            rows[day][str(new)] += n
    return list(rows.values())


def _feedback_days(store: Store, today: date) -> list[dict[str, Any]]:
    days = _days(today, EDITION_DAYS)
    rows: dict[str, dict[str, Any]] = {d: {"day": d, "more": 0, "less": 0} for d in days}
    for day, _, signal, n in store.events_per_day(["feedback"], days[0], detail_key="signal"):
        if day in rows and signal in ("1", "-1"):
            rows[day]["more" if signal == "1" else "less"] += n
    return list(rows.values())


def _editions(store: Store, today: date) -> list[dict[str, Any]]:
    since = (today - timedelta(days=EDITION_DAYS - 1)).isoformat()
    return [
        {
            "edition": edition,
            "total": sum(counts.values()),
            **{o: counts.get(o, 0) for o in OUTCOMES},
        }
        for edition, counts in store.deliveries_per_edition(since).items()
    ]


def _rates(store: Store, editions: list[dict[str, Any]], today: date) -> Rates:
    since = (today - timedelta(days=EDITION_DAYS - 1)).isoformat()
    reported = store.count_events_since([HARD_BOUNCE, COMPLAINT], since)
    rejected = sum(e["rejected"] for e in editions)
    return Rates(
        messages=sum(e["sent"] for e in editions) + rejected,
        bounces=rejected + reported.get(HARD_BOUNCE, 0),
        complaints=reported.get(COMPLAINT, 0),
    )


def _sources(store: Store) -> list[SourceHealth]:
    runs: dict[str, list[dict]] = {}
    for event in store.events("ingest", limit=INGEST_EVENTS):  # newest first
        runs.setdefault(str(event["detail"].get("source", "?")), []).append(event)
    health = []
    for source, events in sorted(runs.items()):
        last = events[0]
        detail = last["detail"]
        health.append(
            SourceHealth(
                source=source,
                last_at=last["at"],
                last={
                    k: int(detail.get(k) or 0)
                    for k in ("fetched", "new", "updated", "unchanged", "skipped")
                },
                last_failures=list(detail.get("failures") or []),
                runs=len(events),
                failed_runs=sum(1 for e in events if e["detail"].get("failures")),
            )
        )
    return health


def _last_run(store: Store) -> dict[str, Any] | None:
    for event in store.events("edition.run", limit=20):
        if not event["detail"].get("dry_run"):
            return {"at": event["at"], "edition": event["edition"], **event["detail"]}
    return None


def overview(store: Store, settings: Settings, now: datetime | None = None) -> Overview:
    """The figures of the dashboard's overview, as of ``now`` (UTC)."""
    now = now or datetime.now(UTC)
    today = now.astimezone(UTC).date()
    editions = _editions(store, today)
    by_status = store.subscribers_by_status()
    return Overview(
        generated_at=now.astimezone(UTC).isoformat(timespec="seconds"),
        subscribers={str(s): by_status.get(s, 0) for s in Status},
        messages={str(s): n for s, n in sorted(store.deliveries_by_status().items())},
        subscriber_days=_subscriber_days(store, today),
        editions=editions,
        rates=_rates(store, editions, today),
        feedback_days=_feedback_days(store, today),
        sources=_sources(store),
        worker={
            "running": sender_running(settings),
            "last_delivery": store.get_meta("worker.last_delivery"),
            "last_ingest": store.get_meta("worker.last_ingest"),
            "next_run": store.get_meta("worker.next_run"),
        },
        last_run=_last_run(store),
    )


def edition_outcomes(store: Store, edition: str) -> dict[str, int]:
    """{outcome: messages} of one edition, every outcome named (0 when none)."""
    counts = store.deliveries.counts(edition)
    return {**{o: counts.get(o, 0) for o in OUTCOMES}, **counts}
