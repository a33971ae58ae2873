"""The SQLite store (through sqlite-utils): papers, subscribers and their profiles,
feedback, embeddings, the event log and the rate limits; the deliveries table is
:mod:`newsletter.store.deliveries`. Callers see it as a :class:`newsletter.store.Store`."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import sqlite_utils
from sqlite_utils.db import NotFoundError

from ..models import Paper, Status, Subscriber, profile_problem, title_key, utcnow
from .dashboard import DashboardQueries
from .deliveries import KEYS_PER_QUERY, SQLiteDeliveries
from .interface import (
    DeliveryStore,
    DuplicateSubscriber,
    SaveOutcome,
    SubscriberNotFound,
    TrendingRow,
)
from .migrations import migrate

log = logging.getLogger(__name__)


class SQLiteStore(DashboardQueries):
    """:class:`newsletter.store.interface.Store` in one SQLite file, in WAL mode. Its SQL is
    shared with :class:`newsletter.store.postgres.PostgresStore`, which overrides the few
    places where the dialects differ (the class attributes below, the transactions)."""

    #: What a duplicate address raises.
    _INTEGRITY_ERRORS: ClassVar[tuple[type[Exception], ...]] = (sqlite3.IntegrityError,)
    #: How a subscriber is found by address (case-insensitive: the column is NOCASE).
    _EMAIL_MATCH = "s.email = ?"
    #: An event's detail field ``new``, for a comparison.
    _DETAIL_NEW = "json_extract(detail, '$.new')"
    #: BEGIN of a write transaction, taken at once so that concurrent writers queue.
    _BEGIN = "BEGIN IMMEDIATE"

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite_utils.Database(self.path)
        self.conn: sqlite3.Connection = self.db.conn
        self.conn.execute("PRAGMA journal_mode = WAL")
        # In WAL mode, NORMAL syncs the log at checkpoints rather than at every commit: a
        # commit survives the process dying in any way (kill -9 included: the log is in the
        # operating system's hands), which is what the delivery ledger's crash rule needs;
        # only a power cut or a kernel crash can lose the last commits. That costs a few
        # messages the ledger then sends again, with the same Message-ID (see ledger.py),
        # where FULL would cost an fsync per message (about ten times fewer commits a second).
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute("PRAGMA busy_timeout = 10000")
        self.conn.execute("PRAGMA foreign_keys = ON")
        applied = migrate(self.conn)
        if applied:
            log.info("database %s: applied %d migration(s)", self.path, applied)
        self.deliveries: DeliveryStore = SQLiteDeliveries(self.conn)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; taken at once (IMMEDIATE) so that concurrent writers queue."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute(self._BEGIN)
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        with self.db.atomic():  # nested in a transaction: a savepoint
            yield

    # -- meta ---------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [key, value],
            )

    # -- papers -------------------------------------------------------------------------------

    def save_paper(self, paper: Paper) -> SaveOutcome:
        """Insert a paper, or merge it into the row that has its id (or, without a real id,
        its title). Fields the new record lacks keep their stored values."""
        with self.transaction():
            existing = self._find_paper_row(paper)
            now = utcnow()
            if existing is None:
                self.db.table("papers").insert(
                    {
                        **_paper_row(paper),
                        "title_key": title_key(paper.title),
                        "first_seen_at": paper.first_seen_at or now,
                        "updated_at": now,
                    }
                )
                return "new"
            merged = _merge_paper_rows(existing, _paper_row(paper))
            changed = {k: v for k, v in merged.items() if existing.get(k) != v}
            if not changed:
                return "unchanged"
            changed["title_key"] = title_key(merged["title"])
            changed["updated_at"] = now
            self.db.table("papers").update(existing["id"], changed)
            return "updated"

    def _find_paper_row(self, paper: Paper) -> dict | None:
        """The stored row of ``paper``: by id, else (for a paper first stored without a real
        id) by title. A title-keyed row found for a paper that now has a real id takes that
        id, everywhere it is referenced, so the paper stays one row."""
        try:
            return self.db.table("papers").get(paper.id)
        except NotFoundError:
            pass
        if paper.id.startswith("title-"):
            # No real id: the paper may be stored under its arXiv id already.
            rows = self.db.query(
                "SELECT * FROM papers WHERE title_key = ? LIMIT 1", [title_key(paper.title)]
            )
            return next(iter(rows), None)
        rows = self.db.query(
            "SELECT * FROM papers WHERE title_key = ? AND id LIKE 'title-%' LIMIT 1",
            [title_key(paper.title)],
        )
        row = next(iter(rows), None)
        if row is not None:
            self._rekey_paper(row["id"], paper.id)
            row["id"] = paper.id
        return row

    def _rekey_paper(self, old: str, new: str) -> None:
        self.conn.execute("UPDATE papers SET id = ? WHERE id = ?", [new, old])
        self.conn.execute("UPDATE feedback SET paper_id = ? WHERE paper_id = ?", [new, old])
        self.deliveries.rekey_paper(old, new)
        log.info("paper %s is now known by its id %s", old, new)

    def get_paper(self, paper_id: str) -> Paper | None:
        try:
            return _paper_from_row(self.db.table("papers").get(paper_id))
        except NotFoundError:
            return None

    def papers_by_ids(self, ids: Iterable[str]) -> list[Paper]:
        """Papers in the order of ``ids``; ids not in the store are left out."""
        ids = list(ids)
        rows: dict[str, dict] = {}
        for start in range(0, len(ids), KEYS_PER_QUERY):
            chunk = ids[start : start + KEYS_PER_QUERY]
            query = f"SELECT * FROM papers WHERE id IN ({','.join('?' * len(chunk))})"
            rows.update((r["id"], r) for r in self.db.query(query, chunk))
        return [_paper_from_row(rows[i]) for i in ids if i in rows]

    def papers_seen_between(self, start: str, end: str) -> list[Paper]:
        """Papers first seen in ``[start, end)`` (ISO-8601 UTC), oldest first."""
        rows = self.db.query(
            "SELECT * FROM papers WHERE first_seen_at >= ? AND first_seen_at < ?"
            " ORDER BY first_seen_at, id",
            [start, end],
        )
        return [_paper_from_row(r) for r in rows]

    def recent_papers(self, limit: int) -> list[Paper]:
        rows = self.db.query("SELECT * FROM papers ORDER BY first_seen_at DESC LIMIT ?", [limit])
        return [_paper_from_row(r) for r in rows]

    def count(self, table: str) -> int:
        return self.db[table].count

    # -- subscribers --------------------------------------------------------------------------

    def add_subscriber(
        self,
        email: str,
        *,
        status: Status,
        timezone: str,
        delivery_hour: int,
        max_papers: int,
        interests: str = "",
        categories: list[str] | None = None,
        muted_terms: list[str] | None = None,
        consent_source: str,
        consent_ip: str | None = None,
    ) -> Subscriber:
        _check_profile(interests=interests, categories=categories, muted_terms=muted_terms)
        now = utcnow()
        with self.transaction():
            try:
                with self.savepoint():
                    cursor = self.conn.execute(
                        "INSERT INTO subscribers (email, status, timezone, delivery_hour, max_papers,"
                        " created_at, updated_at, consent_at, consent_source, consent_ip,"
                        " confirmed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                        [
                            email,
                            str(status),
                            timezone,
                            delivery_hour,
                            max_papers,
                            now,
                            now,
                            now,
                            consent_source,
                            consent_ip,
                            now if status == Status.ACTIVE else None,
                        ],
                    )
                    (subscriber_id,) = cursor.fetchone()
            except self._INTEGRITY_ERRORS as exc:
                raise DuplicateSubscriber(f"{email} is already a subscriber") from exc
            self.conn.execute(
                "INSERT INTO profiles (subscriber_id, interests, categories, muted_terms,"
                " updated_at) VALUES (?, ?, ?, ?, ?)",
                [
                    subscriber_id,
                    interests,
                    json.dumps(categories or []),
                    json.dumps(muted_terms or [], ensure_ascii=False),
                    now,
                ],
            )
            self.log_event("subscriber.added", subscriber_id, source=consent_source)
        return self.get_subscriber(subscriber_id)

    _SUBSCRIBER_QUERY = (
        "SELECT s.*, p.interests, p.categories, p.muted_terms, p.followed_authors,"
        " p.categories_only FROM subscribers s"
        " LEFT JOIN profiles p ON p.subscriber_id = s.id"
    )

    def get_subscriber(self, key: int | str) -> Subscriber:
        """A subscriber by id or by email address (case-insensitive)."""
        match = "s.id = ?" if isinstance(key, int) else self._EMAIL_MATCH
        rows = list(self.db.query(f"{self._SUBSCRIBER_QUERY} WHERE {match}", [key]))
        if not rows:
            raise SubscriberNotFound(f"no subscriber {key}")
        return _subscriber_from_row(rows[0])

    def list_subscribers(self, status: Status | None = None) -> list[Subscriber]:
        where, params = ("WHERE s.status = ?", [str(status)]) if status else ("", [])
        rows = self.db.query(f"{self._SUBSCRIBER_QUERY} {where} ORDER BY s.id", params)
        return [_subscriber_from_row(r) for r in rows]

    def count_subscribers(self, status: Status) -> int:
        return self.conn.execute(
            "SELECT count(*) FROM subscribers WHERE status = ?", [str(status)]
        ).fetchone()[0]

    _SUBSCRIBER_COLUMNS = frozenset(
        {
            "status",
            "timezone",
            "delivery_hour",
            "max_papers",
            "trending_papers",
            "frequency",
            "weekly_day",
            "paused_until",
        }
    )
    _PROFILE_COLUMNS = frozenset(
        {"interests", "categories", "muted_terms", "followed_authors", "categories_only"}
    )

    def update_subscriber(self, subscriber_id: int, **changes: Any) -> Subscriber:
        """Change subscriber and profile fields; status changes are logged as events."""
        unknown = set(changes) - self._SUBSCRIBER_COLUMNS - self._PROFILE_COLUMNS
        if unknown:
            raise ValueError(f"cannot update {', '.join(sorted(unknown))}")
        _check_profile(**changes)
        before = self.get_subscriber(subscriber_id)
        now = utcnow()
        with self.transaction():
            row = {k: changes[k] for k in self._SUBSCRIBER_COLUMNS & set(changes)}
            if "status" in row:
                row["status"] = str(row["status"])
                if row["status"] == Status.UNSUBSCRIBED:
                    row["unsubscribed_at"] = now
                if row["status"] == Status.ACTIVE and before.status == Status.PENDING:
                    row["confirmed_at"] = now
            self.db.table("subscribers").update(subscriber_id, {**row, "updated_at": now})
            profile = {
                k: json.dumps(v, ensure_ascii=False) if isinstance(v, list) else v
                for k, v in changes.items()
                if k in self._PROFILE_COLUMNS
            }
            if profile:
                self.db.table("profiles").update(subscriber_id, {**profile, "updated_at": now})
            if "status" in row and row["status"] != before.status:
                self.log_event(
                    "subscriber.status", subscriber_id, old=str(before.status), new=row["status"]
                )
        return self.get_subscriber(subscriber_id)

    def remove_subscriber(self, subscriber_id: int) -> None:
        """Forget a subscriber entirely: profile, feedback and delivery history go too."""
        with self.transaction():
            self.conn.execute("DELETE FROM subscribers WHERE id = ?", [subscriber_id])
            self.log_event("subscriber.removed", subscriber_id)

    # -- feedback -----------------------------------------------------------------------------

    def set_feedback(self, subscriber_id: int, paper_id: str, signal: int) -> None:
        """Record "more like this" (+1) or "less like this" (-1); 0 removes the signal."""
        with self.transaction():
            if signal == 0:
                self.conn.execute(
                    "DELETE FROM feedback WHERE subscriber_id = ? AND paper_id = ?",
                    [subscriber_id, paper_id],
                )
            else:
                self.conn.execute(
                    "INSERT INTO feedback (subscriber_id, paper_id, signal, created_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (subscriber_id, paper_id)"
                    " DO UPDATE SET signal = excluded.signal, created_at = excluded.created_at",
                    [subscriber_id, paper_id, 1 if signal > 0 else -1, utcnow()],
                )
            self.log_event("feedback", subscriber_id, paper=paper_id, signal=signal)

    def feedback(self, subscriber_ids: Iterable[int] | None = None) -> dict[int, dict[str, int]]:
        """Each subscriber's signals: {subscriber id: {paper id: +1 or -1}}."""
        rows = self.conn.execute("SELECT subscriber_id, paper_id, signal FROM feedback")
        wanted = None if subscriber_ids is None else set(subscriber_ids)
        signals: dict[int, dict[str, int]] = {}
        for subscriber_id, paper_id, signal in rows:
            if wanted is None or subscriber_id in wanted:
                signals.setdefault(subscriber_id, {})[paper_id] = signal
        return signals

    # -- embeddings (the semantic extra) ------------------------------------------------------

    _EMBEDDING_TABLES: ClassVar[dict[str, str]] = {
        "paper_embeddings": "paper_id",
        "profile_embeddings": "subscriber_id",
    }

    def embeddings(
        self, table: str, key: str, model: str, keys: Iterable[str | int]
    ) -> dict[str | int, tuple[str, bytes]]:
        """{key: (text digest, vector bytes)} of the stored embeddings of ``keys``."""
        if self._EMBEDDING_TABLES.get(table) != key:
            raise ValueError(f"no embeddings table {table}.{key}")
        wanted = list(dict.fromkeys(keys))
        found: dict[str | int, tuple[str, bytes]] = {}
        for start in range(0, len(wanted), KEYS_PER_QUERY):
            chunk = wanted[start : start + KEYS_PER_QUERY]
            rows = self.conn.execute(
                f"SELECT {key}, text_hash, vector FROM {table}"
                f" WHERE model = ? AND {key} IN ({', '.join('?' * len(chunk))})",
                [model, *chunk],
            )
            found.update((k, (digest, vector)) for k, digest, vector in rows)
        return found

    def papers_without_embedding(self, model: str, limit: int) -> list[Paper]:
        """The ``limit`` newest papers with no embedding from ``model`` yet."""
        rows = self.db.query(
            "SELECT papers.* FROM papers LEFT JOIN paper_embeddings e"
            " ON e.paper_id = papers.id AND e.model = ?"
            " WHERE e.paper_id IS NULL ORDER BY papers.first_seen_at DESC LIMIT ?",
            [model, limit],
        )
        return [_paper_from_row(r) for r in rows]

    def recent_paper_embeddings(self, model: str, limit: int) -> list[bytes]:
        """The stored embeddings (passage vectors) of the ``limit`` newest papers."""
        rows = self.conn.execute(
            "SELECT e.vector FROM paper_embeddings e JOIN papers ON papers.id = e.paper_id"
            " WHERE e.model = ? ORDER BY papers.first_seen_at DESC LIMIT ?",
            [model, limit],
        )
        return [vector for (vector,) in rows]

    def save_embeddings(
        self, table: str, key: str, model: str, rows: Iterable[tuple[str | int, str, bytes]]
    ) -> None:
        if self._EMBEDDING_TABLES.get(table) != key:
            raise ValueError(f"no embeddings table {table}.{key}")
        with self.transaction():
            self.conn.executemany(
                f"INSERT INTO {table} ({key}, model, text_hash, vector) VALUES (?, ?, ?, ?)"
                f" ON CONFLICT ({key}) DO UPDATE SET model = excluded.model,"
                " text_hash = excluded.text_hash, vector = excluded.vector",
                [(k, model, digest, vector) for k, digest, vector in rows],
            )

    # -- events -------------------------------------------------------------------------------

    def log_event(
        self, kind: str, subscriber_id: int | None = None, edition: str | None = None, **detail: Any
    ) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT INTO events (at, kind, subscriber_id, edition, detail) VALUES (?, ?, ?, ?, ?)",
                [utcnow(), kind, subscriber_id, edition, json.dumps(detail, default=str)],
            )

    def has_event(self, kind: str, subscriber_id: int, edition: str) -> bool:
        return (
            self.conn.execute(
                "SELECT 1 FROM events WHERE subscriber_id = ? AND kind = ? AND edition = ? LIMIT 1",
                [subscriber_id, kind, edition],
            ).fetchone()
            is not None
        )

    def has_subscriber_event(self, subscriber_id: int, kinds: Iterable[str], **detail: Any) -> bool:
        """Whether the subscriber has an event of one of ``kinds`` with these ``detail``
        values."""
        kinds = list(kinds)
        if not all(key.isidentifier() for key in detail):
            raise ValueError(f"not a detail key: {list(detail)}")
        matches = "".join(f" AND json_extract(detail, '$.{key}') = ?" for key in detail)
        row = self.conn.execute(
            f"SELECT 1 FROM events WHERE subscriber_id = ?"
            f" AND kind IN ({', '.join('?' * len(kinds))}){matches} LIMIT 1",
            [subscriber_id, *kinds, *detail.values()],
        ).fetchone()
        return row is not None

    def count_events_since_active(self, subscriber_id: int, kind: str, since: str) -> int:
        """The subscriber's events of ``kind`` since ``since`` (ISO-8601 UTC) and since the
        subscriber was last made active, whichever is later."""
        return self.conn.execute(
            "SELECT count(*) FROM events WHERE subscriber_id = ? AND kind = ? AND at >= ?"
            " AND at > coalesce((SELECT max(at) FROM events WHERE subscriber_id = ?"
            f" AND kind = 'subscriber.status' AND {self._DETAIL_NEW} = ?), '')",
            [subscriber_id, kind, since, subscriber_id, str(Status.ACTIVE)],
        ).fetchone()[0]

    def events(
        self, kind: str | None = None, limit: int = 100, edition: str | None = None
    ) -> list[dict]:
        """The newest ``limit`` events (of ``kind``, of ``edition``), newest first."""
        filters = {"kind": kind, "edition": edition}
        where = [f"{column} = ?" for column, value in filters.items() if value]
        params = [value for value in filters.values() if value]
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self.db.query(
            f"SELECT * FROM events {clause} ORDER BY id DESC LIMIT ?", [*params, limit]
        )
        return [{**r, "detail": json.loads(r["detail"])} for r in rows]

    def event_counts_by_edition(
        self, kinds: Collection[str], editions: Collection[str]
    ) -> dict[str, dict[str, int]]:
        """{edition: {kind: subscribers}}: how many subscribers have an event of each of
        ``kinds`` recorded for each of ``editions``."""
        if not kinds or not editions:
            return {}
        rows = self.conn.execute(
            "SELECT edition, kind, count(DISTINCT subscriber_id) FROM events"
            f" WHERE kind IN ({', '.join('?' * len(kinds))})"
            f" AND edition IN ({', '.join('?' * len(editions))}) GROUP BY edition, kind",
            [*kinds, *editions],
        )
        counts: dict[str, dict[str, int]] = {}
        for edition, kind, number in rows.fetchall():
            counts.setdefault(edition, {})[kind] = number
        return counts

    # -- mail read from the bounce mailbox ----------------------------------------------------

    def record_mail(self, message_id: str, kind: str, email: str | None) -> bool:
        """Note that the message ``message_id`` of the bounce mailbox was read; False (and
        nothing written) if it was already."""
        with self.transaction():
            cursor = self.conn.execute(
                "INSERT INTO processed_mail (message_id, at, kind, email) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (message_id) DO NOTHING",
                [message_id, utcnow(), kind, email],
            )
            return cursor.rowcount == 1

    # -- rate limits: every request let through is a row of rate_limit_hits -------------------

    def take_rate_limit_slot(self, key: str, limit: int, window_start: float, now: float) -> bool:
        with self.transaction():
            self.conn.execute("DELETE FROM rate_limit_hits WHERE at <= ?", [window_start])
            (count,) = self.conn.execute(
                "SELECT count(*) FROM rate_limit_hits WHERE key = ?", [key]
            ).fetchone()
            if count >= limit:
                return False
            self.conn.execute("INSERT INTO rate_limit_hits (key, at) VALUES (?, ?)", [key, now])
        return True

    def give_back_rate_limit_slot(self, key: str, at: float) -> None:
        with self.transaction():
            self.conn.execute("DELETE FROM rate_limit_hits WHERE key = ? AND at = ?", [key, at])

    # -- trending -----------------------------------------------------------------------------

    def trending_signals(self, start: str, end: str) -> list[TrendingRow]:
        """What the trending order of the papers first seen in ``[start, end)`` (ISO-8601
        UTC) is made of, without their texts (``newsletter.ranking.trending`` orders them,
        then reads the papers of one page with :meth:`papers_by_ids`)."""
        rows = self.conn.execute(
            "SELECT id, upvotes, trending_rank, first_seen_at, published_at FROM papers"
            " WHERE first_seen_at >= ? AND first_seen_at < ?",
            [start, end],
        )
        return [TrendingRow(*row) for row in rows]


