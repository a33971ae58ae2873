"""The worker's day: each subscriber's edition at their own local hour, once, across a DST
change; a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from newsletter.models import Paper, Status, Subscriber, utcnow
from newsletter.sending.ledger import Ledger
from newsletter.sending.schedule_rules import due_edition
from newsletter.sending.worker import Worker

from .conftest import make_subscriber

ZONES = ["America/Los_Angeles", "UTC", "Asia/Kolkata", "Pacific/Auckland"]  # -8/-7, 0, +5:30, +13
START = datetime(2027, 3, 12, 0, 0, tzinfo=UTC)  # Los Angeles moves to DST on 2027-03-14


def _subscriber(i: int, zone: str, **fields) -> Subscriber:
    return make_subscriber(i, timezone=zone, **{"max_papers": 3, **fields})


def test_each_subscriber_is_due_at_their_own_hour_once_a_day_across_dst():
    readers = [_subscriber(i, zone) for i, zone in enumerate(ZONES)]
    first_due: dict[tuple[int, date], datetime] = {}
    moment = START
    while moment < START + timedelta(days=4):
        for reader in readers:
            edition = due_edition(reader, moment)
            if edition is not None:
                first_due.setdefault((reader.id, edition), moment)
        moment += timedelta(minutes=5)
    for reader in readers:
        editions = sorted(e for (rid, e) in first_due if rid == reader.id)
        assert editions == [editions[0] + timedelta(days=n) for n in range(len(editions))]
        assert len(editions) >= 3
        for edition in editions:
            local = first_due[(reader.id, edition)].astimezone(ZoneInfo(reader.timezone))
            assert local.date() == edition
            assert (local.hour, local.minute) == (7, 0) or first_due[(reader.id, edition)] == START
    la = {e: t for (rid, e), t in first_due.items() if rid == 0}
    assert la[date(2027, 3, 13)].hour == 15  # 07:00 PST is 15:00 UTC
    assert la[date(2027, 3, 14)].hour == 14  # 07:00 PDT is 14:00 UTC


def test_weekly_and_paused_readers_wait_for_their_day():
    monday = datetime(2027, 3, 15, 12, 0, tzinfo=UTC)
    weekly = _subscriber(1, "UTC", frequency="weekly", weekly_day=2)  # Wednesdays
    paused = _subscriber(2, "UTC", paused_until="2027-03-16")
    assert due_edition(weekly, monday) is None
    assert due_edition(weekly, monday + timedelta(days=2)) == date(2027, 3, 17)
    assert due_edition(paused, monday) is None
    assert due_edition(paused, monday + timedelta(days=2)) == date(2027, 3, 17)
    assert due_edition(_subscriber(3, "UTC", status=Status.PAUSED), monday) is None


def test_worker_sends_each_local_edition_once_at_the_local_hour(store, settings):
    settings = replace(settings, candidate_days=3650)
    for i, zone in enumerate(ZONES):
        store.add_subscriber(
            f"r{i}@example.org",
            status=Status.ACTIVE,
            timezone=zone,
            delivery_hour=7,
            max_papers=3,
            interests="graph neural networks",
            consent_source="test",
        )
    clock = {"now": START}
    worker = Worker(settings, clock=lambda: clock["now"])
    first_seen: dict[tuple[str, str], datetime] = {}
    tick = 0
    while clock["now"] < START + timedelta(days=3):
        tick += 1  # a new paper every hour, so every edition has something new
        store.save_paper(
            Paper(
                id=f"2703.{tick:05d}",
                title=f"Graph neural networks, part {tick}",
                abstract=f"Graph neural networks on graphs, case {tick}.",
                first_seen_at=utcnow(),
            )
        )
        worker.deliver_due()
        worker.deliver_due()  # a second tick at the same moment sends nothing more
        for row in store.db.query("SELECT edition, email, status FROM deliveries"):
            assert row["status"] == "sent"
            first_seen.setdefault((row["email"], row["edition"]), clock["now"])
        clock["now"] += timedelta(hours=1)
    for i, zone in enumerate(ZONES):
        mine = {e: t for (email, e), t in first_seen.items() if email == f"r{i}@example.org"}
        assert len(mine) >= 2
        for edition, moment in mine.items():
            local = moment.astimezone(ZoneInfo(zone))
            assert local.date().isoformat() == edition
            assert local.hour == 7 or moment == START  # the first tick catches up
    editions = {
        email: sorted(e for (who, e) in first_seen if who == email) for email, _ in first_seen
    }
    assert editions["r0@example.org"] == ["2027-03-11", "2027-03-12", "2027-03-13", "2027-03-14"]
    assert editions["r1@example.org"] == ["2027-03-12", "2027-03-13", "2027-03-14"]
    assert editions["r2@example.org"] == ["2027-03-12", "2027-03-13", "2027-03-14"]
    assert editions["r3@example.org"] == ["2027-03-12", "2027-03-13", "2027-03-14", "2027-03-15"]
    # Los Angeles moves to daylight saving time on the 14th: 07:00 is 15:00, then 14:00 UTC.
    assert first_seen[("r0@example.org", "2027-03-13")].hour == 15
    assert first_seen[("r0@example.org", "2027-03-14")].hour == 14
    assert sum(Ledger(store).counts(date(2027, 3, 13)).values()) == 4


def test_sigterm_stops_the_worker_cleanly(tmp_path):
    env = {
        **os.environ,
        "NEWSLETTER_DB": str(tmp_path / "w.db"),
        "NEWSLETTER_TRANSPORT": f"outbox:{tmp_path}/outbox",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "-v", "worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not (tmp_path / "w.db.lock").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1)
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr[-2000:]
    assert "worker started" in stderr and "worker stopped" in stderr


def test_worker_sends_again_a_message_a_crash_left_sending(store, settings, caplog):
    """A crash on the last message of an edition must not leave it 'sending' forever."""
    from newsletter.store.ingest import ingest_path

    from .conftest import write_jsonl

    paper = {
        "id": "2501.00001",
        "title": "Graph neural networks",
        "abstract": "Graph neural networks.",
    }
    ingest_path(store, write_jsonl(settings.db.parent / "p.jsonl", [paper]))
    store.add_subscriber(
        "r@example.org",
        status=Status.ACTIVE,
        timezone="UTC",
        delivery_hour=0,
        max_papers=3,
        interests="graph neural networks",
        consent_source="test",
    )
    reader = store.get_subscriber("r@example.org")
    now = datetime.now(UTC)
    edition = now.date()
    from newsletter.sending.edition import plan_edition

    picks = plan_edition(store, settings, edition, [reader])[reader.id]
    delivery = Ledger(store).claim(edition, reader, picks, "example.org", force=False)
    assert delivery is not None  # claimed, then the process died before recording

    Worker(settings, clock=lambda: now).deliver_due()

    assert "1 message(s) were left unknown" in caplog.text and "r@example.org" in caplog.text
    row = Ledger(store).get(edition, reader.id)
    assert row.status == "sent" and row.message_id == delivery.message_id
    assert store.events("delivery.unknown")[0]["subscriber_id"] == reader.id
