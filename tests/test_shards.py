"""One edition sent by several processes: each shard of the list by its own sender, from one
ledger, against a real SMTP server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from newsletter.models import Shard
from newsletter.sending.ledger import Ledger
from newsletter.sending.locking import LockBusy, SendingLock
from newsletter.sending.worker import Worker
from newsletter.store.ingest import ingest_path

from .conftest import add_readers, lock_held_elsewhere, write_jsonl

TODAY = date.today()
PAPER = {"id": "2501.00001", "title": "Graph neural networks", "abstract": "Graph neural networks."}


def _readers(store, tmp_path, count: int) -> list[str]:
    ingest_path(store, write_jsonl(tmp_path / "p.jsonl", [PAPER]))
    return add_readers(store, count)


def test_shard_parses_and_splits_the_list_by_id():
    assert Shard.parse("1/3") == Shard(1, 3)
    assert [i for i in range(7) if i in Shard(1, 3)] == [1, 4]
    assert all(i in Shard() for i in range(7))
    for bad in ("2/2", "-1/2", "1/0", "1", "a/b"):
        with pytest.raises(ValueError, match="is not a shard"):
            Shard.parse(bad)


def test_two_shard_processes_at_once_send_everyone_exactly_once(
    store, settings, tmp_path, smtp_server
):
    emails = _readers(store, tmp_path, 120)
    env = {
        **os.environ,
        "NEWSLETTER_DB": str(settings.db),
        "NEWSLETTER_TRANSPORT": smtp_server.url,
        "NEWSLETTER_SECRET_KEY": "k" * 32,
        "NEWSLETTER_FROM": "Daily Papers <papers@example.org>",
    }
    senders = [
        subprocess.Popen(
            [sys.executable, "-m", "newsletter", "send", "--json", "--shard", f"{i}/2"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    reports = []
    for sender in senders:
        out, err = sender.communicate(timeout=120)
        assert sender.returncode == 0, err[-2000:]
        reports.append(json.loads(out))

    received = Counter(r for envelope in smtp_server.envelopes for r in envelope.rcpt_tos)
    assert sorted(received) == emails and set(received.values()) == {1}
    ids = {s.email: s.id for s in store.list_subscribers()}
    for index, report in enumerate(reports):
        sent = [o["email"] for o in report["outcomes"] if o["status"] == "sent"]
        assert sent and all(ids[email] % 2 == index for email in sent)
        assert report["stats"]["messages"] == len(sent)
    assert Ledger(store).counts(TODAY) == {"sent": len(emails)}


def test_a_second_copy_of_a_shard_is_refused_but_the_other_shard_may_run(tmp_path):
    db = tmp_path / "newsletter.db"
    with lock_held_elsewhere(db, "0/2") as holder:
        with pytest.raises(LockBusy, match=f"pid {holder.pid}.*shard 0/2"):
            SendingLock(db, Shard(0, 2)).acquire()
        with SendingLock(db, Shard(1, 2)):  # the other half runs beside it
            pass
        # The whole list, or shards of another count, overlap shard 0/2.
        for overlapping in (Shard(), Shard(0, 3)):
            with pytest.raises(LockBusy, match=f"shard 0/2: pid {holder.pid}"):
                SendingLock(db, overlapping).acquire()
    with SendingLock(db, Shard(0, 2)):  # the OS released the dead process's locks
        pass


def test_console_send_of_a_shard_refuses_while_that_shard_is_sent(run_cli, tmp_path):
    with SendingLock(tmp_path / "newsletter.db", Shard(1, 2)):
        refused = run_cli("send", "--shard", "1/2")
        whole = run_cli("send")
    assert refused.exit_code == 1 and "sending shard 1/2" in refused.output
    assert whole.exit_code == 1 and "overlaps" in whole.output


def test_a_shard_marks_unknown_only_the_messages_it_left_in_flight(store, tmp_path):
    _readers(store, tmp_path, 4)
    readers = store.list_subscribers()
    ledger = Ledger(store)
    for reader in readers:
        ledger.claim(TODAY, reader, [], "example.org", force=False)
    even = ledger.mark_unknown(Shard(0, 2))
    assert sorted(d.subscriber_id for d in even) == [r.id for r in readers if r.id % 2 == 0]
    rows = {r.id: ledger.get(TODAY, r.id).status for r in readers}
    assert {sid: status for sid, status in rows.items() if sid % 2} == {
        r.id: "sending" for r in readers if r.id % 2
    }


def test_a_worker_of_a_shard_sends_only_to_its_shard(store, settings, tmp_path):
    settings = replace(settings, candidate_days=3650)
    _readers(store, tmp_path, 10)
    clock = datetime.now(UTC)
    [report] = Worker(settings, clock=lambda: clock, shard=Shard(1, 2)).deliver_due()
    ids = {s.email: s.id for s in store.list_subscribers()}
    sent = [o.email for o in report.outcomes if o.status == "sent"]
    assert len(sent) == 5 and all(ids[email] % 2 == 1 for email in sent)


def test_shards_starting_at_the_same_instant_do_not_refuse_each_other(tmp_path):
    """Each sender checks the locks of the others by trying them for an instant: two checks
    at once must not be taken for a sender of the whole list (which sent here before)."""
    with SendingLock(tmp_path / "newsletter.db"):
        pass
    script = (
        "import sys\nfrom pathlib import Path\nfrom newsletter.sending.locking import SendingLock\n"
        "from newsletter.models import Shard\nfor _ in range(300):\n"
        "    with SendingLock(Path(sys.argv[1]), Shard(int(sys.argv[2]), 2)):\n        pass\n"
    )
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path / "newsletter.db"), str(index)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    for starter in starters:
        _, err = starter.communicate(timeout=120)
        assert starter.returncode == 0, err[-2000:]
