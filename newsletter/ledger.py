"""The delivery ledger: one row per (edition, subscriber), the only code that writes it.

A message is *claimed* (status ``sending``, in a transaction) before it is handed to the
transport and *recorded* (``sent``, ``failed`` or ``rejected``) right after. A row left in
``sending`` means a run stopped between the two: its fate is unknown, and it is neither
resent nor forgotten without an operator's ``--force``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from .models import Subscriber, utcnow
from .ranking import Pick
from .render import message_id
from .store import Store
from .transports import SendResult


class DeliveryStatus(StrEnum):
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    REJECTED = "rejected"


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

    def counts(self, edition: date) -> dict[str, int]:
        rows = self.store.conn.execute(
            "SELECT status, count(*) FROM deliveries WHERE edition = ? GROUP BY status",
            [edition.isoformat()],
        )
        return dict(rows.fetchall())

    def history(self, edition: date) -> dict[int, History]:
        """Per subscriber: papers in any other edition that was sent or may have been, and
        the time their latest earlier edition was claimed."""
        papers: dict[int, set[str]] = {}
        last: dict[int, str] = {}
        rows = self.store.conn.execute(
            "SELECT subscriber_id, edition, paper_ids, claimed_at FROM deliveries"
            " WHERE edition != ? AND status IN (?, ?)",
            [edition.isoformat(), DeliveryStatus.SENT, DeliveryStatus.SENDING],
        )
        for subscriber_id, other, paper_ids, claimed_at in rows:
            papers.setdefault(subscriber_id, set()).update(json.loads(paper_ids))
            if (
                other < edition.isoformat()
                and claimed_at
                and claimed_at > last.get(subscriber_id, "")
            ):
                last[subscriber_id] = claimed_at
        return {
            sid: History(frozenset(papers.get(sid, ())), last.get(sid))
            for sid in papers.keys() | last.keys()
        }

    def claim(
        self, edition: date, subscriber: Subscriber, picks: list[Pick], domain: str, force: bool
    ) -> tuple[Delivery | None, str]:
        """Take the (edition, subscriber) message for sending. Returns the delivery, or None
        and the reason it must not be sent now."""
        now = utcnow()
        with self.store.transaction():
            existing = self.get(edition, subscriber.id)
            if existing is None:
                send_count = 1
                self.store.conn.execute(
                    "INSERT INTO deliveries (edition, subscriber_id, email, status, message_id,"
                    " paper_ids, picks, attempts, send_count, created_at, claimed_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)",
                    [
                        edition.isoformat(),
                        subscriber.id,
                        subscriber.email,
                        DeliveryStatus.SENDING,
                        message_id(edition, subscriber.id, send_count, domain),
                        json.dumps([p.paper.id for p in picks]),
                        json.dumps([_pick_record(p) for p in picks]),
                        send_count,
                        now,
                        now,
                        now,
                    ],
                )
                return self.get(edition, subscriber.id), "claimed"
            blocked = {
                DeliveryStatus.SENT: f"already sent ({existing.message_id}); --force sends again",
                DeliveryStatus.SENDING: (
                    "a previous run stopped while sending it, so it may have arrived; "
                    "--force sends it again"
                ),
                DeliveryStatus.REJECTED: (
                    f"the server rejected it ({existing.last_error}); --force tries again"
                ),
            }
            if existing.status in blocked and not force:
                return None, blocked[existing.status]
            # A retry after a failure keeps its Message-ID; a forced resend of a message that
            # went (or may have gone) out gets a new one, so clients do not drop it as a copy.
            resend = existing.status in (DeliveryStatus.SENT, DeliveryStatus.SENDING)
            send_count = existing.send_count + (1 if resend else 0)
            self.store.conn.execute(
                "UPDATE deliveries SET status = ?, message_id = ?, attempts = attempts + 1,"
                " send_count = ?, email = ?, claimed_at = ?, updated_at = ? WHERE id = ?",
                [
                    DeliveryStatus.SENDING,
                    message_id(edition, subscriber.id, send_count, domain),
                    send_count,
                    subscriber.email,
                    now,
                    now,
                    existing.id,
                ],
            )
            return self.get(edition, subscriber.id), "claimed"

    def record(self, delivery: Delivery, result: SendResult) -> None:
        """Write down what the transport answered for a claimed delivery."""
        now = utcnow()
        status = DeliveryStatus(result.status)
        with self.store.transaction():
            self.store.conn.execute(
                "UPDATE deliveries SET status = ?, sent_at = ?, transport_id = ?,"
                " last_error = ?, updated_at = ? WHERE id = ?",
                [
                    status,
                    now if status == DeliveryStatus.SENT else None,
                    result.transport_id,
                    result.error,
                    now,
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
                )


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
    )
