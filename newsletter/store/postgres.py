"""The PostgreSQL store (psycopg 3 with its connection pool), for senders on several hosts.

It runs the SQLite store's SQL (:class:`newsletter.store.database.SQLiteStore` and
:class:`newsletter.store.deliveries.SQLiteDeliveries`): both dialects take the same
statements, written with ``?`` placeholders, which :class:`_Connection` turns into
psycopg's. The few places where they differ are overridden here: how a transaction begins,
case-insensitive addresses, JSON fields, the rate limit's lock, and the ledger's claims,
which lock their rows (``FOR UPDATE SKIP LOCKED``) rather than the whole database.

One pool per database URL per process; a store holds one connection of it until closed.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from itertools import count
from typing import Any, ClassVar

import psycopg
import psycopg_pool
from psycopg.rows import dict_row
from sqlite_utils.db import NotFoundError

from ..models import Delivery, DeliveryStatus, Shard
from .database import SQLiteStore
from .deliveries import SQLiteDeliveries, claims_insert
from .interface import DeliveryStore, Lease, NewClaim
from .migrations_postgres import SchemaTooNew, migrate

log = logging.getLogger(__name__)

#: Connections per process: a sender uses one, the web app one per request in flight.
POOL_SIZE = 8
CONNECT_TIMEOUT = 10

_IDENTIFIER = re.compile(r"^[a-z_]+$")
#: The primary key of the tables written by whole rows.
_PRIMARY_KEYS = {"papers": "id", "subscribers": "id", "profiles": "subscriber_id"}


#: A ledger row ``d`` that keeps a message from being claimed: in one of the statuses given,
#: and, if ``sending``, under a lease that has not run out.
_HELD = "d.status = ANY(?::text[]) AND (d.status != ? OR coalesce(d.lease_expires_at, '9999') > ?)"


class StoreUnavailable(ValueError):
    """The database cannot be reached, refuses the credentials, or has a newer schema."""


def connection_url(location: str) -> str:
    """A URL as given (``postgresql://`` or ``postgres://``, maybe ``+psycopg``), also after
    :class:`pathlib.Path` took one slash from it, as libpq reads it."""
    return re.sub(r"^postgres(?:ql)?(?:\+\w+)?:/+", "postgresql://", location, flags=re.I)


def _without_password(text: str, url: str) -> str:
    password = psycopg.conninfo.conninfo_to_dict(url).get("password")
    return text.replace(str(password), "***") if password else text


def _one_line(exc: Exception, url: str) -> str:
    """psycopg's message for a failed connection, on one line, without the password."""
    message = " ".join(str(exc).split())
    return _without_password(message, url)


class _Connection:
    """A psycopg connection (autocommit: a statement outside a transaction commits alone)
    that takes the statements of SQLite's dialect: ``?`` placeholders, ``%`` as modulo.
    A connection lost on the way (the server stopped, the backend was terminated, the
    network went) raises :class:`StoreUnavailable`, in one line without the password."""

    def __init__(self, raw: psycopg.Connection, url: str):
        self.raw, self.url = raw, url

    @staticmethod
    def _translate(sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")

    @contextmanager
    def _lost_as_unavailable(self) -> Iterator[None]:
        try:
            yield
        except psycopg.OperationalError as exc:
            if not self.raw.broken and not self.raw.closed:
                raise
            # Not chained: psycopg's exception may hold the URL, password included.
            message = f"lost the PostgreSQL database: {_one_line(exc, self.url)}"
            raise StoreUnavailable(message) from None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
        with self._lost_as_unavailable():
            return self.raw.execute(self._translate(sql), list(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]] | Any) -> None:
        with self._lost_as_unavailable(), self.raw.cursor() as cursor:
            cursor.executemany(self._translate(sql), list(rows))

    def query(self, sql: str, params: Sequence[Any]) -> list[dict]:
        with self._lost_as_unavailable(), self.raw.cursor(row_factory=dict_row) as cursor:
            cursor.execute(self._translate(sql), list(params))
            return cursor.fetchall()

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE


class _Table:
    """What the SQLite store asks of a sqlite-utils table: a row by key, insert, update."""

    def __init__(self, conn: _Connection, name: str):
        if name not in _PRIMARY_KEYS and not _IDENTIFIER.match(name):
            raise ValueError(f"no table {name}")
        self.conn, self.name, self.key = conn, name, _PRIMARY_KEYS.get(name, "id")

    @property
    def count(self) -> int:
        (rows,) = self.conn.execute(f"SELECT count(*) FROM {self.name}").fetchall()[0]
        return rows

    def get(self, key: Any) -> dict:
        rows = _Database(self.conn).query(f"SELECT * FROM {self.name} WHERE {self.key} = ?", [key])
        row = next(iter(rows), None)
        if row is None:
            raise NotFoundError(key)
        return row

    def insert(self, row: dict[str, Any]) -> None:
        self.conn.execute(
            f"INSERT INTO {self.name} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            list(row.values()),
        )

    def update(self, key: Any, row: dict[str, Any]) -> None:
        assignments = ", ".join(f"{column} = ?" for column in row)
        self.conn.execute(
            f"UPDATE {self.name} SET {assignments} WHERE {self.key} = ?", [*row.values(), key]
        )


class _Database:
    """What the SQLite store asks of a sqlite-utils database: queries as dicts, tables."""

    def __init__(self, conn: _Connection):
        self.conn = conn

    def query(self, sql: str, params: Sequence[Any] = ()) -> Iterator[dict]:
        yield from self.conn.query(sql, params)

    def table(self, name: str) -> _Table:
        return _Table(self.conn, name)

    __getitem__ = table


_pools: dict[str, psycopg_pool.ConnectionPool] = {}
_pools_lock = threading.Lock()


def _pool(url: str) -> psycopg_pool.ConnectionPool:
    """The process's pool for ``url``, made (and the schema brought up to date, under an
    advisory lock) on first use."""
    with _pools_lock:
        if url in _pools:
            return _pools[url]
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
                applied = migrate(conn)
        except psycopg.Error as exc:
            # Not chained: psycopg's exception may hold the URL, password included.
            message = f"cannot open the PostgreSQL database: {_one_line(exc, url)}"
            raise StoreUnavailable(message) from None
        except SchemaTooNew as exc:
            raise StoreUnavailable(str(exc)) from exc
        if applied:
            log.info("PostgreSQL database: applied %d migration(s)", applied)
        pool = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=POOL_SIZE,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
            open=True,
        )
        _pools[url] = pool
        return pool


