"""Delivery: send an edition through the ledger, politely and without losing track.

For each subscriber who is due the edition: the message is claimed in the ledger, rendered,
handed to one of ``send_connections`` transport connections and recorded when the server
answers. Temporary failures are retried later with back-off (the ledger's rule), permanent
refusals suppress the address, a crash leaves at most one message per connection unknown
(the ledger's rule for those: sent again with the same Message-ID). The run respects the
per-second and per-hour caps, pauses itself when nearly everything fails, and stops
cleanly between two messages when asked to.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from urllib.parse import urlsplit

from .edition import Pick, plan_edition
from .ledger import Delivery, DeliveryStatus, Ledger
from .models import Status, Subscriber, to_utc_iso
from .render import Renderer
from .settings import DEFAULT_FROM, Settings, SettingsError
from .store import Store, SubscriberNotFound
from .tokens import link_signer
from .transports import SendResult, Transport, TransportError, transport_from_url

log = logging.getLogger(__name__)

#: Subscriber statuses that mean "never send to this address again" (until an operator
#: reactivates it explicitly).
SUPPRESSED = (Status.BOUNCED, Status.UNSUBSCRIBED)


@dataclass
class Outcome:
    email: str
    status: str  # sent | would-send | skipped | failed | rejected | suppressed
    detail: str
    papers: int = 0
    message_id: str | None = None


@dataclass
class SendReport:
    edition: date
    transport: str
    dry_run: bool
    outcomes: list[Outcome] = field(default_factory=list)
    #: Why the run stopped early (error storm, hourly cap, asked to stop), if it did.
    stopped: str | None = None
    #: Messages a crashed earlier run left unknown, found at the start of this one.
    unknown: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        return counts

    @property
    def ok(self) -> bool:
        return not (self.counts.get("failed") or self.counts.get("rejected") or self.stopped)

    def to_dict(self) -> dict:
        return {
            "edition": self.edition.isoformat(),
            "transport": self.transport,
            "dry_run": self.dry_run,
            "counts": self.counts,
            "stopped": self.stopped,
            "unknown": self.unknown,
            "outcomes": [asdict(o) for o in self.outcomes],
        }


def check_real_send(settings: Settings) -> None:
    if settings.from_address == DEFAULT_FROM or settings.sender_domain == "localhost":
        raise SettingsError(
            "NEWSLETTER_FROM is not set to a real address: mail servers reject mail from "
            f"{settings.sender_email}. Set it, e.g. NEWSLETTER_FROM='Daily Papers <papers@example.org>'"
        )


def select_subscribers(
    store: Store, emails: Sequence[str] | None
) -> tuple[list[Subscriber], list[Subscriber], list[Outcome]]:
    """(active subscribers to send to, suppressed ones named, outcomes for the others
    named): all active subscribers, or those in ``emails``."""
    if not emails:
        return store.list_subscribers(Status.ACTIVE), [], []
    chosen, suppressed, skipped = [], [], []
    for email in dict.fromkeys(emails):
        try:
            subscriber = store.get_subscriber(email.strip())
        except SubscriberNotFound:
            skipped.append(Outcome(email, "skipped", "not a subscriber"))
            continue
        if subscriber.status == Status.ACTIVE:
            chosen.append(subscriber)
        elif subscriber.status in SUPPRESSED:
            suppressed.append(subscriber)
        else:
            skipped.append(
                Outcome(subscriber.email, "skipped", f"subscription is {subscriber.status}")
            )
    return chosen, suppressed, skipped


class _Throttle:
    """The per-second and per-hour caps. ``ready()`` waits for the next slot, or says no
    when the hour's budget is spent."""

    def __init__(self, settings: Settings, sent_last_hour: int, sleep: Callable[[float], None]):
        self.interval = 1 / settings.max_per_second if settings.max_per_second else 0.0
        self.hourly = settings.max_per_hour
        self.budget = settings.max_per_hour - sent_last_hour if settings.max_per_hour else None
        self.sleep = sleep
        self.last = 0.0

    def ready(self) -> bool:
        if self.budget is not None and self.budget <= 0:
            return False
        pause = self.last + self.interval - time.monotonic()
        if pause > 0:
            self.sleep(pause)
        self.last = time.monotonic()
        if self.budget is not None:
            self.budget -= 1
        return True


class _StormGuard:
    """Trips when nearly every recent message failed: the server or relay refuses
    everything, and carrying on would only burn the list's reputation."""

    def __init__(self, window: int, share: float):
        self.recent: deque[bool] = deque(maxlen=window)
        self.share = share

    def add(self, failed: bool) -> None:
        self.recent.append(failed)

    @property
    def tripped(self) -> str | None:
        if len(self.recent) == self.recent.maxlen and sum(self.recent) >= self.share * len(
            self.recent
        ):
            return f"{sum(self.recent)} of the last {len(self.recent)} messages failed"
        return None


