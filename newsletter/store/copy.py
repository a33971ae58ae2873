"""``newsletter db copy``: a whole database into an empty one, SQLite to PostgreSQL or back.

Every table is copied as it is, ids included (so tokens in sent links and the ledger's
Message-IDs stay valid), in one transaction of the target, and the counts are compared
after. The tables are the same in both schemas (see :mod:`newsletter.store.migrations`
and :mod:`newsletter.store.migrations_postgres`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import open_store
from .database import SQLiteStore
from .postgres import PostgresStore

#: Every table, parents before the rows that point at them.
TABLES = (
    "meta",
    "papers",
    "subscribers",
    "profiles",
    "feedback",
    "deliveries",
    "events",
    "rate_limit_hits",
    "paper_embeddings",
    "profile_embeddings",
    "processed_mail",
)
#: The tables whose ``id`` the database gives: PostgreSQL's counters follow the copy.
_IDENTITY_TABLES = ("subscribers", "deliveries", "events")
ROWS_PER_BATCH = 1000


class CopyRefused(ValueError):
    """The target is not empty, or the copy did not arrive whole."""


def copy_between(source: Path | str, target: Path | str) -> dict[str, int]:
    """Copy the database at ``source`` (a file or a URL) into the empty one at ``target``."""
    with open_store(source) as source_store, open_store(target) as target_store:
        assert isinstance(source_store, SQLiteStore) and isinstance(target_store, SQLiteStore)
        return copy_database(source_store, target_store)


def copy_database(source: SQLiteStore, target: SQLiteStore) -> dict[str, int]:
    """Copy every row of ``source`` into the empty ``target``; {table: rows}."""
    occupied = [table for table in TABLES if target.count(table)]
    if occupied:
        raise CopyRefused(
            f"the target database is not empty ({', '.join(occupied)}); copy into an empty one"
        )
    copied: dict[str, int] = {}
    with target.transaction():
        for table in TABLES:
            copied[table] = _copy_table(source, target, table)
        if isinstance(target, PostgresStore):
            for table in _IDENTITY_TABLES:
                target.conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
                )
    found = {table: target.count(table) for table in TABLES}
    expected = {table: source.count(table) for table in TABLES}
    if found != expected:
        wrong = [t for t in TABLES if found[t] != expected[t]]
        raise CopyRefused(f"the copy differs from its source in {', '.join(wrong)}")
    return copied


def _copy_table(source: SQLiteStore, target: SQLiteStore, table: str) -> int:
    cursor: Any = source.conn.execute(f"SELECT * FROM {table}")
    columns = [c[0] for c in cursor.description]
    insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    total = 0
    while rows := cursor.fetchmany(ROWS_PER_BATCH):
        target.conn.executemany(insert, [tuple(row) for row in rows])
        total += len(rows)
    return total
