"""The delivery ledger: one row per (edition, subscriber), and the rules of its rows. The
ledger is the only code that changes them; their SQL is the store's
(:class:`newsletter.store.DeliveryStore`), which carries the rules out atomically.

A message is *claimed* (status ``sending``, in a transaction) right before it is handed to
the transport and *recorded* right after: ``sent`` (with the server's or relay's id),
``failed`` (temporary: tried again later the same day, with back-off), ``rejected``
(permanent for that recipient: not tried again) or ``suppressed`` (the address may no
longer receive mail). Only one process sends each shard of the list at a time (see
:mod:`newsletter.sending.locking`), so a row of its shard still ``sending`` when a run starts was
left by a run that died between handing the message over and recording the answer: its fate
is *unknown*. The rule for those: they are recorded as such and sent again with the same
Message-ID (and, on relays that take one, the same idempotency key), so a copy that did
arrive is recognised as the same message by mailbox providers. At most one message per open
connection can be in that state.

A claim also writes a lease: which process holds the message (``host:pid``) and until when.
On SQLite the lock makes it unneeded (a crash is found when the next run starts), but it
names the holder to the operator. On PostgreSQL, shared by senders on several hosts, it is
how a dead sender is found: any sender that meets a row still ``sending`` after its lease
ran out records it unknown and sends it again, by the same rule. There a sender claims the
next messages of the edition a batch at a time (:meth:`Ledger.claim_next`), skipping those
another sender is claiming. Time is the ledger's clock (``now``), which tests move by hand.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from ..models import (
    WHOLE_LIST,
    Delivery,
    DeliveryStatus,
    Pick,
    Section,
    Shard,
    Subscriber,
    to_utc_iso,
)
from ..store import Store
from ..store.interface import Answer, Lease, NewClaim, Reclaim
from ..transports import SendResult

log = logging.getLogger(__name__)

__all__ = [
    "MAX_ATTEMPTS",
    "ClaimRefusal",
    "Claims",
    "Delivery",
    "DeliveryStatus",
    "History",
    "Ledger",
    "Refusal",
    "message_id",
]


def message_id(edition: date, subscriber_id: int, email: str, send_count: int, domain: str) -> str:
    """Deterministic per (edition, subscriber, send): a retry of the same send has the same
    Message-ID, a forced resend a new one. The address is in it too: SQLite may give a
    removed subscriber's row id to a new one, who must not inherit their Message-IDs (nor,
    on Resend, their idempotency keys)."""
    key = f"{edition}:{subscriber_id}:{email.casefold()}:{send_count}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return f"<{edition.isoformat()}.{digest}@{domain}>"


#: Tries of a message that keeps failing, and the back-off between them (doubling, with
#: jitter): 5, 10, 20, 40 and 80 minutes, all within the day of the edition.
MAX_ATTEMPTS = 6
RETRY_BASE = timedelta(minutes=5)
#: How long a claim holds its message by default (the ``lease_seconds`` setting): far
#: longer than a transport may take to answer.
LEASE = timedelta(minutes=15)
#: The most candidates a claim looks through at once for the next messages that are free
#: (it starts with a few more than it wants, and doubles while all it sees are taken).
LOOKAHEAD = 1000
#: The messages a subscriber has, or may have, received: their papers are not sent again.
HELD = (DeliveryStatus.SENT, DeliveryStatus.SENDING, DeliveryStatus.UNKNOWN)


class ClaimRefusal(StrEnum):
    """Why a message must not be sent now; the caller words it (see the CLI)."""

    ALREADY_SENT = "already-sent"
    BEING_SENT = "being-sent"
    REJECTED = "rejected"
    SUPPRESSED = "suppressed"
    GAVE_UP = "gave-up"
    NOT_YET = "not-yet"


#: Refusals that ``force`` overrides, by the status of the row that refuses.
_BLOCKED_BY = {
    DeliveryStatus.SENT: ClaimRefusal.ALREADY_SENT,
    DeliveryStatus.SENDING: ClaimRefusal.BEING_SENT,
    DeliveryStatus.REJECTED: ClaimRefusal.REJECTED,
    DeliveryStatus.SUPPRESSED: ClaimRefusal.SUPPRESSED,
}


@dataclass(frozen=True)
class Refusal:
    """A claim refused: why, and the row that refused it (its Message-ID, last error,
    attempts and next try say more)."""

    reason: ClaimRefusal
    delivery: Delivery


@dataclass(frozen=True)
class Claims:
    """What one claim of the next messages took: per subscriber (by id, in the candidates'
    order) the claimed delivery or the refusal that says why not; the rows among them whose
    holder's lease had run out (recorded unknown, claimed again with the same Message-ID);
    and where in the candidates the next claim starts (those before are done with, taken
    here or left to other senders)."""

    taken: list[tuple[int, Delivery | Refusal]]
    expired: list[Delivery]
    consumed: int


@dataclass(frozen=True)
class History:
    """What a subscriber already has: papers sent (or possibly sent) and when their last
    edition went out (ISO-8601 UTC), for the ranking's candidate filter."""

    paper_ids: frozenset[str]
    last_edition_at: str | None


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Ledger:
    """The ledger's rules, on the rows of a :class:`newsletter.store.DeliveryStore`.
    ``now`` is its clock; ``owner`` names this process in the leases of its claims, which
    last ``lease``."""

    def __init__(
        self,
        store: Store,
        now: Callable[[], datetime] = _utc_now,
        owner: str | None = None,
        lease: timedelta = LEASE,
    ):
        self.store = store
        self.rows = store.deliveries
        self.now = now
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.lease = lease

    def get(self, edition: date, subscriber_id: int) -> Delivery | None:
        return self.rows.get(edition.isoformat(), subscriber_id)

    def for_edition(self, edition: date) -> dict[int, Delivery]:
        return {d.subscriber_id: d for d in self.rows.for_edition(edition.isoformat())}

    def recent_sent(self, subscriber_id: int, limit: int) -> list[Delivery]:
        """A subscriber's last ``limit`` editions that were sent, newest first."""
        return self.rows.latest(subscriber_id, DeliveryStatus.SENT, limit)

    def counts(self, edition: date) -> dict[str, int]:
        return self.rows.counts(edition.isoformat())

    def failed(self, edition: date) -> list[Delivery]:
        """The edition's messages that failed and may be tried again, the next try first."""
        return self.rows.with_status(edition.isoformat(), DeliveryStatus.FAILED)

    def history(self, edition: date, since: str) -> dict[int, History]:
        """Per subscriber: papers in any other edition that was sent or may have been, and
        the time their latest earlier edition was planned (``created_at``: a paper first
        seen after that was no candidate for it, however late it was claimed), counting only
        the messages
        claimed from ``since`` (ISO-8601 UTC), the start of the candidate window: an earlier
        message holds only papers first seen before it, which are no candidates anyway. So
        the work stays that of a few editions however long the list has been sent."""
        papers: dict[int, set[str]] = {}
        last: dict[int, str] = {}
        this = edition.isoformat()
        for subscriber_id, other, paper_ids, planned_at in self.rows.claimed_since(
            since, HELD, other_than=this
        ):
            papers.setdefault(subscriber_id, set()).update(paper_ids)
            if other < this and planned_at > last.get(subscriber_id, ""):
                last[subscriber_id] = planned_at
        return {
            sid: History(frozenset(papers.get(sid, ())), last.get(sid))
            for sid in papers.keys() | last.keys()
        }

    def claim(
        self,
        edition: date,
        subscriber: Subscriber,
        picks: list[Pick],
        domain: str,
        force: bool,
        planned_at: str | None = None,
    ) -> Delivery | Refusal:
        """Take the (edition, subscriber) message for sending: the claimed delivery, or the
        refusal that says why it must not be sent now. The first claim of a message is one
        insert; its ``created_at`` is when its papers were chosen (``planned_at``)."""
        with self.store.transaction():
            taken, _ = self._take(edition, [(subscriber, picks)], domain, force, planned_at)
        return taken[subscriber.id]

    def claim_next(
        self,
        edition: date,
        candidates: Sequence[tuple[Subscriber, list[Pick]]],
        limit: int,
        domain: str,
        force: bool,
        planned_at: str | None = None,
        start: int = 0,
    ) -> Claims:
        """Claim, in one transaction, the first ``limit`` messages of ``candidates`` from
        ``start`` on (with their papers, in the order they should go) that are neither sent
        nor held by a live sender, skipping those another sender is claiming right now. The
        candidates before the last one taken are left to others for good: ``Claims.consumed``
        is where the next claim starts. Only the candidates looked at are read, so claiming
        a long list one message at a time costs the same per claim at its end as at its
        start."""
        held = () if force else (DeliveryStatus.SENT, DeliveryStatus.SENDING)
        now = to_utc_iso(self.now())
        consumed, size = start, min(max(4 * limit, 64), LOOKAHEAD)
        with self.store.transaction():
            while consumed < len(candidates):
                window = candidates[consumed : consumed + size]
                window_ids = [subscriber.id for subscriber, _ in window]
                ids = self.rows.lock_next(edition.isoformat(), window_ids, limit, held, now)
                if not ids:  # all taken: look further at once
                    consumed, size = consumed + len(window), min(2 * size, LOOKAHEAD)
                    continue
                consumed += window_ids.index(ids[-1]) + 1
                by_id = {subscriber.id: (subscriber, picks) for subscriber, picks in window}
                chosen = [by_id[sid] for sid in ids]
                taken, expired = self._take(edition, chosen, domain, force, planned_at)
                return Claims([(sid, taken[sid]) for sid in ids if sid in taken], expired, consumed)
        return Claims([], [], consumed)

    def _take(
        self,
        edition: date,
        chosen: Sequence[tuple[Subscriber, list[Pick]]],
        domain: str,
        force: bool,
        planned_at: str | None,
    ) -> tuple[dict[int, Delivery | Refusal], list[Delivery]]:
        """Claim these messages (inside the caller's transaction): the first claims of
        messages in one insert, the others, locked, claimed again unless refused. A row left
        ``sending`` by a holder whose lease ran out is recorded unknown on the way."""
        moment = self.now()
        now = to_utc_iso(moment)
        lease = Lease(self.owner, to_utc_iso(moment + self.lease))
        firsts = [
            NewClaim(
                edition=edition.isoformat(),
                subscriber_id=subscriber.id,
                email=subscriber.email,
                message_id=message_id(edition, subscriber.id, subscriber.email, 1, domain),
                paper_ids=[p.paper.id for p in picks],
                picks=[_pick_record(p) for p in picks],
                planned_at=planned_at or now,
            )
            for subscriber, picks in chosen
        ]
        taken: dict[int, Delivery | Refusal] = {
            d.subscriber_id: d for d in self.rows.insert_claims(firsts, lease, now)
        }
        others = [subscriber for subscriber, _ in chosen if subscriber.id not in taken]
        if not others:
            return taken, []
        existing = self.rows.locked(edition.isoformat(), [s.id for s in others])
        again, expired = [], []
        for subscriber in others:
            row = existing.get(subscriber.id)
            if row is None:  # removed meanwhile
                continue
            if not force and (refusal := _refusal(row, now)):
                taken[subscriber.id] = refusal
                continue
            if row.status == DeliveryStatus.SENDING and _lease_ran_out(row, now):
                expired.append(row)
            send_count = _send_count(row)
            again.append(
                Reclaim(
                    delivery_id=row.id,
                    email=subscriber.email,
                    message_id=message_id(
                        edition, subscriber.id, subscriber.email, send_count, domain
                    ),
                    send_count=send_count,
                )
            )
        taken.update((d.subscriber_id, d) for d in self.rows.reclaim(again, lease, now))
        self._log_unknown(expired)
        return taken, expired

    @staticmethod
    def next_message_id(
        edition: date, subscriber: Subscriber, existing: Delivery | None, domain: str
    ) -> str:
        """The Message-ID that claiming the message (whose row is ``existing``, if it has
        one) gives it, for a sender that makes the message before it may claim it."""
        count = 1 if existing is None else _send_count(existing)
        return message_id(edition, subscriber.id, subscriber.email, count, domain)

    def mark_unknown(self, shard: Shard = WHOLE_LIST) -> list[Delivery]:
        """Rows of ``shard`` left ``sending`` by a run that died: recorded as unknown (and
        logged), to be sent again with the same Message-ID. Call only while holding the
        shard's sending lock: the other shards' rows may be in flight in their processes."""
        with self.store.transaction():
            rows = self.rows.mark_in_flight_unknown(shard, to_utc_iso(self.now()))
            self._log_unknown(rows)
        return rows

    def _log_unknown(self, rows: list[Delivery]) -> None:
        """Write down (and log) the rows whose holder stopped while sending them."""
        for delivery in rows:
            self.store.log_event(
                "delivery.unknown",
                delivery.subscriber_id,
                delivery.edition,
                message_id=delivery.message_id,
                claimed_at=delivery.claimed_at,
                claimed_by=delivery.lease_owner,
            )
        if rows:
            log.warning(
                "%d message(s) were left unknown by a run that stopped while sending; "
                "they go again with the same Message-ID: %s",
                len(rows),
                ", ".join(d.email for d in rows),
            )

    def unknown(self, edition: date | None = None) -> list[dict]:
        """Messages a crash left unknown (from the event log), newest first."""
        events = self.store.events("delivery.unknown", limit=1000)
        return [e for e in events if edition is None or e["edition"] == edition.isoformat()]

    def suppress(self, edition: date, subscriber: Subscriber, domain: str, reason: str) -> None:
        """Record that this edition was not sent because the address is suppressed (unless
        it was sent, or is being sent)."""
        now = to_utc_iso(self.now())
        row = NewClaim(
            edition=edition.isoformat(),
            subscriber_id=subscriber.id,
            email=subscriber.email,
            message_id=message_id(edition, subscriber.id, subscriber.email, 1, domain),
            paper_ids=[],
            picks=[],
            planned_at=now,
        )
        with self.store.transaction():
            self.rows.suppress(
                row, reason, now, unless=(DeliveryStatus.SENT, DeliveryStatus.SENDING)
            )

    def sent_since(self, moment: str, shard: Shard = WHOLE_LIST) -> int:
        """Messages to ``shard`` sent since ``moment`` (ISO-8601 UTC), for the hourly cap."""
        return self.rows.count_sent_since(moment, shard)

    def renew(self, deliveries: Sequence[Delivery]) -> set[int]:
        """Hold these claimed messages for another lease from now, for a sender whose window
        takes longer than a lease to send (a slow server): the ids of those still its own.
        One missing was given up for dead and taken by another sender: it must not go out
        from here too."""
        moment = self.now()
        lease = Lease(self.owner, to_utc_iso(moment + self.lease))
        with self.store.transaction():
            return set(self.rows.renew([d.id for d in deliveries], lease, to_utc_iso(moment)))

    def release(self, deliveries: Sequence[Delivery]) -> None:
        """Give back claimed messages that were never handed over (the run stopped first):
        as if they had not been claimed, and due at once."""
        with self.store.transaction():
            self.rows.release([d.id for d in deliveries], to_utc_iso(self.now()))

    def record(self, delivery: Delivery, result: SendResult) -> None:
        """Write down what the transport answered for a claimed delivery."""
        self.record_many([(delivery, result)])

    def record_many(self, answers: Sequence[tuple[Delivery, SendResult]]) -> None:
        """Write down, in one transaction, what the transport answered for claimed
        deliveries. A temporary failure is given its next try (exponential back-off with
        jitter) until :data:`MAX_ATTEMPTS`."""
        now = self.now()
        rows = []
        for delivery, result in answers:
            status = DeliveryStatus(result.status)
            if status == DeliveryStatus.FAILED and result.maybe_sent:
                # The request may have reached the server (a lost answer): the same rule as
                # a crash between handing over and recording applies.
                status = DeliveryStatus.UNKNOWN
            next_attempt = None
            if status == DeliveryStatus.FAILED and delivery.attempts < MAX_ATTEMPTS:
                wait = RETRY_BASE * 2 ** (delivery.attempts - 1) * random.uniform(0.8, 1.2)
                wait = max(wait, timedelta(seconds=result.retry_after or 0))
                next_attempt = to_utc_iso(now + wait)
            rows.append(
                Answer(
                    delivery_id=delivery.id,
                    status=status,
                    sent_at=to_utc_iso(now) if status == DeliveryStatus.SENT else None,
                    transport_id=result.transport_id,
                    error=result.error,
                    next_attempt_at=next_attempt,
                )
            )
        with self.store.transaction():
            self.rows.record(rows, to_utc_iso(now))
            for (delivery, result), answer in zip(answers, rows, strict=True):
                if answer.status != DeliveryStatus.SENT:
                    self.store.log_event(
                        f"delivery.{answer.status}",
                        delivery.subscriber_id,
                        delivery.edition,
                        error=result.error,
                        message_id=delivery.message_id,
                        next_attempt_at=answer.next_attempt_at,
                    )