class _Connections:
    """A few transport connections, each used by one thread at a time. The ledger stays on
    the caller's thread: only ``send`` runs in the pool."""

    def __init__(self, transports: list[Transport]):
        self.idle: queue.SimpleQueue[Transport] = queue.SimpleQueue()
        self.all = transports
        for transport in transports:
            self.idle.put(transport)
        self.opened: set[int] = set()
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=len(transports), thread_name_prefix="send")

    def submit(self, message: EmailMessage) -> Future[SendResult]:
        return self.pool.submit(self._send, message)

    def _send(self, message: EmailMessage) -> SendResult:
        transport = self.idle.get()
        try:
            with self.lock:
                fresh = id(transport) not in self.opened
                if fresh:
                    self.opened.add(id(transport))
            if fresh:
                transport.open()
            return transport.send(message)
        finally:
            self.idle.put(transport)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for transport in self.all:
            if id(transport) in self.opened:
                transport.close()


def send_edition(
    store: Store,
    settings: Settings,
    edition: date,
    *,
    to: Sequence[str] | None = None,
    subscribers: Sequence[Subscriber] | None = None,
    dry_run: bool = False,
    limit: int | None = None,
    force: bool = False,
    transport: Transport | None = None,
    on_progress: Callable[[Outcome], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
) -> SendReport:
    """Send ``edition`` to every active subscriber (or those in ``to``, or ``subscribers``)
    who has not had it. The caller holds the sending lock (:mod:`newsletter.locking`).

    Each message is claimed in the ledger before it is handed to the transport and recorded
    after, so running the same send twice sends nothing the second time. One subscriber's
    failure is recorded and the run goes on; a transport that cannot work at all (server
    unreachable, login refused) stops it, and the messages not yet claimed stay for the
    next run.
    """

    def make() -> Transport:
        return transport_from_url(settings.transport, settings)

    first = transport or make()
    real = first.delivers_mail and not dry_run
    if real:
        check_real_send(settings)
    renderer = Renderer(settings, link_signer(settings, store, real_send=real))
    ledger = Ledger(store)
    if subscribers is None:
        subscribers, suppressed, skipped = select_subscribers(store, to)
    else:
        suppressed, skipped = [], []
    report = SendReport(edition, first.describe(), dry_run, outcomes=list(skipped))
    if not dry_run:
        report.unknown = [d.email for d in ledger.mark_unknown()]
        if report.unknown:
            log.warning(
                "%d message(s) were left unknown by a run that stopped while sending; "
                "sending them again with the same Message-ID: %s",
                len(report.unknown),
                ", ".join(report.unknown),
            )
    run = _Run(store, settings, edition, report, ledger, renderer, force, on_progress)
    for subscriber in suppressed:
        if not dry_run:
            ledger.suppress(
                edition, subscriber, settings.sender_domain, f"address {subscriber.status}"
            )
        run.note(Outcome(subscriber.email, "suppressed", f"the address is {subscriber.status}"))
    plan = plan_edition(store, settings, edition, subscribers)
    recorded = ledger.for_edition(edition)
    hour_ago = to_utc_iso(datetime.now(UTC) - timedelta(hours=1))
    throttle = _Throttle(settings, ledger.sent_since(hour_ago), sleep)
    # Parallel connections for SMTP only: a relay's rate-limit state lives in its object.
    smtp = urlsplit(settings.transport).scheme in ("smtp", "smtps")
    count = settings.send_connections if transport is None and smtp else 1
    connections: _Connections | None = None
    in_flight: dict[Future[SendResult], tuple[Delivery, Subscriber, int]] = {}
    sent = 0
    try:
        for subscriber in subscribers:
            picks = plan.get(subscriber.id, [])
            if not run.wanted(subscriber, picks, recorded.get(subscriber.id)):
                continue
            if dry_run:
                run.note(Outcome(subscriber.email, "would-send", _titles(picks), len(picks)))
                continue
            if limit is not None and sent + len(in_flight) >= limit:
                run.note(
                    Outcome(subscriber.email, "skipped", f"--limit {limit} reached", len(picks))
                )
                continue
            report.stopped = _stop_reason(should_stop, run.storm, throttle)
            if report.stopped:
                break
            delivery, why = ledger.claim(edition, subscriber, picks, settings.sender_domain, force)
            if delivery is None:
                run.note(Outcome(subscriber.email, "skipped", why, len(picks)))
                continue
            message = run.render(delivery, subscriber, picks)
            if message is None:
                continue
            if connections is None:
                connections = _Connections([first, *(make() for _ in range(count - 1))])
            in_flight[connections.submit(message)] = (delivery, subscriber, picks)
            while len(in_flight) >= count:
                sent += _collect(run, in_flight)
        while in_flight:
            sent += _collect(run, in_flight)
    finally:
        if connections is not None:
            connections.close()
        if report.stopped:
            log.warning("edition %s: run stopped early: %s", edition, report.stopped)
        store.log_event(
            "edition.run",
            edition=edition.isoformat(),
            dry_run=dry_run,
            counts=report.counts,
            stopped=report.stopped,
            unknown=len(report.unknown),
        )
    return report


def _stop_reason(
    should_stop: Callable[[], bool], storm: _StormGuard, throttle: _Throttle
) -> str | None:
    if should_stop():
        return "asked to stop; the rest goes in the next run"
    if reason := storm.tripped:
        return f"paused: {reason}; the rest goes in the next run"
    if not throttle.ready():
        return f"the hourly cap ({throttle.hourly} messages) is reached; the rest goes next hour"
    return None


def _collect(run: _Run, in_flight: dict) -> int:
    """Wait for at least one answer and record those that arrived; returns how many of
    them were sent. A transport that cannot work at all is recorded and raised."""
    done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
    sent = 0
    for future in done:
        delivery, subscriber, picks = in_flight.pop(future)
        try:
            result = future.result()
        except TransportError as exc:
            run.finish(delivery, subscriber, picks, SendResult("failed", error=str(exc)))
            raise
        sent += run.finish(delivery, subscriber, picks, result)
    return sent


@dataclass
class _Run:
    """The per-message steps of one run, and its bookkeeping."""

    store: Store
    settings: Settings
    edition: date
    report: SendReport
    ledger: Ledger
    renderer: Renderer
    force: bool
    on_progress: Callable[[Outcome], None] | None

    def __post_init__(self) -> None:
        self.storm = _StormGuard(self.settings.storm_window, self.settings.storm_failure_share)

    def note(self, outcome: Outcome) -> None:
        self.report.outcomes.append(outcome)
        if self.on_progress:
            self.on_progress(outcome)

    def wanted(self, subscriber: Subscriber, picks: list[Pick], existing: Delivery | None) -> bool:
        """Whether this subscriber gets a message in this run; notes why not."""
        if existing and existing.status == DeliveryStatus.SENT and not self.force:
            self.note(
                Outcome(
                    subscriber.email,
                    "skipped",
                    f"already sent ({existing.message_id})",
                    len(existing.paper_ids),
                    existing.message_id,
                )
            )
            return False
        if not picks:
            log.info("%s: no new paper above the minimum score; no email today", subscriber.email)
            if not self.store.has_event("edition.empty", subscriber.id, self.edition.isoformat()):
                # Once per edition: the worker looks again at every tick.
                self.store.log_event("edition.empty", subscriber.id, self.edition.isoformat())
            self.note(Outcome(subscriber.email, "skipped", "no new paper relevant enough today"))
            return False
        return True

    def render(
        self, delivery: Delivery, subscriber: Subscriber, picks: list[Pick]
    ) -> EmailMessage | None:
        try:
            return self.renderer.message(subscriber, picks, self.edition, delivery.message_id)
        except Exception as exc:  # one broken paper must not stop the others
            log.exception("%s: cannot render the email", subscriber.email)
            self.ledger.record(delivery, SendResult("failed", error=f"cannot render: {exc}"))
            self.note(Outcome(subscriber.email, "failed", f"cannot render: {exc}", len(picks)))
            return None

    def finish(
        self, delivery: Delivery, subscriber: Subscriber, picks: list[Pick], result: SendResult
    ) -> int:
        """Record the answer; a permanent refusal suppresses the address."""
        self.ledger.record(delivery, result)
        self.storm.add(result.status != "sent")
        detail = _titles(picks) if result.status == "sent" else (result.error or "")
        if result.status == "rejected":
            self.store.update_subscriber(subscriber.id, status=Status.BOUNCED)
            self.store.log_event("subscriber.suppressed", subscriber.id, reason=result.error)
            detail += "; address suppressed"
        self.note(Outcome(subscriber.email, result.status, detail, len(picks), delivery.message_id))
        return int(result.status == "sent")


def _titles(picks: list[Pick]) -> str:
    first = " ".join(picks[0].paper.title.split())
    more = f" (+{len(picks) - 1})" if len(picks) > 1 else ""
    return first[:70] + ("…" if len(first) > 70 else "") + more
