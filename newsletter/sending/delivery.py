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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from urllib.parse import urlsplit

from ..mail.render import OutgoingEmail, Renderer
from ..mail.transport import check_real_send, transport_from_url
from ..models import SUPPRESSED, Pick, Shard, Status, Subscriber, to_utc_iso
from ..settings import Settings
from ..store import Store, SubscriberNotFound
from ..tokens import link_signer
from ..transports import SendResult, Transport, TransportError
from ..transports.courier import Courier
from .edition import plan_edition
from .ledger import Delivery, DeliveryStatus, Ledger, Refusal

log = logging.getLogger(__name__)

WHOLE_LIST = Shard()


@dataclass
class Outcome:
    email: str
    status: str  # sent | would-send | skipped | failed | rejected | suppressed
    detail: str
    papers: int = 0
    message_id: str | None = None
    #: Why the ledger refused the claim, for the caller to word (``detail`` is its name).
    refusal: Refusal | None = None

    def to_dict(self) -> dict:
        fields = {k: v for k, v in vars(self).items() if k != "refusal"}
        return {**fields, "refusal": self.refusal.reason if self.refusal else None}


@dataclass
class SendStats:
    """Where the time of a run went, in seconds of wall time. ``rank`` is planning the
    edition; ``deliver`` is the loop that sends it, within which ``render`` (the parts of
    each email), ``compose`` (its MIME message), ``ledger`` (claims and records, one
    transaction per message) and ``wait`` (for a free connection, while the transport
    hands the previous message over) take turns: each email is rendered while the one
    before it is on the wire. ``messages`` were handed to the transport."""

    total: float = 0.0
    rank: float = 0.0
    deliver: float = 0.0
    render: float = 0.0
    compose: float = 0.0
    ledger: float = 0.0
    wait: float = 0.0
    messages: int = 0

    @contextmanager
    def timing(self, step: str) -> Iterator[None]:
        """Add the time the ``with`` block takes to ``step``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            setattr(self, step, getattr(self, step) + time.perf_counter() - start)

    def to_dict(self) -> dict[str, float | int]:
        return {k: v if isinstance(v, int) else round(v, 3) for k, v in asdict(self).items()}


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
    stats: SendStats = field(default_factory=SendStats)

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
            "stats": self.stats.to_dict(),
            "outcomes": [o.to_dict() for o in self.outcomes],
        }


def select_subscribers(
    store: Store, emails: Sequence[str] | None, shard: Shard = WHOLE_LIST
) -> tuple[list[Subscriber], list[Subscriber], list[Outcome]]:
    """(active subscribers to send to, suppressed ones named, outcomes for the others
    named): all active subscribers of ``shard``, or those in ``emails``."""
    if not emails:
        return [s for s in store.list_subscribers(Status.ACTIVE) if s.id in shard], [], []
    chosen, suppressed, skipped = [], [], []
    for email in dict.fromkeys(emails):
        try:
            subscriber = store.get_subscriber(email.strip())
        except SubscriberNotFound:
            skipped.append(Outcome(email, "skipped", "not a subscriber"))
            continue
        if subscriber.id not in shard:
            own = Shard(subscriber.id % shard.count, shard.count)
            skipped.append(Outcome(subscriber.email, "skipped", f"in shard {own}, not {shard}"))
        elif subscriber.status == Status.ACTIVE:
            chosen.append(subscriber)
        elif subscriber.status in SUPPRESSED:
            suppressed.append(subscriber)
        else:
            skipped.append(
                Outcome(subscriber.email, "skipped", f"subscription is {subscriber.status}")
            )
    return chosen, suppressed, skipped


class _Throttle:
    """The per-second and per-hour caps: ``exhausted`` says when the hour's budget is
    spent, ``pace`` waits for the next slot and spends one. Each of ``shards`` processes
    keeps to its share of the caps (an hourly budget of at least one message)."""

    def __init__(
        self,
        settings: Settings,
        sent_last_hour: int,
        sleep: Callable[[float], None],
        shards: int = 1,
    ):
        self.interval = shards / settings.max_per_second if settings.max_per_second else 0.0
        self.hourly = max(1, settings.max_per_hour // shards)
        self.budget = self.hourly - sent_last_hour if settings.max_per_hour else None
        self.sleep = sleep
        self.last = 0.0

    def exhausted(self) -> bool:
        return self.budget is not None and self.budget <= 0

    def pace(self) -> None:
        pause = self.last + self.interval - time.monotonic()
        if pause > 0:
            self.sleep(pause)
        self.last = time.monotonic()
        if self.budget is not None:
            self.budget -= 1


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
        """Send ``message`` on a free connection (the caller never has more in flight than
        there are connections). An open courier is handed the message at once, here: a
        thread of the pool would first have to wait for the interpreter lock, which this
        thread holds while it renders the next email."""
        transport = self.idle.get_nowait()
        if isinstance(transport, Courier) and id(transport) in self.opened:
            try:
                transport.post(message)
            except OSError as exc:  # the courier is gone: so is its connection
                self.idle.put(transport)
                failed: Future[SendResult] = Future()
                failed.set_exception(TransportError(f"the SMTP courier process died: {exc}"))
                return failed
            return self.pool.submit(self._answer, transport)
        self.idle.put(transport)
        return self.pool.submit(self._send, message)

    def _answer(self, courier: Courier) -> SendResult:
        try:
            return courier.answer()
        finally:
            self.idle.put(courier)

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
            # A courier ends with its process, opened or not.
            if id(transport) in self.opened or isinstance(transport, Courier):
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
    shard: Shard = WHOLE_LIST,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> SendReport:
    """Send ``edition`` to every active subscriber (or those in ``to``, or ``subscribers``)
    of ``shard`` who has not had it. The caller holds the shard's sending lock
    (:mod:`newsletter.sending.locking`).

    Each message is claimed in the ledger before it is handed to the transport and recorded
    after, so running the same send twice sends nothing the second time; the answer to one
    message and the claim of the next are one transaction, and each email is rendered while
    the one before it is on the wire. One subscriber's failure is recorded and the run goes
    on; a transport that cannot work at all (server unreachable, login refused) stops it,
    and the messages not yet claimed stay for the next run. ``report.stats`` says where the
    time went. ``now`` is the ledger's clock.
    """
    started = time.perf_counter()

    def make() -> Transport:
        return transport_from_url(settings.transport, settings)

    first = transport or make()
    real = first.delivers_mail and not dry_run
    if real:
        check_real_send(settings)
    renderer = Renderer(settings, link_signer(settings, store, real_send=real))
    ledger = Ledger(store, now)
    if subscribers is None:
        subscribers, suppressed, skipped = select_subscribers(store, to, shard)
    else:
        subscribers, suppressed, skipped = [s for s in subscribers if s.id in shard], [], []
    report = SendReport(edition, first.describe(), dry_run, outcomes=list(skipped))
    stats = report.stats
    if not dry_run:
        report.unknown = [d.email for d in ledger.mark_unknown(shard)]
    run = _Run(store, settings, edition, report, ledger, renderer, force, on_progress)
    for subscriber in suppressed:
        if not dry_run:
            ledger.suppress(
                edition, subscriber, settings.sender_domain, f"address {subscriber.status}"
            )
        run.note(Outcome(subscriber.email, "suppressed", f"the address is {subscriber.status}"))
    planned_at = to_utc_iso(now())
    with stats.timing("rank"):
        plan = plan_edition(store, settings, edition, subscribers)
    recorded = ledger.for_edition(edition)
    domain = settings.sender_domain
    hour_ago = to_utc_iso(now() - timedelta(hours=1))
    throttle = _Throttle(settings, ledger.sent_since(hour_ago, shard), sleep, shard.count)
    # Parallel connections for SMTP only: a relay's rate-limit state lives in its object.
    # Each SMTP connection is held by a courier process, which talks to the server while
    # this one renders the next email.
    smtp = transport is None and urlsplit(settings.transport).scheme in ("smtp", "smtps")
    count = settings.send_connections if smtp else 1
    connections: _Connections | None = None
    in_flight: InFlight = {}
    attempted = 0
    looping = time.perf_counter()
    try:
        for subscriber in subscribers:
            picks = plan.get(subscriber.id, [])
            if not run.wanted(subscriber, picks, recorded.get(subscriber.id)):
                continue
            if dry_run:
                run.note(Outcome(subscriber.email, "would-send", _titles(picks), len(picks)))
                continue
            if limit is not None and attempted >= limit:
                run.note(
                    Outcome(subscriber.email, "skipped", f"--limit {limit} reached", len(picks))
                )
                continue
            # Rendered before it is claimed, while the message before it is on the wire.
            existing = recorded.get(subscriber.id)
            expected = Ledger.next_message_id(edition, subscriber, existing, domain)
            message, error = run.compose(subscriber, picks, expected)
            with stats.timing("wait"):
                answered = _answered(in_flight, count)
            with stats.timing("ledger"), store.transaction():
                # One commit: the answers that came in, then the claim of this message.
                fatal = run.finish_all(answered)
                report.stopped = None if fatal else _stop_reason(should_stop, run.storm, throttle)
                claimed = (
                    None
                    if fatal or report.stopped
                    else ledger.claim(edition, subscriber, picks, domain, force, planned_at)
                )
                if isinstance(claimed, Delivery) and message is None:
                    run.cannot_render(claimed, subscriber, picks, error)
            if fatal:
                raise fatal
            if report.stopped:
                break
            if isinstance(claimed, Refusal):
                why = claimed.reason
                run.note(Outcome(subscriber.email, "skipped", why, len(picks), refusal=claimed))
                continue
            delivery = claimed
            attempted += 1
            if message is None:
                continue
            if delivery.message_id != expected:  # the row changed since the run began
                run.renderer.seal(message, delivery.message_id)
            throttle.pace()
            if connections is None:
                transports = [first, *(make() for _ in range(count - 1))]
                connections = _Connections([Courier(t) for t in transports] if smtp else transports)
            in_flight[connections.submit(message)] = (delivery, subscriber, picks)
            stats.messages += 1
        with stats.timing("wait"):
            answered = _answered(in_flight, 1)
        with stats.timing("ledger"), store.transaction():
            fatal = run.finish_all(answered)
        if fatal:
            raise fatal
    finally:
        # Whatever stopped the run (a transport error, Ctrl-C), the answers of the messages
        # still in flight are recorded: a message handed over must not stay 'sending'.
        _drain(run, in_flight)
        if connections is not None:
            connections.close()
        stats.deliver = time.perf_counter() - looping
        stats.total = time.perf_counter() - started
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
    if throttle.exhausted():
        return f"the hourly cap ({throttle.hourly} messages) is reached; the rest goes next hour"
    return None


InFlight = dict[Future[SendResult], tuple[Delivery, Subscriber, list[Pick]]]


Answered = list[tuple[Future[SendResult], tuple[Delivery, Subscriber, list[Pick]]]]


def _answered(in_flight: InFlight, free: int) -> Answered:
    """Wait until fewer than ``free`` messages are in flight (``free`` = 1: none); the
    messages answered meanwhile, taken out of ``in_flight``."""
    answered: Answered = []
    while len(in_flight) >= free and in_flight:
        done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
        answered += [(future, in_flight.pop(future)) for future in done]
    return answered


def _drain(run: _Run, in_flight: InFlight) -> None:
    """Record every message still in flight once its send returns."""
    for future in list(in_flight):
        delivery, subscriber, picks = in_flight.pop(future)
        try:
            result = future.result()
        except TransportError as exc:
            result = SendResult("failed", error=str(exc))
        except Exception as exc:  # it may have gone out before the error
            result = SendResult("failed", error=f"{type(exc).__name__}: {exc}", maybe_sent=True)
        run.finish(delivery, subscriber, picks, result)


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

    def compose(
        self, subscriber: Subscriber, picks: list[Pick], msg_id: str
    ) -> tuple[OutgoingEmail | None, Exception | None]:
        """The email, sealed with the Message-ID its claim will give it, or the error that
        kept it from being made."""
        try:
            with self.report.stats.timing("render"):
                rendered = self.renderer.render(subscriber, picks, self.edition)
            with self.report.stats.timing("compose"):
                message = self.renderer.compose(subscriber, rendered, self.edition)
                return self.renderer.seal(message, msg_id), None
        except Exception as exc:  # one broken paper must not stop the others
            log.exception("%s: cannot render the email", subscriber.email)
            return None, exc

    def cannot_render(
        self, delivery: Delivery, subscriber: Subscriber, picks: list[Pick], error: Exception
    ) -> None:
        self.ledger.record(delivery, SendResult("failed", error=f"cannot render: {error}"))
        self.note(Outcome(subscriber.email, "failed", f"cannot render: {error}", len(picks)))

    def finish_all(self, answered: Answered) -> TransportError | None:
        """Record the answers; a transport that cannot work at all is recorded as a failure
        of its message and returned, for the caller to raise once they are committed."""
        fatal = None
        for future, (delivery, subscriber, picks) in answered:
            try:
                result = future.result()
            except TransportError as exc:
                result, fatal = SendResult("failed", error=str(exc)), exc
            self.finish(delivery, subscriber, picks, result)
        return fatal

    def finish(
        self, delivery: Delivery, subscriber: Subscriber, picks: list[Pick], result: SendResult
    ) -> None:
        """Record the answer; a permanent refusal suppresses the address."""
        self.ledger.record(delivery, result)
        self.storm.add(result.status != "sent")
        detail = _titles(picks) if result.status == "sent" else (result.error or "")
        if result.status == "rejected":
            self.store.update_subscriber(subscriber.id, status=Status.BOUNCED)
            self.store.log_event("subscriber.suppressed", subscriber.id, reason=result.error)
            detail += "; address suppressed"
        self.note(Outcome(subscriber.email, result.status, detail, len(picks), delivery.message_id))


def _titles(picks: list[Pick]) -> str:
    first = " ".join(picks[0].paper.title.split())
    more = f" (+{len(picks) - 1})" if len(picks) > 1 else ""
    return first[:70] + ("…" if len(first) > 70 else "") + more