def _refusal(existing: Delivery, now: str) -> Refusal | None:
    """Why the message whose row is ``existing`` must not be claimed again at ``now``
    (unless forced), if it must not."""
    if existing.status == DeliveryStatus.SENDING and _lease_ran_out(existing, now):
        return None  # its holder died: unknown, to be sent again
    if reason := _BLOCKED_BY.get(existing.status):
        return Refusal(reason, existing)
    if existing.status == DeliveryStatus.FAILED:
        if existing.next_attempt_at is None:
            return Refusal(ClaimRefusal.GAVE_UP, existing)
        if existing.next_attempt_at > now:
            return Refusal(ClaimRefusal.NOT_YET, existing)
    return None


def _lease_ran_out(row: Delivery, now: str) -> bool:
    return row.lease_expires_at is not None and row.lease_expires_at <= now


def _send_count(existing: Delivery) -> int:
    """The send count of a message claimed again: a retry (after a failure, or of a
    message whose fate a crash left unknown) keeps its Message-ID; a forced resend of a
    message that went out gets a new one, so mail clients do not drop it as a copy."""
    return existing.send_count + (1 if existing.status == DeliveryStatus.SENT else 0)


def _pick_record(pick: Pick) -> dict:
    """A pick as the ledger keeps it; ``section`` only where it is not the default, so the
    records of editions sent before "Trending today" read the same."""
    record = {"id": pick.paper.id, "score": round(pick.score, 4), "reason": pick.reason}
    if pick.section != Section.PICKS:
        record["section"] = str(pick.section)
    return record
