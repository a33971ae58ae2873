"""The aggregate counts behind the operator's dashboard, ``newsletter stats`` and
``/metrics``: events per day, the ledger's rows per edition and per status. A mixin of
:class:`newsletter.store.database.SQLiteStore` (and so of the PostgreSQL store, which runs
the same SQL and names its own way of reading an event's JSON detail)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, ClassVar


class DashboardQueries:
    """Read-only counts; every day is a UTC day (the first ten characters of a timestamp)."""

    conn: Any
    #: An event's detail field ``{key}`` as text, for grouping.
    _DETAIL_TEXT: ClassVar[str] = "CAST(json_extract(detail, '$.{key}') AS TEXT)"

    def events_per_day(
        self, kinds: Collection[str], since: str, detail_key: str | None = None
    ) -> list[tuple[str, str, str | None, int]]:
        """(day, kind, the detail field ``detail_key`` as text or None, events) for the
        events of ``kinds`` from ``since`` (ISO-8601 UTC) on, oldest day first."""
        if detail_key is not None and not detail_key.isidentifier():
            raise ValueError(f"not a detail key: {detail_key!r}")
        kinds = list(kinds)
        if not kinds:
            return []
        value = self._DETAIL_TEXT.format(key=detail_key) if detail_key else "NULL"
        rows = self.conn.execute(
            f"SELECT substr(at, 1, 10) AS day, kind, {value} AS value, count(*) FROM events"
            f" WHERE at >= ? AND kind IN ({', '.join('?' * len(kinds))})"
            " GROUP BY day, kind, value ORDER BY day",
            [since, *kinds],
        )
        return [(day, kind, None if v is None else str(v), n) for day, kind, v, n in rows]

    def count_events_since(self, kinds: Collection[str], since: str) -> dict[str, int]:
        """{kind: events from ``since`` on} for ``kinds`` (a kind with none is left out)."""
        kinds = list(kinds)
        if not kinds:
            return {}
        rows = self.conn.execute(
            f"SELECT kind, count(*) FROM events WHERE at >= ?"
            f" AND kind IN ({', '.join('?' * len(kinds))}) GROUP BY kind",
            [since, *kinds],
        )
        return {kind: n for kind, n in rows}

    def deliveries_per_edition(self, since_edition: str) -> dict[str, dict[str, int]]:
        """{edition: {status: rows}} of the editions from ``since_edition`` (YYYY-MM-DD)
        on, oldest first."""
        rows = self.conn.execute(
            "SELECT edition, status, count(*) FROM deliveries WHERE edition >= ?"
            " GROUP BY edition, status ORDER BY edition",
            [since_edition],
        )
        editions: dict[str, dict[str, int]] = {}
        for edition, status, n in rows:
            editions.setdefault(edition, {})[status] = n
        return editions

    def deliveries_by_status(self) -> dict[str, int]:
        """{status: rows} of the whole ledger."""
        rows = self.conn.execute("SELECT status, count(*) FROM deliveries GROUP BY status")
        return {status: n for status, n in rows}

    def subscribers_by_status(self) -> dict[str, int]:
        """{status: subscribers} (a status with none is left out)."""
        rows = self.conn.execute("SELECT status, count(*) FROM subscribers GROUP BY status")
        return {status: n for status, n in rows}

    def search_subscribers(self, text: str, limit: int) -> list[int]:
        """The ids of the first ``limit`` subscribers whose address contains ``text``
        (case-insensitive), by address."""
        pattern = (
            "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        )
        rows = self.conn.execute(
            "SELECT id FROM subscribers WHERE lower(email) LIKE ? ESCAPE '\\'"
            " ORDER BY lower(email) LIMIT ?",
            [pattern, limit],
        )
        return [subscriber_id for (subscriber_id,) in rows]

    def subscriber_events(self, subscriber_id: int, limit: int) -> list[dict[str, Any]]:
        """The subscriber's newest ``limit`` events as (at, kind, edition, detail text),
        newest first."""
        rows = self.conn.execute(
            "SELECT at, kind, edition, detail FROM events WHERE subscriber_id = ?"
            " ORDER BY id DESC LIMIT ?",
            [subscriber_id, limit],
        )
        return [
            {"at": at, "kind": kind, "edition": edition, "detail": detail}
            for at, kind, edition, detail in rows
        ]
