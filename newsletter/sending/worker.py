"""The worker: runs the day with the ``schedule`` library.

It ingests from the enabled sources at the configured times, reads the bounce mailbox
every ``bounce_scan_minutes`` (when one is set), and every few minutes sends
each subscriber whose local delivery hour has come the edition of their local date (once;
weekly readers on their day). Only one worker (or console send) runs against a database at
a time. SIGTERM or SIGINT stops it between two batches (two messages, over SMTP): the batch
in flight is finished and recorded first.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import schedule

from ..models import WHOLE_LIST, Shard, Status, to_utc_iso, utcnow
from ..settings import Settings
from ..store import open_store
from ..subscribers.mailbox import scan_bounces
from ..subscribers.subscriptions import expire_pending
from .daily import ingest_enabled_sources
from .delivery import RunControls, SendOptions, send_edition
from .ledger import Delivery, DeliveryStatus, Ledger
from .locking import SendingLock
from .report import SendReport
from .schedule_rules import due_now

log = logging.getLogger(__name__)


def waiting(delivery: Delivery | None, now: str) -> bool:
    """Whether a subscriber still waits for this edition: nothing recorded yet, a failure
    whose next try has come, or a message a crash left unknown."""
    if delivery is None or delivery.status == DeliveryStatus.UNKNOWN:
        return True
    return (
        delivery.status == DeliveryStatus.FAILED
        and delivery.next_attempt_at is not None
        and delivery.next_attempt_at <= now
    )


class Worker:
    """The worker of the whole list, or of one shard of it (``Shard(i, N)``: the subscribers
    whose id is i modulo N), beside the workers of the other shards. Only the worker of the
    first shard ingests: the others would fetch the same papers again."""

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        shard: Shard = WHOLE_LIST,
    ):
        self.settings = settings
        self.clock = clock
        self.shard = shard
        self.stopping = threading.Event()

    def deliver_due(self) -> list[SendReport]:
        """Send every edition that is due now to the subscribers still waiting for it."""
        now = self.clock()
        reports = []
        with open_store(self.settings) as store:
            ledger = Ledger(store)
            # Rows a dead run left 'sending' wait again (the worker holds the sending lock).
            ledger.mark_unknown(self.shard)
            active = [s for s in store.list_subscribers(Status.ACTIVE) if s.id in self.shard]
            groups = due_now(active, now)
            for edition, due in sorted(groups.items()):
                recorded = ledger.for_edition(edition)
                pending = [s for s in due if waiting(recorded.get(s.id), to_utc_iso(now))]
                if pending and not self.stopping.is_set():
                    report = send_edition(
                        store,
                        self.settings,
                        edition,
                        SendOptions(subscribers=pending, shard=self.shard),
                        RunControls(should_stop=self.stopping.is_set),
                    )
                    log.info("edition %s: %s", edition, report.counts)
                    reports.append(report)
            store.set_meta("worker.last_delivery", to_utc_iso(now))
        return reports

    def ingest(self) -> None:
        with open_store(self.settings) as store:
            expire_pending(store, self.settings)
            summary = ingest_enabled_sources(store, self.settings)
            store.set_meta("worker.last_ingest", utcnow())
        for name, report in summary.sources.items():
            log.info("ingested %s: %s", name, report)

    def scan_bounces(self) -> None:
        """Read the bounce mailbox once (``bounce_mailbox``, every ``bounce_scan_minutes``)."""
        with open_store(self.settings) as store:
            report = scan_bounces(store, self.settings)
            store.set_meta("worker.last_bounce_scan", utcnow())
        log.info("bounce scan: %s", dict(report.counts))

    @property
    def scans_bounces(self) -> bool:
        """Whether this worker reads the bounce mailbox: the first shard's, if one is set."""
        return bool(
            self.settings.bounce_mailbox
            and self.settings.bounce_scan_minutes
            and self.shard.index == 0
        )

    def stop(self, signum: int | None = None, frame: object = None) -> None:
        log.info("stopping after the batch in flight")
        self.stopping.set()

    def run(self) -> None:
        """Run until SIGTERM or SIGINT, holding the sending lock all the while."""
        with SendingLock(self.settings.db, self.shard):
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
            jobs = schedule.Scheduler()
            jobs.every(self.settings.worker_tick_minutes).minutes.do(self._safely, self.deliver_due)
            if self.shard.index == 0:
                for moment in self.settings.ingest_times:
                    jobs.every().day.at(moment).do(self._safely, self.ingest)
            if self.scans_bounces:
                minutes = self.settings.bounce_scan_minutes
                jobs.every(minutes).minutes.do(self._safely, self.scan_bounces)
            log.info(
                "worker started%s: deliveries every %d min, %s",
                "" if self.shard.whole else f" for shard {self.shard}",
                self.settings.worker_tick_minutes,
                f"ingest at {', '.join(self.settings.ingest_times)} (server time)"
                if self.shard.index == 0
                else "ingest by the worker of shard 0",
            )
            self._safely(self.deliver_due)
            while not self.stopping.is_set():
                jobs.run_pending()
                self._note_next(jobs)
                self.stopping.wait(1)
            log.info("worker stopped")

    def _safely(self, job: Callable[[], object]) -> None:
        """Run a job; an error is logged and the worker goes on (the next tick retries)."""
        try:
            job()
        except Exception:
            log.exception("%s failed; the worker goes on", getattr(job, "__name__", "job"))

    def _note_next(self, jobs: schedule.Scheduler) -> None:
        if jobs.next_run is None:
            return
        with open_store(self.settings) as store:
            stamp = jobs.next_run.astimezone(UTC).isoformat(timespec="seconds")
            if store.get_meta("worker.next_run") != stamp:
                store.set_meta("worker.next_run", stamp)