def close_pools() -> None:
    """Close every pool of the process (tests, at the end of a database's use)."""
    with _pools_lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()


class PostgresDeliveries(SQLiteDeliveries):
    """The ledger's rows in PostgreSQL: SQLite's statements, with row locks for the claims.
    Several senders on several hosts share the table: nothing holds the whole of it."""

    claim_batch = 50
    concurrent_claims = True

    def lock_next(
        self,
        edition: str,
        subscriber_ids: Sequence[int],
        limit: int,
        held: Collection[DeliveryStatus],
        now: str,
    ) -> list[int]:
        """The subscribers' rows are the locks (``FOR NO KEY UPDATE``: it lets the ledger's
        inserts check their foreign key): a row another sender is claiming is skipped, not
        waited for. A sender whose claim committed while this statement ran left its rows
        unlocked but unseen (the statement's snapshot is older), so the rows locked are
        looked at again, in a snapshot of their own; if that leaves none, the next ones."""
        statuses = [str(status) for status in held]
        while True:
            locked = [
                subscriber_id
                for (subscriber_id,) in self.conn.execute(
                    "SELECT s.id FROM unnest(?::bigint[]) WITH ORDINALITY AS wanted (id, n)"
                    " JOIN subscribers s ON s.id = wanted.id"
                    " WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.edition = ?"
                    f" AND d.subscriber_id = s.id AND {_HELD})"
                    " ORDER BY wanted.n LIMIT ? FOR NO KEY UPDATE OF s SKIP LOCKED",
                    [list(subscriber_ids), edition, statuses, DeliveryStatus.SENDING, now, limit],
                )
            ]
            if not locked:
                return []
            taken = {
                subscriber_id
                for (subscriber_id,) in self.conn.execute(
                    "SELECT subscriber_id FROM deliveries d WHERE d.edition = ?"
                    f" AND d.subscriber_id = ANY(?) AND {_HELD}",
                    [edition, locked, statuses, DeliveryStatus.SENDING, now],
                )
            }
            if free := [subscriber_id for subscriber_id in locked if subscriber_id not in taken]:
                return free

    def insert_claims(self, claims: Sequence[NewClaim], lease: Lease, now: str) -> list[Delivery]:
        """One statement for the whole batch."""
        return self._rows(*claims_insert(claims, lease, now)) if claims else []

    def locked(self, edition: str, subscriber_ids: Collection[int]) -> dict[int, Delivery]:
        rows = self._rows(
            "SELECT * FROM deliveries WHERE edition = ? AND subscriber_id = ANY(?) FOR UPDATE",
            [edition, list(subscriber_ids)],
        )
        return {d.subscriber_id: d for d in rows}

    def mark_in_flight_unknown(self, shard: Shard, now: str) -> list[Delivery]:
        """Rows still ``sending`` whose lease ran out: their holder died (a live one is far
        inside its lease). Shards are SQLite's: on PostgreSQL every expired row is taken,
        each by one caller only (``SKIP LOCKED``)."""
        rows = self._rows(
            "SELECT * FROM deliveries WHERE status = ? AND lease_expires_at <= ?"
            " FOR UPDATE SKIP LOCKED",
            [DeliveryStatus.SENDING, now],
        )
        self.conn.executemany(
            "UPDATE deliveries SET status = ?, updated_at = ? WHERE id = ?",
            [(DeliveryStatus.UNKNOWN, now, d.id) for d in rows],
        )
        return rows


