"""The store: the database (papers, subscribers, feedback, embeddings, the event log, the
delivery ledger's rows, rate limits), its migrations, and ingest, where what the sources
bring is merged into it and reported. Every statement of SQL in the package is here.

Callers depend on the protocols of :mod:`newsletter.store.interface` (:class:`Store`, with
its :class:`DeliveryStore`), opened by :func:`open_store`; :mod:`newsletter.store.database`
and :mod:`newsletter.store.deliveries` implement them in SQLite through sqlite-utils.

May import the base modules (``models``, ``settings``, ``tokens``, ``fetch``) and ``sources``;
nothing of a later stage (ranking, mail, subscribers, sending, the apps).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..settings import Settings
from .database import SQLiteStore
from .interface import DeliveryStore, DuplicateSubscriber, Store, SubscriberNotFound

__all__ = [
    "DeliveryStore",
    "DuplicateSubscriber",
    "Store",
    "SubscriberNotFound",
    "UnsupportedStore",
    "open_store",
]

#: A PostgreSQL URL, also as a path makes it (``postgresql:/host/db``: one slash fewer).
_POSTGRESQL_URL = re.compile(r"^postgres(ql)?(\+\w+)?:/", re.IGNORECASE)


class UnsupportedStore(ValueError):
    """The settings name a database this version cannot open."""


def open_store(where: Settings | Path | str) -> Store:
    """The store the settings (or a database location) name: a SQLite file today."""
    location = where.db if isinstance(where, Settings) else where
    if _POSTGRESQL_URL.match(str(location)):
        # The URL is not repeated: it may carry a password.
        raise UnsupportedStore(
            "a PostgreSQL database is not supported yet; set NEWSLETTER_DB (or --db) to the "
            "path of a SQLite file"
        )
    return SQLiteStore(location)
