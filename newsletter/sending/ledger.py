"""The delivery ledger: one row per (edition, subscriber), the only code that writes it.

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
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from ..models import Pick, Shard, Subscriber, to_utc_iso, utcnow
from ..store.database import Store
from ..transports import SendResult

log = logging.getLogger(__name__)


def message_id(edition: date, subscriber_id: int, email: str, send_count: int, domain: str) -> str:
    """Deterministic per (edition, subscriber, send): a retry of the same send has the same
    Message-ID, a forced resend a new one. The address is in it too: SQLite may give a
    removed subscriber's row id to a new one, who must not inherit their Message-IDs (nor,
    on Resend, their idempotency keys)."""
    key = f"{edition}:{subscriber_id}:{email.casefold()}:{send_count}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return f"<{edition.isoformat()}.{digest}@{domain}>"


class DeliveryStatus(StrEnum):
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    REJECTED = "rejected"
    SUPPRESSED = "suppressed"
    UNKNOWN = "unknown"


#: Tries of a message that keeps failing, and the back-off between them (doubling, with
#: jitter): 5, 10, 20, 40 and 80 minutes, all within the day of the edition.
MAX_ATTEMPTS = 6
RETRY_BASE = timedelta(minutes=5)
WHOLE_LIST = Shard()


@dataclass(frozen=True)
class Delivery:
    id: int
    edition: str
    subscriber_id: int
    email: str
    status: DeliveryStatus
    message_id: str
    paper_ids: list[str]
    picks: list[dict]
    attempts: int
    send_count: int
    sent_at: str | None
    last_error: str | None
    claimed_at: str | None = None
    next_attempt_at: str | None = None


@dataclass(frozen=True)
class History:
    """What a subscriber already has: papers sent (or possibly sent) and when their last
    edition went out (ISO-8601 UTC), for the ranking's candidate filter."""

    paper_ids: frozenset[str]
    last_edition_at: str | None


