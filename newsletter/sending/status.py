"""What an operator wants to know at a glance: is the worker running, when did it last and
when will it next run, and how far is the current edition."""

from __future__ import annotations

from datetime import UTC, date, datetime

from ..models import Status, to_utc_iso
from ..settings import Settings
from ..store import Store
from .ledger import Ledger
from .locking import LockBusy, SendingLock


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
        "subscribers": {s.value: store.count_subscribers(s) for s in Status},
        "papers": store.count("papers"),
    }