def _paper_row(paper: Paper) -> dict[str, Any]:
    return {
        "id": paper.id,
        "source": paper.source,
        "title": paper.title,
        "abstract": paper.abstract,
        "authors": json.dumps(paper.authors, ensure_ascii=False),
        "categories": json.dumps(paper.categories),
        "url": paper.url,
        "published_at": paper.published_at,
        "upvotes": paper.upvotes,
        "trending_rank": paper.trending_rank,
        "extra": json.dumps(paper.extra, ensure_ascii=False, sort_keys=True),
    }


def _merge_paper_rows(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A stored paper updated with a newer record: empty new fields keep the old values,
    categories and sources are united."""
    merged = {k: v for k, v in new.items() if k != "id" and v not in (None, "", "[]")}
    merged = {**{k: old[k] for k in new if k != "id"}, **merged}
    categories = json.loads(old["categories"] or "[]")
    categories += [c for c in json.loads(new["categories"]) if c not in categories]
    merged["categories"] = json.dumps(categories)
    sources = [s for s in (old["source"] or "").split(",") if s]
    if new["source"] and new["source"] not in sources:
        sources.append(new["source"])
    merged["source"] = ",".join(sources)
    extra = {**json.loads(old.get("extra") or "{}"), **json.loads(new["extra"])}
    merged["extra"] = json.dumps(extra, ensure_ascii=False, sort_keys=True)
    return merged


def _paper_from_row(row: dict[str, Any]) -> Paper:
    return Paper(
        id=row["id"],
        title=row["title"],
        abstract=row["abstract"],
        source=row["source"] or "",
        authors=json.loads(row["authors"] or "[]"),
        categories=json.loads(row["categories"] or "[]"),
        url=row["url"] or "",
        published_at=row["published_at"],
        upvotes=row["upvotes"],
        first_seen_at=row["first_seen_at"],
        trending_rank=row.get("trending_rank"),
        extra=json.loads(row.get("extra") or "{}"),
    )


def _check_profile(**fields: Any) -> None:
    """Refuse a profile larger than models.PROFILE_LIMITS allows, even from a caller that
    did not validate it: one reader's profile must not stall the edition."""
    for name, value in fields.items():
        if value is not None and (problem := profile_problem(name, value)):
            raise ValueError(f"profile not stored: {problem}")


def _subscriber_from_row(row: dict[str, Any]) -> Subscriber:
    return Subscriber(
        id=row["id"],
        email=row["email"],
        status=Status(row["status"]),
        timezone=row["timezone"],
        delivery_hour=row["delivery_hour"],
        max_papers=row["max_papers"],
        trending_papers=row["trending_papers"],
        interests=row["interests"] or "",
        categories=json.loads(row["categories"] or "[]"),
        muted_terms=json.loads(row["muted_terms"] or "[]"),
        followed_authors=json.loads(row["followed_authors"] or "[]"),
        categories_only=bool(row["categories_only"]),
        frequency=row["frequency"],
        weekly_day=row["weekly_day"],
        paused_until=row["paused_until"],
        created_at=row["created_at"],
        consent_at=row["consent_at"],
        consent_source=row["consent_source"],
    )
