"""The delivery ledger's table in SQLite: every statement that reads or writes ``deliveries``.
The rules (when a message may be claimed again, its Message-ID, the back-off) are
:class:`newsletter.sending.ledger.Ledger`'s; this module only carries them out."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from typing import Any

from ..models import Delivery, DeliveryStatus, Shard
from .interface import Answer, ClaimedPapers, Holder, Lease, NewClaim, Reclaim

#: Keys per ``IN (...)`` query: under SQLite's smallest limit on bound parameters (999).
KEYS_PER_QUERY = 900


class SQLiteDeliveries:
    """:class:`newsletter.store.interface.DeliveryStore` on the connection of a
    :class:`newsletter.store.database.SQLiteStore`, inside its transactions. Its SQL is also
    PostgreSQL's (:class:`newsletter.store.postgres.PostgresDeliveries` overrides the claims'
    locks and what a crash leaves)."""

    claim_batch = 1
    concurrent_claims = False

    def __init__(self, conn: sqlite3.Connection | Any):
        self.conn = conn

    def _rows(self, sql: str, params: Sequence[Any]) -> list[Delivery]:
        cursor = self.conn.execute(sql, params)
        columns = [c[0] for c in cursor.description]
        return [_delivery(dict(zip(columns, row, strict=True))) for row in cursor]

    def get(self, edition: str, subscriber_id: int) -> Delivery | None:
        rows = self._rows(
            "SELECT * FROM deliveries WHERE edition = ? AND subscriber_id = ?",
            [edition, subscriber_id],
        )
        return rows[0] if rows else None

    def for_edition(self, edition: str) -> list[Delivery]:
        return self._rows("SELECT * FROM deliveries WHERE edition = ?", [edition])

    def with_message_id(self, edition: str, message_id: str) -> Delivery | None:
        rows = self._rows(
            "SELECT * FROM deliveries WHERE edition = ? AND message_id = ?", [edition, message_id]
        )
        return rows[0] if rows else None

    def latest(self, subscriber_id: int, status: DeliveryStatus, limit: int) -> list[Delivery]:
        return self._rows(
            "SELECT * FROM deliveries WHERE subscriber_id = ? AND status = ?"
            " ORDER BY edition DESC LIMIT ?",
            [subscriber_id, status, limit],
        )

    def recent_editions(self, limit: int) -> list[str]:
        rows = self.conn.execute(
            "SELECT DISTINCT edition FROM deliveries ORDER BY edition DESC LIMIT ?", [limit]
        )
        return [row[0] for row in rows.fetchall()]

    def counts(self, edition: str) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT status, count(*) FROM deliveries WHERE edition = ? GROUP BY status",
            [edition],
        )
        return dict(rows.fetchall())

    def holders(self, edition: str) -> list[Holder]:
        rows = self.conn.execute(
            "SELECT lease_owner, count(*), max(lease_expires_at) FROM deliveries"
            " WHERE edition = ? AND status = ? GROUP BY lease_owner ORDER BY lease_owner",
            [edition, DeliveryStatus.SENDING],
        )
        return [Holder(*row) for row in rows.fetchall()]

    def with_status(self, edition: str, status: DeliveryStatus) -> list[Delivery]:
        return self._rows(
            "SELECT * FROM deliveries WHERE edition = ? AND status = ?"
            " ORDER BY next_attempt_at, id",
            [edition, status],
        )

    def claimed_since(
        self, since: str, statuses: Collection[DeliveryStatus], other_than: str
    ) -> Iterator[ClaimedPapers]:
        rows = self.conn.execute(
            "SELECT subscriber_id, edition, paper_ids, created_at FROM deliveries"
            f" WHERE edition != ? AND status IN ({', '.join('?' * len(statuses))})"
            " AND claimed_at >= ?",
            [other_than, *statuses, since],
        )
        for subscriber_id, edition, paper_ids, planned_at in rows:
            yield ClaimedPapers(subscriber_id, edition, json.loads(paper_ids), planned_at)

    def count_sent_since(self, moment: str, shard: Shard) -> int:
        return self.conn.execute(
            "SELECT count(*) FROM deliveries WHERE status = ? AND sent_at >= ?"
            " AND subscriber_id % ? = ?",
            [DeliveryStatus.SENT, moment, shard.count, shard.index],
        ).fetchone()[0]

    def lock_next(
        self,
        edition: str,
        subscriber_ids: Sequence[int],
        limit: int,
        held: Collection[DeliveryStatus],
        now: str,
    ) -> list[int]:
        # The transaction is IMMEDIATE: no other sender claims anything until it ends.
        taken: list[int] = []
        for start in range(0, len(subscriber_ids), KEYS_PER_QUERY):
            chunk = list(subscriber_ids[start : start + KEYS_PER_QUERY])
            busy = {
                subscriber_id
                for (subscriber_id,) in self.conn.execute(
                    # "+status": the rows are found by (edition, subscriber_id). Without
                    # statistics SQLite would rather take idx_deliveries_status and read
                    # every message of the edition already sent, at each claim.
                    "SELECT subscriber_id FROM deliveries WHERE edition = ?"
                    f" AND subscriber_id IN ({', '.join('?' * len(chunk))})"
                    f" AND +status IN ({', '.join('?' * len(held))})"
                    " AND (status != ? OR coalesce(lease_expires_at, '9999') > ?)",
                    [edition, *chunk, *held, DeliveryStatus.SENDING, now],
                )
            }
            taken += [sid for sid in chunk if sid not in busy][: limit - len(taken)]
            if len(taken) >= limit:
                break
        return taken

    def insert_claims(self, claims: Sequence[NewClaim], lease: Lease, now: str) -> list[Delivery]:
        inserted = []
        for claim in claims:
            inserted += self._rows(*claims_insert([claim], lease, now))
        return inserted

    def locked(self, edition: str, subscriber_ids: Collection[int]) -> dict[int, Delivery]:
        # The transaction is IMMEDIATE: it holds the database's write lock already.
        wanted = list(subscriber_ids)
        found: dict[int, Delivery] = {}
        for start in range(0, len(wanted), KEYS_PER_QUERY):
            chunk = wanted[start : start + KEYS_PER_QUERY]
            rows = self._rows(
                "SELECT * FROM deliveries WHERE edition = ?"
                f" AND subscriber_id IN ({', '.join('?' * len(chunk))})",
                [edition, *chunk],
            )
            found.update((d.subscriber_id, d) for d in rows)
        return found

    def reclaim(self, claims: Sequence[Reclaim], lease: Lease, now: str) -> list[Delivery]:
        claimed = []
        for claim in claims:
            claimed += self._rows(
                "UPDATE deliveries SET status = ?, message_id = ?, attempts = attempts + 1,"
                " send_count = ?, email = ?, claimed_at = ?, updated_at = ?,"
                " next_attempt_at = NULL, lease_owner = ?, lease_expires_at = ?"
                " WHERE id = ? RETURNING *",
                [
                    DeliveryStatus.SENDING,
                    claim.message_id,
                    claim.send_count,
                    claim.email,
                    now,
                    now,
                    lease.owner,
                    lease.expires_at,
                    claim.delivery_id,
                ],
            )
        return claimed

    def renew(self, delivery_ids: Sequence[int], lease: Lease, now: str) -> list[int]:
        renewed: list[int] = []
        for start in range(0, len(delivery_ids), KEYS_PER_QUERY):
            chunk = list(delivery_ids[start : start + KEYS_PER_QUERY])
            renewed += [
                delivery_id
                for (delivery_id,) in self.conn.execute(
                    "UPDATE deliveries SET lease_expires_at = ?, updated_at = ?"
                    " WHERE status = ? AND lease_owner = ?"
                    f" AND id IN ({', '.join('?' * len(chunk))}) RETURNING id",
                    [lease.expires_at, now, DeliveryStatus.SENDING, lease.owner, *chunk],
                ).fetchall()
            ]
        return renewed

    def release(self, delivery_ids: Sequence[int], now: str) -> None:
        rows = [(DeliveryStatus.SENDING, delivery_id) for delivery_id in delivery_ids]
        self.conn.executemany(
            "DELETE FROM deliveries WHERE status = ? AND attempts = 1 AND id = ?", rows
        )
        self.conn.executemany(
            "UPDATE deliveries SET status = ?, attempts = attempts - 1, next_attempt_at = ?,"
            " updated_at = ?, lease_owner = NULL, lease_expires_at = NULL"
            " WHERE status = ? AND id = ?",
            [(DeliveryStatus.FAILED, now, now, *row) for row in rows],
        )

    def mark_in_flight_unknown(self, shard: Shard, now: str) -> list[Delivery]:
        rows = self._rows(
            "SELECT * FROM deliveries WHERE status = ? AND subscriber_id % ? = ?",
            [DeliveryStatus.SENDING, shard.count, shard.index],
        )
        self.conn.executemany(
            "UPDATE deliveries SET status = ?, updated_at = ? WHERE id = ?",
            [(DeliveryStatus.UNKNOWN, now, d.id) for d in rows],
        )
        return rows

    def record(self, answers: Sequence[Answer], now: str) -> None:
        self.conn.executemany(
            "UPDATE deliveries SET status = ?, sent_at = ?, transport_id = ?,"
            " last_error = ?, updated_at = ?, next_attempt_at = ? WHERE id = ?",
            [
                (
                    a.status,
                    a.sent_at,
                    a.transport_id,
                    a.error,
                    now,
                    a.next_attempt_at,
                    a.delivery_id,
                )
                for a in answers
            ],
        )

    def suppress(
        self,
        claim: NewClaim,
        reason: str,
        now: str,
        unless: Collection[DeliveryStatus],
    ) -> None:
        self.conn.execute(
            "INSERT INTO deliveries (edition, subscriber_id, email, status, message_id,"
            " created_at, updated_at, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (edition, subscriber_id) DO UPDATE SET status = excluded.status,"
            " updated_at = excluded.updated_at, last_error = excluded.last_error"
            f" WHERE deliveries.status NOT IN ({', '.join('?' * len(unless))})",
            [
                claim.edition,
                claim.subscriber_id,
                claim.email,
                DeliveryStatus.SUPPRESSED,
                claim.message_id,
                claim.planned_at,
                now,
                reason,
                *unless,
            ],
        )

    def rekey_paper(self, old: str, new: str) -> None:
        quoted_old, quoted_new = json.dumps(old), json.dumps(new)
        self.conn.execute(
            "UPDATE deliveries SET paper_ids = replace(paper_ids, ?, ?),"
            " picks = replace(picks, ?, ?) WHERE paper_ids LIKE ?",
            [quoted_old, quoted_new, quoted_old, quoted_new, f"%{quoted_old}%"],
        )


def _delivery(row: dict[str, Any]) -> Delivery:
    return Delivery(
        id=row["id"],
        edition=row["edition"],
        subscriber_id=row["subscriber_id"],
        email=row["email"],
        status=DeliveryStatus(row["status"]),
        message_id=row["message_id"],
        paper_ids=json.loads(row["paper_ids"]),
        picks=json.loads(row["picks"]),
        attempts=row["attempts"],
        send_count=row["send_count"],
        sent_at=row["sent_at"],
        last_error=row["last_error"],
        claimed_at=row["claimed_at"],
        next_attempt_at=row["next_attempt_at"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
    )


def claims_insert(claims: Sequence[NewClaim], lease: Lease, now: str) -> tuple[str, list]:
    """The statement and parameters that insert ``claims`` as rows ``sending`` under
    ``lease``, one row each; a claim whose (edition, subscriber) has a row already is left
    out (the unique key decides), and the rows inserted are returned."""
    rows = [
        [
            claim.edition,
            claim.subscriber_id,
            claim.email,
            DeliveryStatus.SENDING,
            claim.message_id,
            json.dumps(claim.paper_ids),
            json.dumps(claim.picks),
            claim.planned_at,
            now,
            now,
            lease.owner,
            lease.expires_at,
        ]
        for claim in claims
    ]
    sql = (
        "INSERT INTO deliveries (edition, subscriber_id, email, status, message_id,"
        " paper_ids, picks, attempts, send_count, created_at, claimed_at, updated_at,"
        " lease_owner, lease_expires_at) VALUES "
        + ", ".join(["(?, ?, ?, ?, ?, ?, ?, 1, 1, ?, ?, ?, ?, ?)"] * len(rows))
        + " ON CONFLICT (edition, subscriber_id) DO NOTHING RETURNING *"
    )
    return sql, [value for row in rows for value in row]
