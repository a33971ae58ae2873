"""Delivery: send an edition through the ledger, politely and without losing track.

A run goes through six steps, each a method of :class:`_Run` below:

1. **select** who is named or due (suppressed addresses are recorded as such);
2. **plan** their papers (:func:`~newsletter.sending.edition.plan_edition`) and the order
   of the messages, the batches a crash left unknown first, as they were;
3. **compose** each email, while the batch before it is on the wire;
4. **claim** the next messages in the ledger (:meth:`~newsletter.sending.ledger.Ledger.
   claim_next`), in the transaction that records the answers to the batch before;
5. **hand over** each batch of them to a free connection of the transport;
6. **record** each message's answer when it comes: temporary failures are retried later
   with back-off (the ledger's rule), permanent refusals suppress the address.

The transport says how it is best used: how many messages one request carries
(``max_batch``: hundreds for a relay's batch endpoint, one for SMTP) and which connections a
run sends over (``connections``: ``send_connections`` SMTP couriers, one relay client). The
store says how many messages one claim should take (``claim_batch``): as many as one
request carries on SQLite, whose claim holds the whole database, so each batch is composed
first and claimed right before it goes; a window of many batches on PostgreSQL, shared by
senders on several hosts, where one claim per message would make the claims the limit, so
the window is claimed first (the next messages no other sender holds; a message composed
before its claim might be another sender's: ``concurrent_claims``), composed and handed
over batch by batch, and its answers are recorded with the next claim: one transaction per
window. A crash leaves at most one batch per connection handed over without its answer
recorded (on PostgreSQL, the whole window: some went out, some not): unknown, and the
ledger's rule for those applies: sent again with the same Message-ID, as the same batch
(so that, on Resend, the request carries the same idempotency key). What a run holds past
half its lease has the lease renewed before the next batch goes, so that a slow window is
not taken for a dead sender's. The run respects the
per-second and per-hour caps, pauses itself when nearly everything fails, and stops cleanly
between two claims when asked to.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from ..mail.render import OutgoingEmail, Renderer
from ..mail.transport import check_real_send, transport_from_url
from ..models import SUPPRESSED, Pick, Shard, Status, Subscriber, to_utc_iso
from ..ranking.embeddings import embed_profiles
from ..settings import Settings
from ..store import Store, SubscriberNotFound
from ..tokens import link_signer
from ..transports import Connection, SendResult, Transport, TransportError
from .edition import plan_edition
from .ledger import Delivery, DeliveryStatus, Ledger, Refusal
from .pacing import StormGuard, Throttle
from .report import Outcome, SendReport

log = logging.getLogger(__name__)

WHOLE_LIST = Shard()
#: The event that records which messages went in one request, so that a batch a crash
#: left unknown can be sent again as it was.
BATCH_EVENT = "delivery.batch"


@dataclass(frozen=True)
class SendOptions:
    """What a run sends, and to whom."""

    #: The addresses to send to; none: every active subscriber (of ``shard``).
    to: Sequence[str] = ()
    #: The subscribers to send to, chosen by the caller (the worker: those due now).
    subscribers: Sequence[Subscriber] | None = None
    shard: Shard = WHOLE_LIST
    #: Say who would get what; claim and send nothing.
    dry_run: bool = False
    #: The most messages this run attempts.
    limit: int | None = None
    #: Send again what was sent or refused (never to a suppressed address).
    force: bool = False


@dataclass(frozen=True)
class RunControls:
    """How the caller follows and steers a run."""

    #: Called with each subscriber's outcome as it is known.
    on_progress: Callable[[Outcome], None] | None = None
    #: Asked before each batch: True stops the run there (the worker's SIGTERM).
    should_stop: Callable[[], bool] = lambda: False
    #: How the per-second cap waits.
    sleep: Callable[[float], None] = time.sleep
    #: The ledger's clock: when messages are claimed and answered, and their retries due.
    now: Callable[[], datetime] = lambda: datetime.now(UTC)


def send_edition(
    store: Store,
    settings: Settings,
    edition: date,
    options: SendOptions = SendOptions(),
    controls: RunControls = RunControls(),
    transport: Transport | None = None,
) -> SendReport:
    """Send ``edition`` to every active subscriber (or those ``options`` name) of
    ``options.shard`` who has not had it. The caller holds the shard's sending lock
    (:mod:`newsletter.sending.locking`).

    Each message is claimed in the ledger before it is handed to the transport and recorded
    after, so running the same send twice sends nothing the second time. One subscriber's
    failure is recorded and the run goes on; a transport that cannot work at all (server
    unreachable, login refused, token refused) stops it, and the messages not yet claimed
    stay for the next run. ``report.stats`` says where the time went.
    """
    transport = transport or transport_from_url(settings.transport, settings)
    return _Run(store, settings, edition, options, controls, transport).send()


def select_subscribers(
    store: Store, emails: Sequence[str], shard: Shard = WHOLE_LIST
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


@dataclass
class _Draft:
    """A composed email, not yet claimed: ``message`` is sealed with the Message-ID that
    its claim is expected to give it (None, with ``error``, when it could not be made)."""

    subscriber: Subscriber
    picks: list[Pick]
    expected_id: str
    message: OutgoingEmail | None
    error: Exception | None = None


@dataclass
class _Claimed:
    """A message claimed in the ledger, to be handed over and recorded."""

    delivery: Delivery
    subscriber: Subscriber
    picks: list[Pick]
    message: OutgoingEmail


@dataclass
class _Unsent:
    """A message claimed but not yet handed over, and its draft if it was composed."""

    delivery: Delivery
    subscriber: Subscriber
    picks: list[Pick]
    draft: _Draft | None


Candidate = tuple[Subscriber, list[Pick]]


class _Run:
    """One run of the delivery loop: its steps, in the order of :meth:`send`, and its
    bookkeeping."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        edition: date,
        options: SendOptions,
        controls: RunControls,
        transport: Transport,
    ):
        self.store, self.settings, self.edition = store, settings, edition
        self.options, self.controls, self.transport = options, controls, transport
        self.ledger = Ledger(store, controls.now, lease=timedelta(seconds=settings.lease_seconds))
        self.domain = settings.sender_domain
        real = transport.delivers_mail and not options.dry_run
        if real:
            check_real_send(settings)
        self.renderer = Renderer(settings, link_signer(settings, store, real_send=real))
        self.report = SendReport(edition, transport.describe(), options.dry_run)
        self.stats = self.report.stats
        self.storm = StormGuard(settings.storm_window, settings.storm_failure_share)
        hour_ago = to_utc_iso(controls.now() - timedelta(hours=1))
        sent_last_hour = self.ledger.sent_since(hour_ago, options.shard)
        self.throttle = Throttle(settings, sent_last_hour, controls.sleep, options.shard.count)
        self.wire = _Wire(transport, settings.send_connections)
        #: The edition's ledger rows as the run began, and when its papers were chosen.
        self.recorded: dict[int, Delivery] = {}
        self.planned_at = ""
        self.attempted = 0
        #: Messages this run holds and has not handed over yet, in their order.
        self.unsent: list[_Unsent] = []
        #: Answers taken in and not yet recorded, with their messages.
        self.collected: list[tuple[_Claimed, SendResult]] = []
        #: When the leases of the messages held are next renewed (half a lease after the
        #: first claim since the last renewal).
        self.renew_at: datetime | None = None

    def send(self) -> SendReport:
        started = time.perf_counter()
        subscribers = self.select()
        with self.stats.timing("rank"):
            plan = self.plan(subscribers)
        looping = time.perf_counter()
        try:
            for group in self.order(subscribers):
                if not self.send_group(self.candidates(group, plan)):
                    break
            with self.stats.timing("wait"):
                fatal = self.collect(self.wire.answered(room_for_one=False))
            with self.stats.timing("ledger"), self.store.transaction():
                self.record()
            if fatal:
                raise fatal
        finally:
            # Whatever stopped the run (a transport error, Ctrl-C), the answers of the
            # batches still in flight are recorded: a message handed over must not stay
            # 'sending'; one claimed and not handed over is given back.
            try:
                self.record_what_is_left()
                self.release([])
            finally:
                self.wire.close()
                self.stats.deliver = time.perf_counter() - looping
                self.stats.total = time.perf_counter() - started
        self.log_run()
        return self.report

    # -- 1. select -----------------------------------------------------------------------

    def select(self) -> list[Subscriber]:
        """The active subscribers to send to. Suppressed ones named are recorded as such;
        the rows a dead run left 'sending' become unknown, to be sent again."""
        options, shard = self.options, self.options.shard
        if options.subscribers is None:
            chosen, suppressed, skipped = select_subscribers(self.store, options.to, shard)
        else:
            chosen, suppressed, skipped = [s for s in options.subscribers if s.id in shard], [], []
        self.report.outcomes.extend(skipped)
        if not options.dry_run:
            self.report.unknown = [d.email for d in self.ledger.mark_unknown(shard)]
        for subscriber in suppressed:
            if not options.dry_run:
                reason = f"address {subscriber.status}"
                self.ledger.suppress(self.edition, subscriber, self.domain, reason)
            self.note(
                Outcome(subscriber.email, "suppressed", f"the address is {subscriber.status}")
            )
        return chosen

    # -- 2. plan -------------------------------------------------------------------------

    def plan(self, subscribers: list[Subscriber]) -> dict[int, list[Pick]]:
        self.planned_at = to_utc_iso(self.controls.now())
        # Interests changed since the last ingest are embedded first and the model given
        # back: the ranking of a whole list never holds it beside its own arrays.
        embed_profiles(self.store, self.settings, subscribers)
        plan = plan_edition(self.store, self.settings, self.edition, subscribers)
        self.recorded = self.ledger.for_edition(self.edition)
        return plan

    def order(self, subscribers: list[Subscriber]) -> list[list[Subscriber]]:
        """The subscribers in the order their messages go, in groups that are never put
        in one batch together: first each batch that a crash (or a lost answer) left
        unknown, its messages as they were, so that it goes again as the same request;
        then everyone else."""
        retries = self.unknown_batches()
        again = {sid for batch in retries for sid in batch}
        by_id = {s.id: s for s in subscribers}
        groups = [[by_id[sid] for sid in batch if sid in by_id] for batch in retries]
        return [*groups, [s for s in subscribers if s.id not in again]]

    def unknown_batches(self) -> list[list[int]]:
        """The subscriber ids of each batch of more than one message whose fate is
        unknown, in the order of its request (from the batch events of this edition,
        newest first: a message belongs to the last batch it went in)."""
        unknown = {
            d.message_id: d.subscriber_id
            for d in self.recorded.values()
            if d.status == DeliveryStatus.UNKNOWN
        }
        if len(unknown) < 2 or self.transport.max_batch < 2:
            return []
        batches = []
        # Each event names two rows of the edition or more, so as many events as it has
        # rows reach back past the last batch of any row (forced resends aside).
        for event in self.store.events(BATCH_EVENT, len(self.recorded), self.edition.isoformat()):
            batch = [unknown.pop(m) for m in event["detail"]["message_ids"] if m in unknown]
            if len(batch) > 1:
                batches.append(batch)
            if len(unknown) < 2:
                break
        return batches

    # -- 3. compose, 4. claim and 5. hand over -------------------------------------------

    def candidates(self, group: list[Subscriber], plan: dict[int, list[Pick]]) -> list[Candidate]:
        """The group's subscribers who get a message in this run, with their papers.
        Outcomes are noted here for the others (already sent, nothing relevant, a dry run)."""
        wanted = []
        for subscriber in group:
            picks = plan.get(subscriber.id, [])
            if not self.wanted(subscriber, picks):
                continue
            if self.options.dry_run:
                self.note(Outcome(subscriber.email, "would-send", _titles(picks), len(picks)))
                continue
            wanted.append((subscriber, picks))
        return wanted

    def send_group(self, candidates: list[Candidate]) -> bool:
        """Send a group's messages (never put in one batch with another group's): claim
        the next of them, hand them over batch by batch, claim again. False when the run
        must stop."""
        position = 0  # where the next claim starts: the candidates before it are done with
        while position < len(candidates) or self.unsent:
            if self.unsent:
                batch = self.next_batch()  # composed while the connections are busy
                with self.stats.timing("wait"):
                    # Recorded with the next claim: one transaction per window.
                    fatal = self.collect(self.wire.answered(room_for_one=True))
                if fatal:
                    self.release([c.delivery for c in batch])
                    raise fatal
                if reason := self.stop_reason():
                    self.report.stopped = reason
                    self.release([c.delivery for c in batch])
                    return False
            else:
                limit = self.options.limit
                if limit is not None and self.attempted >= limit:
                    for subscriber, picks in candidates[position:]:
                        detail = f"--limit {limit} reached"
                        self.note(Outcome(subscriber.email, "skipped", detail, len(picks)))
                    return True
                window = self.throttle.room(
                    max(self.store.deliveries.claim_batch, self.transport.max_batch)
                )
                if limit is not None:
                    window = min(window, limit - self.attempted)
                if self.store.deliveries.concurrent_claims:
                    first = 0  # made once claimed: another sender may claim them first
                else:
                    first = min(window, self.throttle.room(self.transport.max_batch))
                upcoming = candidates[position : position + first]
                drafts = {s.id: self.draft(s, picks) for s, picks in upcoming}
                claimed_to = self.claim(candidates, position, window, drafts)
                if claimed_to is None:
                    return False
                position = claimed_to
                batch = self.next_batch()
            batch = self.keep_leases(batch)
            if batch:
                self.hand_over(batch)
        return True

    def claim(
        self, candidates: list[Candidate], start: int, window: int, drafts: dict[int, _Draft]
    ) -> int | None:
        """Wait for a free connection, then, in one transaction, record the answers that
        came in and claim the next ``window`` messages of ``candidates`` from ``start`` on;
        the ones the ledger refuses are noted as skipped. Where the next claim starts, or
        None when the run must stop."""
        with self.stats.timing("wait"):
            fatal = self.collect(self.wire.answered(room_for_one=True))
        with self.stats.timing("ledger"), self.store.transaction():
            self.record()
            self.report.stopped = None if fatal else self.stop_reason()
            if fatal or self.report.stopped:
                claims = None
            else:
                claims = self.ledger.claim_next(
                    self.edition,
                    candidates,
                    window,
                    self.domain,
                    self.options.force,
                    self.planned_at,
                    start,
                )
        if fatal:
            raise fatal
        if claims is None:
            return None
        self.report.unknown += [d.email for d in claims.expired]
        halfway = self.controls.now() + self.ledger.lease / 2
        self.renew_at = min(self.renew_at or halfway, halfway)
        by_id = {s.id: (s, picks) for s, picks in candidates[start : claims.consumed]}
        for subscriber_id, result in claims.taken:
            subscriber, picks = by_id[subscriber_id]
            if isinstance(result, Refusal):
                self.note(
                    Outcome(subscriber.email, "skipped", result.reason, len(picks), refusal=result)
                )
                continue
            self.attempted += 1
            self.unsent.append(_Unsent(result, subscriber, picks, drafts.get(subscriber_id)))
        return claims.consumed

    def next_batch(self) -> list[_Claimed]:
        """The next batch of the messages held, as many as one request carries and the caps
        allow, composed; a message that could not be made is recorded as failed."""
        size = self.throttle.room(self.transport.max_batch)
        taken, self.unsent = self.unsent[:size], self.unsent[size:]
        batch = []
        for held in taken:
            delivery = held.delivery
            draft = held.draft or self.draft(held.subscriber, held.picks, delivery.message_id)
            if draft.message is None:
                error = f"cannot render: {draft.error}"
                self.ledger.record(delivery, SendResult("failed", error=error))
                self.note(Outcome(held.subscriber.email, "failed", error, len(held.picks)))
                continue
            if draft.expected_id != delivery.message_id:  # the row changed since the run began
                self.renderer.seal(draft.message, delivery.message_id)
            batch.append(_Claimed(delivery, held.subscriber, held.picks, draft.message))
        return batch

    def keep_leases(self, batch: list[_Claimed]) -> list[_Claimed]:
        """Once half a lease has gone by since the claim (or the last renewal), renew the
        lease of every message the run holds, so that other senders do not give up for dead
        a window that a slow server takes longer than a lease to send; ``batch`` without
        the messages another sender took over meanwhile (noted as skipped, never handed
        over from here)."""
        now = self.controls.now()
        if self.renew_at is None or now < self.renew_at:
            return batch
        held = [
            *(c.delivery for c in batch),
            *(u.delivery for u in self.unsent),
            *(c.delivery for c, _ in self.collected),
            *self.wire.held(),
        ]
        if not held:
            self.renew_at = None
            return batch
        with self.stats.timing("ledger"):
            kept = self.ledger.renew(held)
        self.renew_at = now + self.ledger.lease / 2 if kept else None
        lost = [(c.subscriber, c.picks) for c in batch if c.delivery.id not in kept]
        lost += [(u.subscriber, u.picks) for u in self.unsent if u.delivery.id not in kept]
        for subscriber, picks in lost:
            detail = "held past its lease; another sender took it over"
            self.note(Outcome(subscriber.email, "skipped", detail, len(picks)))
        if lost:
            log.warning("%d claimed message(s) were taken over by another sender", len(lost))
        self.attempted -= len(lost)
        self.unsent = [u for u in self.unsent if u.delivery.id in kept]
        return [c for c in batch if c.delivery.id in kept]

    def hand_over(self, batch: list[_Claimed]) -> None:
        """Hand ``batch`` to the free connection; a batch of more than one message is
        written down as such first."""
        if len(batch) > 1:
            ids = [c.delivery.message_id for c in batch]
            self.store.log_event(BATCH_EVENT, None, self.edition.isoformat(), message_ids=ids)
        self.throttle.pace(len(batch))
        self.wire.hand_over(batch)
        self.stats.messages += len(batch)
        self.stats.batches += 1

    def release(self, batch: list[Delivery]) -> None:
        """Give back ``batch`` and every other message claimed and not handed over: the
        next run sends them."""
        held = batch + [u.delivery for u in self.unsent]
        if held:
            self.ledger.release(held)
            self.attempted -= len(held)
        self.unsent = []

    def wanted(self, subscriber: Subscriber, picks: list[Pick]) -> bool:
        """Whether this subscriber gets a message in this run; notes why not."""
        existing = self.recorded.get(subscriber.id)
        if existing and existing.status == DeliveryStatus.SENT and not self.options.force:
            detail = f"already sent ({existing.message_id})"
            self.note(
                Outcome(
                    subscriber.email,
                    "skipped",
                    detail,
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

    def draft(self, subscriber: Subscriber, picks: list[Pick], expected: str = "") -> _Draft:
        """The email, sealed with the Message-ID its claim gave it (``expected``) or will
        give it, or the error that kept it from being made."""
        if not expected:
            existing = self.recorded.get(subscriber.id)
            expected = Ledger.next_message_id(self.edition, subscriber, existing, self.domain)
        try:
            with self.stats.timing("render"):
                rendered = self.renderer.render(subscriber, picks, self.edition)
            with self.stats.timing("compose"):
                message = self.renderer.compose(subscriber, rendered, self.edition)
                return _Draft(subscriber, picks, expected, self.renderer.seal(message, expected))
        except Exception as exc:  # one broken paper must not stop the others
            log.exception("%s: cannot render the email", subscriber.email)
            return _Draft(subscriber, picks, expected, None, exc)

    def stop_reason(self) -> str | None:
        if self.controls.should_stop():
            return "asked to stop; the rest goes in the next run"
        if reason := self.storm.tripped:
            return f"paused: {reason}; the rest goes in the next run"
        if self.throttle.exhausted():
            hourly = self.throttle.hourly
            return f"the hourly cap ({hourly} messages) is reached; the rest goes next hour"
        return None

    # -- 6. record -----------------------------------------------------------------------

    def collect(self, answered: Answered) -> TransportError | None:
        """Take in the answers: each counts for the error-storm guard at once, and waits
        in ``collected`` for the next transaction of the ledger (:meth:`record`). A transport
        that cannot work at all is a failure of its messages, returned for the caller to
        raise once they are recorded."""
        fatal = None
        for future, batch in answered:
            try:
                results = future.result()
            except TransportError as exc:
                results, fatal = [SendResult("failed", error=str(exc))] * len(batch), exc
            self.keep(batch, results)
        return fatal

    def keep(self, batch: list[_Claimed], results: list[SendResult]) -> None:
        for message, result in zip(batch, results, strict=True):
            self.storm.add(result.status != "sent")
            self.collected.append((message, result))

    def record(self) -> None:
        """Record the answers collected, in one transaction (the caller's, if it has one);
        a permanent refusal suppresses the address."""
        collected, self.collected = self.collected, []
        if not collected:
            return
        with self.store.transaction():
            self.ledger.record_many([(message.delivery, result) for message, result in collected])
            for message, result in collected:
                self.finish(message, result)

    def record_what_is_left(self) -> None:
        """Record every batch still in flight once its send returns, and every answer
        collected."""
        for future, batch in self.wire.drain():
            try:
                results = future.result()
            except TransportError as exc:
                results = [SendResult("failed", error=str(exc))] * len(batch)
            except Exception as exc:  # it may have gone out before the error
                error = f"{type(exc).__name__}: {exc}"
                results = [SendResult("failed", error=error, maybe_sent=True)] * len(batch)
            self.keep(batch, results)
        self.record()

    def finish(self, message: _Claimed, result: SendResult) -> None:
        """The rest of one message's recorded answer: a permanent refusal suppresses the
        address; the outcome is noted."""
        subscriber, picks = message.subscriber, message.picks
        detail = _titles(picks) if result.status == "sent" else (result.error or "")
        if result.status == "rejected":
            self.store.update_subscriber(subscriber.id, status=Status.BOUNCED)
            self.store.log_event("subscriber.suppressed", subscriber.id, reason=result.error)
            detail += "; address suppressed"
        self.note(
            Outcome(
                subscriber.email, result.status, detail, len(picks), message.delivery.message_id
            )
        )

    def note(self, outcome: Outcome) -> None:
        self.report.outcomes.append(outcome)
        if self.controls.on_progress:
            self.controls.on_progress(outcome)

    def log_run(self) -> None:
        if self.report.stopped:
            log.warning("edition %s: run stopped early: %s", self.edition, self.report.stopped)
        self.store.log_event(
            "edition.run",
            edition=self.edition.isoformat(),
            dry_run=self.options.dry_run,
            counts=self.report.counts,
            stopped=self.report.stopped,
            unknown=len(self.report.unknown),
            stats=self.stats.to_dict(),
        )


Answered = list[tuple[Future[list[SendResult]], list[_Claimed]]]


class _Wire:
    """The transport's connections for a run, opened when the first batch goes, and the
    batches in flight on them: one per connection at a time."""

    def __init__(self, transport: Transport, wanted: int):
        self.transport, self.wanted = transport, wanted
        self.idle: list[Connection] = []
        self.count = 1  # until the connections are open: the first batch waits for none
        self.in_flight: dict[Future[list[SendResult]], tuple[Connection, list[_Claimed]]] = {}
        self.opened: list[Connection] = []

    def hand_over(self, batch: list[_Claimed]) -> None:
        """Hand ``batch`` to a free connection (the caller waited for one)."""
        if not self.opened:
            self.opened = self.transport.connections(self.wanted)
            self.idle, self.count = list(self.opened), len(self.opened)
        connection = self.idle.pop()
        future = connection.hand_over([c.message for c in batch])
        self.in_flight[future] = (connection, batch)

    def answered(self, room_for_one: bool) -> Answered:
        """Wait until a connection is free (``room_for_one``) or none is busy; the batches
        answered meanwhile."""
        answered: Answered = []
        busy_at_most = self.count - 1 if room_for_one else 0
        while len(self.in_flight) > busy_at_most:
            done, _ = wait(list(self.in_flight), return_when=FIRST_COMPLETED)
            for future in done:
                connection, batch = self.in_flight.pop(future)
                self.idle.append(connection)
                answered.append((future, batch))
        return answered

    def held(self) -> list[Delivery]:
        """The messages in flight."""
        return [c.delivery for _, batch in self.in_flight.values() for c in batch]

    def drain(self) -> Answered:
        """Every batch still in flight, once its send returns (its future is done)."""
        if self.in_flight:
            wait(list(self.in_flight))
        answered = [(future, batch) for future, (_, batch) in self.in_flight.items()]
        self.in_flight.clear()
        return answered

    def close(self) -> None:
        for connection in self.opened:
            connection.close()


def _titles(picks: list[Pick]) -> str:
    first = " ".join(picks[0].paper.title.split())
    more = f" (+{len(picks) - 1})" if len(picks) > 1 else ""
    return first[:70] + ("…" if len(first) > 70 else "") + more
