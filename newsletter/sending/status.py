"""What an operator wants to know at a glance: is the worker running, when did it last and
when will it next run, and how far is the current edition."""

from __future__ import annotations

from datetime import date

from ..models import Status
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


def status_report(store: Store, settings: Settings, edition: date) -> dict:
    ledger = Ledger(store)
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
