"""The delivery engine: temporary and permanent refusals, suppression, error storms, caps,
parallel connections and the sending lock, against real SMTP servers on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from aiosmtpd.controller import Controller

from newsletter.models import Status
from newsletter.sending.delivery import RunControls, SendOptions, send_edition
from newsletter.sending.ledger import Claims, Ledger
from newsletter.sending.locking import LockBusy, SendingLock
from newsletter.store import open_store
from newsletter.store.ingest import ingest_path
from newsletter.subscribers.profiles import add_subscriber

from .conftest import (
    Mailbox,
    _Collector,
    add_readers,
    free_port,
    lock_held_elsewhere,
    write_jsonl,
)

pytestmark = pytest.mark.both_stores

TODAY = date.today()
PAPER = {
    "id": "2501.00001",
    "title": "Graph neural networks",
    "abstract": "Graph neural networks on graphs.",
}


class Scripted(_Collector):
    """Answers RCPT TO with a scripted code per address; counts connections."""

    def __init__(self, box: Mailbox, answer):
        super().__init__(box)
        self.answer = answer
        self.sessions: set[int] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.sessions.add(id(session))
        code = self.answer(address)
        if code:
            return code
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture
def scripted_smtp():
    started = []

    def start(answer):
        box = Mailbox("127.0.0.1", free_port())
        handler = Scripted(box, answer)
        controller = Controller(handler, hostname=box.host, port=box.port)
        controller.start()
        started.append(controller)
        return box, handler

    yield start
    for controller in started:
        controller.stop()


def _subscribers(store, settings, tmp_path, emails):
    ingest_path(store, write_jsonl(tmp_path / "p.jsonl", [PAPER]))
    for email in emails:
        add_subscriber(store, settings, email, interests="graph neural networks")


def _smtp(settings, box, **changes):
    return replace(settings, transport=box.url, **changes)


def test_temporary_refusals_arrive_later_and_permanent_ones_are_suppressed(
    store, settings, tmp_path, scripted_smtp
):
    busy = {"t1@example.org", "t2@example.org"}
    box, _ = scripted_smtp(
        lambda a: (
            "550 5.1.1 no such user"
            if a.startswith("gone")
            else "451 4.7.1 try later"
            if a in busy
            else None
        )
    )
    emails = [
        "ok1@example.org",
        "t1@example.org",
        "gone@example.org",
        "t2@example.org",
        "ok2@example.org",
    ]
    _subscribers(store, settings, tmp_path, emails)
    first = send_edition(store, _smtp(settings, box), TODAY)
    assert first.counts == {"sent": 2, "failed": 2, "rejected": 1}
    assert store.get_subscriber("gone@example.org").status == Status.BOUNCED

    busy.clear()  # the server is fine again
    again_too_soon = send_edition(store, _smtp(settings, box), TODAY)
    assert again_too_soon.counts.get("sent", 0) == 0  # back-off: not before the next try
    an_hour_later = datetime.now(UTC) + timedelta(hours=1)  # the ledger's clock, past the back-off
    later = RunControls(now=lambda: an_hour_later)
    second = send_edition(store, _smtp(settings, box), TODAY, controls=later)
    assert second.counts == {"sent": 2, "skipped": 2}
    received = sorted(r for env in box.envelopes for r in env.rcpt_tos)
    assert received == ["ok1@example.org", "ok2@example.org", "t1@example.org", "t2@example.org"]

    # A suppressed address is never sent to again, whatever the console asks...
    forced = send_edition(
        store, _smtp(settings, box), TODAY, SendOptions(to=["gone@example.org"], force=True)
    )
    assert [o.status for o in forced.outcomes] == ["suppressed"]
    assert (
        Ledger(store).get(TODAY, store.get_subscriber("gone@example.org").id).status == "suppressed"
    )
    assert len(box.envelopes) == 4


def test_a_run_pauses_itself_when_nearly_everything_fails(store, settings, tmp_path, scripted_smtp):
    box, _ = scripted_smtp(lambda a: "451 4.3.0 overloaded")
    _subscribers(store, settings, tmp_path, [f"s{i}@example.org" for i in range(12)])
    report = send_edition(
        store, _smtp(settings, box, storm_window=4, storm_failure_share=0.75), TODAY
    )
    assert report.counts == {"failed": 4}
    assert report.stopped and "paused: 4 of the last 4 messages failed" in report.stopped
    assert not report.ok
    # The rest were never claimed: they wait for the next run.
    assert Ledger(store).counts(TODAY) == {"failed": 4}


def test_hourly_cap_stops_the_run_and_leaves_the_rest(store, settings, tmp_path, smtp_server):
    _subscribers(store, settings, tmp_path, [f"s{i}@example.org" for i in range(5)])
    capped = replace(settings, transport=smtp_server.url, max_per_hour=3)
    report = send_edition(store, capped, TODAY)
    assert report.counts == {"sent": 3}
    assert "hourly cap (3 messages)" in report.stopped
    again = send_edition(store, capped, TODAY)  # the same hour: the budget is spent
    assert again.counts.get("sent", 0) == 0
    assert len(smtp_server.envelopes) == 3


def test_per_second_cap_spaces_the_messages(store, settings, tmp_path, smtp_server):
    _subscribers(store, settings, tmp_path, [f"s{i}@example.org" for i in range(4)])
    waits: list[float] = []
    report = send_edition(
        store,
        replace(settings, transport=smtp_server.url, max_per_second=2),
        TODAY,
        controls=RunControls(sleep=lambda s: (waits.append(s), time.sleep(s))),
    )
    assert report.counts == {"sent": 4}
    assert len(waits) >= 2 and all(0 < w <= 0.5 for w in waits)


def test_parallel_connections_deliver_everything_once(store, settings, tmp_path, scripted_smtp):
    box, handler = scripted_smtp(lambda a: None)
    emails = [f"s{i}@example.org" for i in range(30)]
    _subscribers(store, settings, tmp_path, emails)
    report = send_edition(store, _smtp(settings, box, send_connections=3), TODAY)
    assert report.counts == {"sent": 30}
    assert sorted(r for env in box.envelopes for r in env.rcpt_tos) == sorted(emails)
    assert len(handler.sessions) == 3


def test_only_one_process_sends_and_a_dead_one_does_not_leave_the_lock_stuck(tmp_path):
    db = tmp_path / "newsletter.db"
    with lock_held_elsewhere(db) as holder, pytest.raises(LockBusy, match=f"pid {holder.pid}"):
        SendingLock(db).acquire()
    with SendingLock(db):  # the OS released the dead process's lock
        pass


def test_console_send_refuses_while_another_process_sends(run_cli, tmp_path):
    with SendingLock(tmp_path / "newsletter.db"):
        result = run_cli("send")
    assert result.exit_code == 1
    assert "another newsletter process" in result.output


@pytest.mark.sqlite_only("the restart finds the crash by the lock file, not by the lease")
def test_kill_9_at_random_moments_then_restart_sends_each_edition_exactly_once(
    store, settings, tmp_path, smtp_server
):
    """A sender killed with SIGKILL mid-send, several times, then restarted until done:
    everyone gets exactly one copy, except the messages the kills left unknown (at most
    one per connection per kill), which are sent again with the same Message-ID."""
    import json
    import random

    ingest_path(store, write_jsonl(tmp_path / "p.jsonl", [PAPER]))
    emails = add_readers(store, 1200, delivery_hour=7)
    env = {
        **os.environ,
        "NEWSLETTER_DB": str(settings.db),
        "NEWSLETTER_TRANSPORT": smtp_server.url,
        "NEWSLETTER_SECRET_KEY": "k" * 32,
        "NEWSLETTER_FROM": "Daily Papers <papers@example.org>",
    }
    command = [sys.executable, "-m", "newsletter", "send", "--json"]
    rng = random.Random(20261129)
    kills = 0
    for _ in range(4):
        before = len(smtp_server.envelopes)
        sender = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while (
            len(smtp_server.envelopes) < before + 20
            and sender.poll() is None
            and time.monotonic() < deadline
        ):
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.4))
        if sender.poll() is None:
            sender.kill()
            kills += 1
        sender.wait()
    final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-2000:]
    assert kills >= 3

    copies: dict[str, list[str]] = {}
    for message in smtp_server.messages:
        copies.setdefault(message["To"], []).append(message["Message-ID"])
    unknown = {e["detail"]["message_id"] for e in store.events("delivery.unknown", limit=100)}
    assert sorted(copies) == emails  # nobody skipped
    twice = {to: ids for to, ids in copies.items() if len(ids) > 1}
    assert all(len(ids) == 2 and ids[0] == ids[1] and ids[0] in unknown for ids in twice.values())
    assert len(unknown) <= kills  # one connection: at most one unknown message per kill
    assert set(json.loads(final.stdout)["unknown"]) <= set(emails)
    assert Ledger(store).counts(TODAY) == {"sent": len(emails)}


def _claim_as_another_sender(settings, now: datetime) -> Claims:
    """What a second sender, on its own connection, claims of the whole list at ``now``."""
    with open_store(settings.db) as own:
        rival = Ledger(own, now=lambda: now, owner="rival:1")
        candidates = [(s, []) for s in own.list_subscribers(Status.ACTIVE)]
        return rival.claim_next(TODAY, candidates, 50, "x", False)


def test_a_window_that_takes_longer_than_a_lease_keeps_its_claims(
    store, settings, tmp_path, scripted_smtp
):
    """A slow server: each message takes 40 s of the ledger's clock and a lease lasts 100 s.
    On PostgreSQL the whole list is claimed at once; the sender renews its leases as it
    goes, so another sender, looking while the last message is on the wire, finds nothing
    held past its lease to take over (it would send those again), and each reader gets
    one copy."""
    moment = [datetime(2030, 1, 1, 12, tzinfo=UTC)]
    emails = [f"slow{i}@example.org" for i in range(6)]
    seen_by_rival = []

    def answer(address: str) -> None:
        moment[0] += timedelta(seconds=40)
        if address == emails[-1]:
            seen_by_rival.append(_claim_as_another_sender(settings, moment[0]))

    box, _ = scripted_smtp(answer)
    _subscribers(store, settings, tmp_path, emails)
    controls = RunControls(now=lambda: moment[0])
    report = send_edition(store, _smtp(settings, box, lease_seconds=100), TODAY, controls=controls)
    assert report.counts == {"sent": 6}
    [rival] = seen_by_rival
    assert (rival.taken, rival.expired) == ([], [])
    assert sorted(r for env in box.envelopes for r in env.rcpt_tos) == sorted(emails)


def test_messages_taken_over_by_another_sender_are_not_sent_from_here(
    store, settings, tmp_path, scripted_smtp, backend
):
    """The server takes longer than a whole lease over the first message: another sender
    gives the claims up for dead and takes them. This sender then finds, when it renews,
    that the rest are no longer its own: it does not send them."""
    moment = [datetime(2030, 1, 1, 12, tzinfo=UTC)]
    emails = [f"stuck{i}@example.org" for i in range(3)]
    taken_over = []

    def answer(address: str) -> None:
        moment[0] += timedelta(seconds=120)
        if not taken_over:
            taken_over.append(_claim_as_another_sender(settings, moment[0]))

    box, _ = scripted_smtp(answer)
    _subscribers(store, settings, tmp_path, emails)
    controls = RunControls(now=lambda: moment[0])
    report = send_edition(store, _smtp(settings, box, lease_seconds=100), TODAY, controls=controls)
    assert [r for env in box.envelopes for r in env.rcpt_tos] == emails[:1]
    if backend == "postgres":  # the whole list was claimed at once, then lost
        assert report.counts == {"sent": 1, "skipped": 2}
        skipped = [o.detail for o in report.outcomes if o.status == "skipped"]
        assert skipped == ["held past its lease; another sender took it over"] * 2
    else:  # claimed one at a time: the next two were the other sender's before they were
        assert report.counts == {"sent": 1}


def test_a_sender_beside_others_makes_only_the_emails_it_claimed(
    store, settings, tmp_path, backend, monkeypatch
):
    """Another sender holds the first three messages. On PostgreSQL, where senders claim
    side by side, this one makes each email once it has claimed it, so it makes none of
    theirs (made first, a window of 500 was made twice whenever two senders met)."""
    from newsletter.mail.render import Renderer

    emails = [f"side{i}@example.org" for i in range(6)]
    _subscribers(store, settings, tmp_path, emails)
    readers = [store.get_subscriber(email) for email in emails]
    from newsletter.sending.edition import plan_edition

    plan = plan_edition(store, settings, TODAY, readers[:3])
    rival = Ledger(store, owner="rival:1")
    rival.claim_next(TODAY, [(r, plan[r.id]) for r in readers[:3]], 3, "x", False)
    made = []
    render = Renderer.render

    def counted(self, subscriber, *args, **kwargs):
        made.append(subscriber.email)
        return render(self, subscriber, *args, **kwargs)

    monkeypatch.setattr(Renderer, "render", counted)
    outbox = tmp_path / "outbox"
    report = send_edition(store, replace(settings, transport=f"outbox:{outbox}"), TODAY)
    if backend == "postgres":
        assert (report.counts["sent"], made) == (3, emails[3:])
    else:  # one sender per shard: rows left sending are a dead run's, and go again
        assert (report.counts["sent"], made) == (6, emails)
