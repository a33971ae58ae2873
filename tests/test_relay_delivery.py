"""Sending editions through relays, batch by batch, against their APIs on a real HTTP
server on loopback (tests/relaysink.py): a batch is claimed, sent in one request and each
of its results recorded; refusals inside a batch cost only their own messages; a lost
answer or a sender killed mid-batch leaves at most that batch unknown, which the next run
sends again as the same request (on Resend, with the same idempotency key)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import date, timedelta

import pytest

from newsletter.models import Status
from newsletter.sending import ledger as ledger_module
from newsletter.sending.delivery import send_edition
from newsletter.sending.ledger import Ledger
from newsletter.settings import Settings
from newsletter.store import Store
from newsletter.store.ingest import ingest_path

from .conftest import SECRET, SENDER, add_readers, write_jsonl
from .feedserver import FeedServer, Reply
from .relaysink import POSTMARK, RESEND, RelaySink

TODAY = date.today()
PAPER = {
    "id": "2501.00001",
    "title": "Graph neural networks",
    "abstract": "Graph neural networks on graphs.",
}
PATHS = {"postmark": POSTMARK, "resend": RESEND}


def readers(store: Store, tmp_path, count: int, *special: str) -> list[str]:
    """``count`` readers of today's paper, then one per ``special`` name (``gone``,
    ``busy``...) as ``NAME@example.org``, in the order of their ids."""
    ingest_path(store, write_jsonl(tmp_path / "p.jsonl", [PAPER]))
    emails = add_readers(store, count)
    for name in special:
        store.add_subscriber(
            f"{name}@example.org",
            status=Status.ACTIVE,
            timezone="UTC",
            delivery_hour=0,
            max_papers=1,
            interests="graph neural networks",
            consent_source="test",
        )
    return emails + [f"{name}@example.org" for name in special]


def batch_recipients(sink: RelaySink, scheme: str) -> list[list[str]]:
    field = {"postmark": "To", "resend": "to"}[scheme]
    return [
        [m[field] if isinstance(m[field], str) else m[field][0] for m in r.json()]
        for r in sink.batches
    ]


@pytest.mark.parametrize("scheme", ["postmark", "resend"])
def test_an_edition_goes_in_batches_and_each_result_is_recorded(
    store: Store, settings: Settings, tmp_path, feed_server: FeedServer, scheme: str
) -> None:
    sink = RelaySink(feed_server)
    emails = readers(store, tmp_path, 9, "busy1", "gone1", "gone2")
    ledger = Ledger(store)

    report = send_edition(store, replace(settings, transport=sink.url(scheme, batch_size=5)), TODAY)

    assert report.counts == {"sent": 9, "failed": 1, "rejected": 2}
    assert report.stats.batches == 3
    assert [len(b) for b in batch_recipients(sink, scheme)] == [5, 5, 2]
    assert sorted(batch_recipients(sink, scheme)[0] + batch_recipients(sink, scheme)[1]) == sorted(
        emails[:10]
    )
    # Each message went with the Message-ID its row holds, and its id from the relay is kept.
    for to, message_id in sink.accepted:
        delivery = ledger.get(TODAY, store.get_subscriber(to).id)
        assert (delivery.status, delivery.message_id) == ("sent", message_id)
    assert ledger.counts(TODAY) == {"sent": 9, "failed": 1, "rejected": 2}
    assert store.get_subscriber("gone1@example.org").status == Status.BOUNCED
    assert store.get_subscriber("busy1@example.org").status == Status.ACTIVE
    busy = ledger.get(TODAY, store.get_subscriber("busy1@example.org").id)
    assert busy.next_attempt_at is not None  # tried again later, alone or in a batch

    again = send_edition(store, replace(settings, transport=sink.url(scheme)), TODAY)
    assert again.counts.get("sent", 0) == 0 and len(sink.batches) == 3


def test_the_relays_largest_batch_is_the_default(
    store: Store, settings: Settings, tmp_path, feed_server: FeedServer
) -> None:
    sink = RelaySink(feed_server)
    readers(store, tmp_path, 230)

    report = send_edition(store, replace(settings, transport=sink.url("resend")), TODAY)

    assert report.counts == {"sent": 230}
    assert [len(r.json()) for r in sink.batches] == [100, 100, 30]


def test_sendgrid_has_no_batch_and_gets_one_request_per_message(
    store: Store, settings: Settings, tmp_path, feed_server: FeedServer
) -> None:
    feed_server.script("/v3/mail/send", Reply(202, b"", {"X-Message-Id": "sg"}))
    readers(store, tmp_path, 4)
    url = f"sendgrid://tok@?base_url={feed_server.url('')}"

    report = send_edition(store, replace(settings, transport=url), TODAY)

    assert report.counts == {"sent": 4} and report.stats.batches == 4
    assert len(feed_server.requests) == 4


def test_a_refused_token_stops_the_run_and_fails_only_the_batch_on_the_wire(
    store: Store, settings: Settings, tmp_path, feed_server: FeedServer
) -> None:
    refused = Reply(401, b'{"ErrorCode": 10, "Message": "Bad token"}')
    feed_server.script(POSTMARK, refused)
    readers(store, tmp_path, 12)
    url = f"postmark://tok@?base_url={feed_server.url('')}&batch_size=5"

    with pytest.raises(Exception, match="refused the API token"):
        send_edition(store, replace(settings, transport=url), TODAY)

    # The batch that was refused is failed (to be retried); the rest was never claimed.
    assert Ledger(store).counts(TODAY) == {"failed": 5}
    assert len(feed_server.requests) == 1


def test_a_lost_answer_leaves_its_batch_unknown_and_the_next_run_sends_it_as_it_was(
    store: Store, settings: Settings, tmp_path, feed_server: FeedServer, monkeypatch
) -> None:
    monkeypatch.setattr(ledger_module, "RETRY_BASE", timedelta(0))  # a failure is due at once
    sink = RelaySink(feed_server, slow=2, delay=1.5)
    emails = readers(store, tmp_path, 15)
    sink.busy = {emails[2]}
    url = sink.url("resend", batch_size=5, timeout=0.5)

    first = send_edition(store, replace(settings, transport=url), TODAY)

    assert first.counts == {"sent": 9, "failed": 6}
    assert Ledger(store).counts(TODAY) == {"sent": 9, "failed": 1, "unknown": 5}
    lost = sink.batches[1]
    sink.busy.clear()

    second = send_edition(store, replace(settings, transport=sink.url("resend")), TODAY)

    assert second.counts == {"sent": 6, "skipped": 9}
    # The lost batch goes first and alone, as it was, not with the failure due before it.
    retry, after = sink.batches[3:]
    assert retry.header("Idempotency-Key") == lost.header("Idempotency-Key")
    assert retry.body == lost.body
    assert [m["to"] for m in after.json()] == [[emails[2]]]
    # The relay knew the key: everyone has exactly one copy.
    assert sorted(sink.recipients()) == emails
    assert Ledger(store).counts(TODAY) == {"sent": 15}


@pytest.mark.parametrize("scheme", ["postmark", "resend"])
def test_a_sender_killed_mid_batch_leaves_that_batch_unknown_and_sends_it_again_as_it_was(
    store: Store, settings: Settings, tmp_path, feed_server: FeedServer, scheme: str
) -> None:
    sink = RelaySink(feed_server, hold=2)
    emails = readers(store, tmp_path, 20)
    env = {
        **os.environ,
        "NEWSLETTER_DB": str(settings.db),
        "NEWSLETTER_TRANSPORT": sink.url(scheme, batch_size=5),
        "NEWSLETTER_SECRET_KEY": SECRET,
        "NEWSLETTER_FROM": SENDER,
    }
    command = [sys.executable, "-m", "newsletter", "send", "--json"]

    sender = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while not sink.held.wait(0.1):
            assert sender.poll() is None, sender.stderr.read().decode()[-2000:]
    finally:
        sender.kill()
        sender.wait()
        sender.stderr.close()
        sink.release.set()
    crashed = sink.batches[1]
    in_flight = batch_recipients(sink, scheme)[1]
    assert Ledger(store).counts(TODAY) == {"sent": 5, "sending": 5}

    final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    assert final.returncode == 0, final.stderr[-2000:]
    assert sorted(json.loads(final.stdout)["unknown"]) == sorted(in_flight)
    retry = sink.batches[2]
    assert retry.body == crashed.body  # the same messages, Message-IDs and all
    assert retry.header("Idempotency-Key") == crashed.header("Idempotency-Key")
    copies: dict[str, list[str]] = {}
    for to, message_id in sink.accepted:
        copies.setdefault(to, []).append(message_id)
    assert sorted(copies) == emails
    twice = {to for to, ids in copies.items() if len(ids) > 1}
    if scheme == "resend":
        assert not twice  # the relay knew the idempotency key
    else:
        # Postmark takes no key: the batch on the wire arrives twice, with the same ids.
        assert twice == set(in_flight)
        assert all(ids[0] == ids[1] for to, ids in copies.items() if to in twice)
    assert Ledger(store).counts(TODAY) == {"sent": 20}
