"""``newsletter db copy``: SQLite to PostgreSQL and back, every table, counts checked."""

from __future__ import annotations

from datetime import date

from newsletter.models import Status
from newsletter.sending.ledger import Ledger
from newsletter.store import open_store
from newsletter.store.copy import TABLES
from newsletter.transports import SendResult

from .conftest import add_readers, make_paper


def _fill(location: str) -> dict[str, int]:
    with open_store(location) as store:
        store.set_meta("worker.next_run", "2027-03-15T07:00:00+00:00")
        with store.transaction():
            for n in range(1, 4):
                store.save_paper(make_paper(n))
        add_readers(store, 3)
        reader = store.get_subscriber("reader0001@example.org")
        store.set_feedback(reader.id, "2501.00001", 1)
        store.save_embeddings("paper_embeddings", "paper_id", "m", [("2501.00002", "h", b"\0\1")])
        store.save_embeddings("profile_embeddings", "subscriber_id", "m", [(reader.id, "h", b"\2")])
        store.take_rate_limit_slot("subscribe-ip:203.0.113.7", 5, 0.0, 100.5)
        store.record_mail("<dsn-1@mx.example.org>", "hard_bounce", "reader0001@example.org")
        ledger = Ledger(store)
        delivery = ledger.claim(date(2027, 3, 15), reader, [], "example.org", force=False)
        ledger.record(delivery, SendResult("sent", "250 ok"))  # type: ignore[arg-type]
        return {table: store.count(table) for table in TABLES}


def test_a_database_is_copied_to_postgresql_and_back_whole(run_cli, tmp_path, postgres_server):
    counts = _fill(str(tmp_path / "source.db"))
    assert all(counts.values())
    empty = postgres_server.empty_database()

    result = run_cli("db", "copy", str(tmp_path / "source.db"), empty)
    assert result.exit_code == 0, result.output
    assert "the counts of both databases agree" in result.stdout
    with open_store(empty) as store:
        assert {table: store.count(table) for table in TABLES} == counts
        reader = store.get_subscriber("READER0001@example.org")
        assert store.feedback([reader.id]) == {reader.id: {"2501.00001": 1}}
        assert store.embeddings("paper_embeddings", "paper_id", "m", ["2501.00002"]) == {
            "2501.00002": ("h", b"\0\1")
        }
        # The ids the copy brought are not given again.
        added = store.add_subscriber(
            "new@example.org",
            status=Status.ACTIVE,
            timezone="UTC",
            delivery_hour=7,
            max_papers=3,
            consent_source="test",
        )
        assert added.id > max(s.id for s in store.list_subscribers() if s.id != added.id)

    back = tmp_path / "back.db"
    result = run_cli("db", "copy", empty, str(back))
    assert result.exit_code == 0, result.output
    with open_store(back) as store:
        assert store.count("subscribers") == counts["subscribers"] + 1
        assert store.deliveries.counts("2027-03-15") == {"sent": 1}


def test_a_copy_into_a_database_that_is_not_empty_is_refused(run_cli, tmp_path, postgres_server):
    _fill(str(tmp_path / "source.db"))
    target = postgres_server.fresh_database()
    with open_store(target) as store:
        store.set_meta("something", "here")
    result = run_cli("db", "copy", str(tmp_path / "source.db"), target)
    assert result.exit_code == 1
    assert "the target database is not empty (meta)" in result.stderr
    with open_store(target) as store:
        assert store.count("papers") == 0
