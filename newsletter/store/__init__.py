"""The store: the database (papers, subscribers, feedback, embeddings, the event log, the
delivery ledger's rows, rate limits), its migrations, and ingest, where what the sources
bring is merged into it and reported. Every statement of SQL in the package is here.

Callers depend on the protocols of :mod:`newsletter.store.interface` (:class:`Store`, with
its :class:`DeliveryStore`), opened by :func:`open_store`; :mod:`newsletter.store.database`
and :mod:`newsletter.store.deliveries` implement them in SQLite through sqlite-utils, and
:mod:`newsletter.store.postgres` in PostgreSQL (psycopg 3), with the same SQL.

May import the base modules (``models``, ``settings``, ``tokens``, ``fetch``) and ``sources``;
nothing of a later stage (ranking, mail, subscribers, sending, the apps).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..settings import Settings
from .database import SQLiteStore
from .interface import DeliveryStore, DuplicateSubscriber, Store, SubscriberNotFound
from .postgres import PostgresStore, StoreUnavailable

__all__ = [
    "DeliveryStore",
    "DuplicateSubscriber",
    "Store",
    "StoreUnavailable",
    "SubscriberNotFound",
    "UnsupportedStore",
    "is_postgresql",
    "open_store",
]

#: A PostgreSQL URL, also as a path makes it (``postgresql:/host/db``: one slash fewer).
_POSTGRESQL_URL = re.compile(r"^postgres(ql)?(\+\w+)?:/", re.IGNORECASE)


class UnsupportedStore(ValueError):
    """The settings name a database this version cannot open."""


def is_postgresql(location: Path | str) -> bool:
    """Whether a database location (``NEWSLETTER_DB``, ``--db``) is a PostgreSQL URL."""
    return bool(_POSTGRESQL_URL.match(str(location)))


def open_store(where: Settings | Path | str) -> Store:
    """The store the settings (or a database location) name: a SQLite file, or a
    PostgreSQL database by its ``postgresql://`` URL. A database that cannot be opened
    raises :class:`StoreUnavailable`, in one line without the URL's password."""
    location = where.db if isinstance(where, Settings) else where
    if is_postgresql(location):
        return PostgresStore(str(location))
    return SQLiteStore(location)
