"""Several senders on one PostgreSQL database, as on several hosts: they share an edition by
claiming batches of rows, one of them is killed again and again, and the database goes away
mid-edition. A real server (the session's), real processes, a real SMTP sink on loopback."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date

import pytest

from newsletter.sending.ledger import Ledger
from newsletter.store import Store, open_store
from newsletter.store.ingest import ingest_path
from newsletter.store.postgres import PostgresDeliveries, close_pools

from .conftest import Mailbox, PostgresServer, add_readers, write_jsonl

TODAY = date.today()
PAPER = {
    "id": "2501.00001",
    "title": "Graph neural networks",
    "abstract": "Graph neural networks on graphs.",
}
#: Short leases, so that a killed sender's claims run out within the test.
LEASE_SECONDS = 5


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    yield postgres_server.fresh_database()
    close_pools()


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    with open_store(pg_url) as store:
        yield store


def _sender_env(url: str, sink: Mailbox, **more: str) -> dict[str, str]:
    return {
        **os.environ,
        "NEWSLETTER_DB": url,
        "NEWSLETTER_TRANSPORT": sink.url,
        "NEWSLETTER_SECRET_KEY": "k" * 32,
        "NEWSLETTER_FROM": "Daily Papers <papers@example.org>",
        "NEWSLETTER_LEASE_SECONDS": str(LEASE_SECONDS),
        "NEWSLETTER_SEND_CONNECTIONS": "2",
        # Slow enough that the five kills and restarts land while the edition goes out.
        "NEWSLETTER_MAX_PER_SECOND": "40",
        **more,
    }


SEND = [sys.executable, "-m", "newsletter", "send", "--json"]


def _start(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(SEND, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _holds_claims(store: Store, pid: int) -> bool:
    return any(
        (h.owner or "").endswith(f":{pid}") for h in store.deliveries.holders(TODAY.isoformat())
    )


def test_three_senders_one_killed_five_times_send_everyone_exactly_once(
    pg_store, pg_url, tmp_path, smtp_server, run_cli
):
    """3 senders on an edition of 3,000; one is killed with SIGKILL at random moments while
    it holds claims, 5 times, and restarted. Every subscriber gets exactly one copy, except
    the messages of the killed sender's open window (claimed, answered, not yet recorded),
    which arrive again with the same Message-ID and which ``status`` lists; ``status`` names
    a dead sender's claims."""
    ingest_path(pg_store, write_jsonl(tmp_path / "p.jsonl", [PAPER]))
    emails = add_readers(pg_store, 3000)
    env = _sender_env(pg_url, smtp_server)
    rng = random.Random(20261203)
    steady = [_start(env), _start(env)]
    victim = _start(env)
    kills, named_dead = 0, 0
    deadline = time.monotonic() + 90
    while kills < 5 and victim.poll() is None and time.monotonic() < deadline:
        if not _holds_claims(pg_store, victim.pid):
            time.sleep(0.005)
            continue
        time.sleep(rng.uniform(0, 0.15))
        if victim.poll() is not None:
            break
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        kills += 1
        status = run_cli("--db", pg_url, "status")
        named_dead += f":{victim.pid}: " in status.output
        victim = _start(env)
    runs = [(*p.communicate(timeout=120), p.returncode) for p in [*steady, victim]]
    for _, stderr, code in runs:
        assert code == 0, stderr.decode()[-2000:]
    assert kills == 5 and named_dead >= 1
    reports = [json.loads(out) for out, _, _ in runs]
    assert all(r["counts"].get("sent", 0) > 0 for r in reports)  # all three sent their share

    # The last kill's claims may have outlived every sender: the next run, after the
    # lease, sends them (any run would: a worker's next look, a send on another host).
    copies = _send_after_the_lease(env, smtp_server)
    assert sorted(copies) == emails  # nobody skipped
    unknown = {e["detail"]["message_id"] for e in pg_store.events("delivery.unknown", limit=1000)}
    again = {to: ids for to, ids in copies.items() if len(ids) > 1}
    # Each copy after the first is the same message (one Message-ID), left unknown by a
    # kill: at most one window per kill (its answers are recorded with the next claim); a
    # window sent again and killed again arrives once more.
    assert all(len(set(ids)) == 1 and ids[0] in unknown for ids in again.values())
    extra = sum(len(ids) - 1 for ids in again.values())
    assert extra <= kills * PostgresDeliveries.claim_batch
    assert Ledger(pg_store).counts(TODAY) == {"sent": len(emails)}
    listed = run_cli("--db", pg_url, "status").output
    assert all(ids[0] in listed for ids in again.values())


def _send_after_the_lease(env: dict[str, str], smtp_server) -> dict[str, list[str]]:
    """Once every lease has run out, one more send (it sends what dead senders held); then
    the Message-IDs the sink received, by address."""
    time.sleep(LEASE_SECONDS + 0.5)
    final = subprocess.run(SEND, env=env, capture_output=True, timeout=120)
    assert final.returncode == 0, final.stderr.decode()[-2000:]
    copies: dict[str, list[str]] = {}
    for message in smtp_server.messages:
        copies.setdefault(message["To"], []).append(message["Message-ID"])
    return copies


def test_a_database_lost_mid_edition_stops_the_sender_and_loses_no_claim(
    pg_store, pg_url, tmp_path, smtp_server
):
    """The server ends the sender's connections mid-send (as a restart or a failover
    would): the sender stops with one line, without the password; its claims run out and
    the next run sends them, the ones that may have gone with the same Message-ID."""
    import psycopg

    ingest_path(pg_store, write_jsonl(tmp_path / "p.jsonl", [PAPER]))
    emails = add_readers(pg_store, 600)
    env = _sender_env(pg_url, smtp_server, PGAPPNAME="doomed-sender")
    sender = _start(env)
    deadline = time.monotonic() + 60
    while len(smtp_server.envelopes) < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'doomed-sender'"
        )
    _, stderr = sender.communicate(timeout=60)
    error = stderr.decode().strip().splitlines()
    assert sender.returncode == 1
    assert error[-1].startswith("Error: lost the PostgreSQL database: ")
    assert "Traceback" not in stderr.decode() and "test-pg-password" not in stderr.decode()
    assert len(smtp_server.envelopes) < len(emails)  # stopped mid-edition
    with open_store(pg_url) as store:
        assert store.deliveries.counts(TODAY.isoformat()).get("sending", 0) >= 1

    copies = _send_after_the_lease(env, smtp_server)
    assert sorted(copies) == emails
    with open_store(pg_url) as store:
        unknown = {e["detail"]["message_id"] for e in store.events("delivery.unknown", limit=1000)}
        assert Ledger(store).counts(TODAY) == {"sent": len(emails)}
    again = [ids for ids in copies.values() if len(ids) > 1]
    assert all(len(ids) == 2 and ids[0] == ids[1] and ids[0] in unknown for ids in again)