class PostgresStore(SQLiteStore):
    """:class:`newsletter.store.interface.Store` in a PostgreSQL database."""

    _INTEGRITY_ERRORS: ClassVar[tuple[type[Exception], ...]] = (psycopg.IntegrityError,)
    _EMAIL_MATCH = "lower(s.email) = lower(?)"
    _DETAIL_NEW = "(detail::jsonb ->> 'new')"
    _DETAIL_TEXT = "(detail::jsonb ->> '{key}')"
    _BEGIN = "BEGIN"
    _savepoints = count()

    def __init__(self, location: str):  # replaces SQLite's opening entirely
        self.url = connection_url(location)
        self.pool = _pool(self.url)
        try:
            raw = self.pool.getconn()
        except psycopg_pool.PoolTimeout as exc:
            raise StoreUnavailable("cannot open the PostgreSQL database: no connection") from exc
        self.pg = _Connection(raw, self.url)
        # The SQLite store's methods run on these: the same calls, in PostgreSQL.
        self.conn = self.pg  # type: ignore[assignment]
        self.db = _Database(self.pg)  # type: ignore[assignment]
        self.deliveries: DeliveryStore = PostgresDeliveries(self.pg)

    def __repr__(self) -> str:
        return f"PostgresStore({_without_password(self.url, self.url)!r})"

    def close(self) -> None:
        if self.pg.in_transaction and not self.pg.raw.broken:
            self.pg.raw.rollback()
        self.pool.putconn(self.pg.raw)  # a broken connection is thrown away

    def __enter__(self) -> PostgresStore:
        return self

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        name = f"sp_{next(self._savepoints)}"
        self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
            raise
        self.conn.execute(f"RELEASE SAVEPOINT {name}")

    def count(self, table: str) -> int:
        return self.db[table].count

    def has_subscriber_event(self, subscriber_id: int, kinds: Any, **detail: Any) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM events WHERE subscriber_id = ? AND kind = ANY(?)"
            " AND detail::jsonb @> ?::jsonb LIMIT 1",
            [subscriber_id, list(kinds), json.dumps(detail, default=str)],
        ).fetchone()
        return row is not None

    def take_rate_limit_slot(self, key: str, limit: int, window_start: float, now: float) -> bool:
        with self.transaction():
            # Requests for one key queue here, as all writers do in SQLite.
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(?))", [key])
            return super().take_rate_limit_slot(key, limit, window_start, now)