class Ledger:
    def __init__(self, store: Store):
        self.store = store

    def get(self, edition: date, subscriber_id: int) -> Delivery | None:
        rows = self.store.db.query(
            "SELECT * FROM deliveries WHERE edition = ? AND subscriber_id = ?",
            [edition.isoformat(), subscriber_id],
        )
        return next((_delivery(r) for r in rows), None)

    def for_edition(self, edition: date) -> dict[int, Delivery]:
        rows = self.store.db.query(
            "SELECT * FROM deliveries WHERE edition = ?", [edition.isoformat()]
        )
        return {d.subscriber_id: d for d in map(_delivery, rows)}

    def recent_sent(self, subscriber_id: int, limit: int) -> list[Delivery]:
        """A subscriber's last ``limit`` editions that were sent, newest first."""
        rows = self.store.db.query(
            "SELECT * FROM deliveries WHERE subscriber_id = ? AND status = ?"
            " ORDER BY edition DESC LIMIT ?",
            [subscriber_id, DeliveryStatus.SENT, limit],
        )
        return [_delivery(r) for r in rows]

    def counts(self, edition: date) -> dict[str, int]:
        rows = self.store.conn.execute(
            "SELECT status, count(*) FROM deliveries WHERE edition = ? GROUP BY status",
            [edition.isoformat()],
        )
        return dict(rows.fetchall())

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
        rows = self.store.conn.execute(
            "SELECT subscriber_id, edition, paper_ids, created_at FROM deliveries"
            " WHERE edition != ? AND status IN (?, ?, ?) AND claimed_at >= ?",
            [
                edition.isoformat(),
                DeliveryStatus.SENT,
                DeliveryStatus.SENDING,
                DeliveryStatus.UNKNOWN,
                since,
            ],
        )
        for subscriber_id, other, paper_ids, planned_at in rows:
            papers.setdefault(subscriber_id, set()).update(json.loads(paper_ids))
            if other < edition.isoformat() and planned_at > last.get(subscriber_id, ""):
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
    ) -> tuple[Delivery | None, str]:
        """Take the (edition, subscriber) message for sending. Returns the delivery, or None
        and the reason it must not be sent now. The first claim of a message is one insert;
        its ``created_at`` is when its papers were chosen (``planned_at``)."""
        now = utcnow()
        with self.store.transaction():
            first = Delivery(
                id=0,
                edition=edition.isoformat(),
                subscriber_id=subscriber.id,
                email=subscriber.email,
                status=DeliveryStatus.SENDING,
                message_id=message_id(edition, subscriber.id, subscriber.email, 1, domain),
                paper_ids=[p.paper.id for p in picks],
                picks=[_pick_record(p) for p in picks],
                attempts=1,
                send_count=1,
                sent_at=None,
                last_error=None,
                claimed_at=now,
            )
            inserted = self.store.conn.execute(
                "INSERT INTO deliveries (edition, subscriber_id, email, status, message_id,"
                " paper_ids, picks, attempts, send_count, created_at, claimed_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (edition, subscriber_id) DO NOTHING",
                [
                    first.edition,
                    first.subscriber_id,
                    first.email,
                    first.status,
                    first.message_id,
                    json.dumps(first.paper_ids),
                    json.dumps(first.picks),
                    first.attempts,
                    first.send_count,
                    planned_at or now,
                    now,
                    now,
                ],
            )
            if inserted.rowcount == 1:
                return replace(first, id=inserted.lastrowid), "claimed"
            existing = self.get(edition, subscriber.id)  # the row the insert met
            blocked = {
                DeliveryStatus.SENT: f"already sent ({existing.message_id}); --force sends again",
                DeliveryStatus.SENDING: "being sent by another run",
                DeliveryStatus.REJECTED: (
                    f"the server rejected it ({existing.last_error}); --force tries again"
                ),
                DeliveryStatus.SUPPRESSED: "the address is suppressed",
            }
            if existing.status in blocked and not force:
                return None, blocked[existing.status]
            if existing.status == DeliveryStatus.FAILED and not force:
                if existing.next_attempt_at is None:
                    return (
                        None,
                        f"gave up after {existing.attempts} attempts ({existing.last_error})",
                    )
                if existing.next_attempt_at > now:
                    return (
                        None,
                        f"failed ({existing.last_error}); next try after {existing.next_attempt_at[:16]}Z",
                    )
            send_count = _send_count(existing)
            self.store.conn.execute(
                "UPDATE deliveries SET status = ?, message_id = ?, attempts = attempts + 1,"
                " send_count = ?, email = ?, claimed_at = ?, updated_at = ?,"
                " next_attempt_at = NULL WHERE id = ?",
                [
                    DeliveryStatus.SENDING,
                    message_id(edition, subscriber.id, subscriber.email, send_count, domain),
                    send_count,
                    subscriber.email,
                    now,
                    now,
                    existing.id,
                ],
            )
            return self.get(edition, subscriber.id), "claimed"

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
            rows = [
                _delivery(r)
                for r in self.store.db.query(
                    "SELECT * FROM deliveries WHERE status = ? AND subscriber_id % ? = ?",
                    [DeliveryStatus.SENDING, shard.count, shard.index],
                )
            ]
            for delivery in rows:
                self.store.conn.execute(
                    "UPDATE deliveries SET status = ?, updated_at = ? WHERE id = ?",
                    [DeliveryStatus.UNKNOWN, utcnow(), delivery.id],
                )
                self.store.log_event(
                    "delivery.unknown",
                    delivery.subscriber_id,
                    delivery.edition,
                    message_id=delivery.message_id,
                    claimed_at=delivery.claimed_at,
                )
        if rows:
            log.warning(
                "%d message(s) were left unknown by a run that stopped while sending; "
                "they go again with the same Message-ID: %s",
                len(rows),
                ", ".join(d.email for d in rows),
            )
        return rows

    def unknown(self, edition: date | None = None) -> list[dict]:
        """Messages a crash left unknown (from the event log), newest first."""
        events = self.store.events("delivery.unknown", limit=1000)
        return [e for e in events if edition is None or e["edition"] == edition.isoformat()]

    def suppress(self, edition: date, subscriber: Subscriber, domain: str, reason: str) -> None:
        """Record that this edition was not sent because the address is suppressed."""
        now = utcnow()
        with self.store.transaction():
            self.store.conn.execute(
                "INSERT INTO deliveries (edition, subscriber_id, email, status, message_id,"
                " created_at, updated_at, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (edition, subscriber_id) DO UPDATE SET status = excluded.status,"
                " updated_at = excluded.updated_at, last_error = excluded.last_error"
                " WHERE deliveries.status NOT IN ('sent', 'sending')",
                [
                    edition.isoformat(),
                    subscriber.id,
                    subscriber.email,
                    DeliveryStatus.SUPPRESSED,
                    message_id(edition, subscriber.id, subscriber.email, 1, domain),
                    now,
                    now,
                    reason,
                ],
            )

    def sent_since(self, moment: str, shard: Shard = WHOLE_LIST) -> int:
        """Messages to ``shard`` sent since ``moment`` (ISO-8601 UTC), for the hourly cap."""
        return self.store.conn.execute(
            "SELECT count(*) FROM deliveries WHERE status = ? AND sent_at >= ?"
            " AND subscriber_id % ? = ?",
            [DeliveryStatus.SENT, moment, shard.count, shard.index],
        ).fetchone()[0]

    def record(self, delivery: Delivery, result: SendResult) -> None:
        """Write down what the transport answered for a claimed delivery. A temporary
        failure is given its next try (exponential back-off with jitter) until
        :data:`MAX_ATTEMPTS`."""
        now = datetime.now(UTC)
        status = DeliveryStatus(result.status)
        if status == DeliveryStatus.FAILED and result.maybe_sent:
            # The request may have reached the server (a lost answer): the same rule as a
            # crash between handing over and recording applies.
            status = DeliveryStatus.UNKNOWN
        next_attempt = None
        if status == DeliveryStatus.FAILED and delivery.attempts < MAX_ATTEMPTS:
            wait = RETRY_BASE * 2 ** (delivery.attempts - 1) * random.uniform(0.8, 1.2)
            wait = max(wait, timedelta(seconds=result.retry_after or 0))
            next_attempt = to_utc_iso(now + wait)
        with self.store.transaction():
            self.store.conn.execute(
                "UPDATE deliveries SET status = ?, sent_at = ?, transport_id = ?,"
                " last_error = ?, updated_at = ?, next_attempt_at = ? WHERE id = ?",
                [
                    status,
                    to_utc_iso(now) if status == DeliveryStatus.SENT else None,
                    result.transport_id,
                    result.error,
                    to_utc_iso(now),
                    next_attempt,
                    delivery.id,
                ],
            )
            if status != DeliveryStatus.SENT:
                self.store.log_event(
                    f"delivery.{status}",
                    delivery.subscriber_id,
                    delivery.edition,
                    error=result.error,
                    message_id=delivery.message_id,
                    next_attempt_at=next_attempt,
                )


def _send_count(existing: Delivery) -> int:
    """The send count of a message claimed again: a retry (after a failure, or of a
    message whose fate a crash left unknown) keeps its Message-ID; a forced resend of a
    message that went out gets a new one, so mail clients do not drop it as a copy."""
    return existing.send_count + (1 if existing.status == DeliveryStatus.SENT else 0)


def _pick_record(pick: Pick) -> dict:
    return {"id": pick.paper.id, "score": round(pick.score, 4), "reason": pick.reason}


def _delivery(record: dict) -> Delivery:
    return Delivery(
        id=record["id"],
        edition=record["edition"],
        subscriber_id=record["subscriber_id"],
        email=record["email"],
        status=DeliveryStatus(record["status"]),
        message_id=record["message_id"],
        paper_ids=json.loads(record["paper_ids"]),
        picks=json.loads(record["picks"]),
        attempts=record["attempts"],
        send_count=record["send_count"],
        sent_at=record["sent_at"],
        last_error=record["last_error"],
        claimed_at=record["claimed_at"],
        next_attempt_at=record["next_attempt_at"],
    )
