"""The delivery ledger's rules on its own, with its clock in the test's hands, and the store
it stands on."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from newsletter.cli import _refusal_sentence
from newsletter.models import Delivery, DeliveryStatus, Status, Subscriber
from newsletter.sending.ledger import (
    LEASE,
    MAX_ATTEMPTS,
    ClaimRefusal,
    Ledger,
    Refusal,
)
from newsletter.store import Store, StoreUnavailable, open_store
from newsletter.transports import SendResult

pytestmark = pytest.mark.both_stores

EDITION = date(2027, 3, 15)
DOMAIN = "example.org"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.moment = datetime(2027, 3, 15, 7, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def reader(store: Store) -> Subscriber:
    return store.add_subscriber(
        "ada@example.org",
        status=Status.ACTIVE,
        timezone="UTC",
        delivery_hour=7,
        max_papers=3,
        consent_source="test",
    )


def claim(ledger: Ledger, reader: Subscriber, force: bool = False) -> Delivery | Refusal:
    return ledger.claim(EDITION, reader, [], DOMAIN, force=force)


def test_a_failed_message_waits_for_its_next_try_by_the_ledgers_clock(store, reader, clock):
    ledger = Ledger(store, now=clock, owner="test:1")
    first = claim(ledger, reader)
    assert isinstance(first, Delivery)
    ledger.record(first, SendResult("failed", error="451 try later"))

    refused = claim(ledger, reader)
    assert isinstance(refused, Refusal) and refused.reason == ClaimRefusal.NOT_YET
    assert refused.delivery.last_error == "451 try later"

    clock.advance(minutes=7)  # the first back-off is 5 minutes, give or take a fifth
    again = claim(ledger, reader)
    assert isinstance(again, Delivery)
    assert (again.attempts, again.message_id) == (2, first.message_id)


def test_a_message_that_keeps_failing_is_given_up(store, reader, clock):
    ledger = Ledger(store, now=clock)
    for _ in range(MAX_ATTEMPTS):
        delivery = claim(ledger, reader)
        assert isinstance(delivery, Delivery)
        ledger.record(delivery, SendResult("failed", error="451 try later"))
        clock.advance(hours=3)

    refused = claim(ledger, reader)
    assert isinstance(refused, Refusal) and refused.reason == ClaimRefusal.GAVE_UP
    assert refused.delivery.attempts == MAX_ATTEMPTS


def test_a_sent_message_is_refused_unless_forced_which_gives_a_new_message_id(store, reader, clock):
    ledger = Ledger(store, now=clock)
    first = claim(ledger, reader)
    assert isinstance(first, Delivery)
    ledger.record(first, SendResult("sent", "250 queued"))

    refused = claim(ledger, reader)
    assert isinstance(refused, Refusal) and refused.reason == ClaimRefusal.ALREADY_SENT
    assert refused.delivery.message_id == first.message_id
    forced = claim(ledger, reader, force=True)
    assert isinstance(forced, Delivery) and forced.message_id != first.message_id
    assert forced.send_count == 2


def test_a_claim_writes_its_lease_and_a_crash_names_the_holder(store, reader, clock, backend):
    ledger = Ledger(store, now=clock, owner="host-a:4242")
    delivery = claim(ledger, reader)
    assert isinstance(delivery, Delivery)
    assert delivery.lease_owner == "host-a:4242"
    assert datetime.fromisoformat(delivery.lease_expires_at) == clock() + LEASE
    assert ledger.get(EDITION, reader.id) == delivery

    refused = claim(Ledger(store, now=clock, owner="host-b:7"), reader)
    assert isinstance(refused, Refusal) and refused.reason == ClaimRefusal.BEING_SENT
    assert "host-a:4242" in _refusal_sentence(refused)

    if backend == "postgres":
        # Senders on other hosts share the ledger: a row is left by a dead holder only when
        # its lease has run out (on SQLite the shard's lock says so at once).
        assert Ledger(store, now=clock).mark_unknown() == []
        clock.advance(seconds=LEASE.total_seconds())
    (unknown,) = Ledger(store, now=clock).mark_unknown()
    assert unknown.id == delivery.id
    assert store.events("delivery.unknown")[0]["detail"]["claimed_by"] == "host-a:4242"
    assert ledger.get(EDITION, reader.id).status == DeliveryStatus.UNKNOWN


def test_the_console_words_every_refusal_its_own_way(store, reader):
    row = Ledger(store).claim(EDITION, reader, [], DOMAIN, force=False)
    assert isinstance(row, Delivery)
    sentences = {_refusal_sentence(Refusal(reason, row)) for reason in ClaimRefusal}
    assert len(sentences) == len(ClaimRefusal) and all(sentences)


def test_a_wrong_postgresql_url_or_password_is_refused_in_one_line_without_it(postgres_server):
    unreachable = "postgresql://newsletter:s3cret@127.0.0.1:1/newsletter"
    with pytest.raises(StoreUnavailable, match="cannot open the PostgreSQL database") as refused:
        open_store(unreachable)
    assert "s3cret" not in str(refused.value) and "\n" not in str(refused.value)
    wrong_password = postgres_server.url(password="not-the-password")
    with pytest.raises(StoreUnavailable, match="password authentication failed") as refused:
        open_store(wrong_password)
    assert "not-the-password" not in str(refused.value)


def test_the_console_refuses_an_unreachable_postgresql_url_in_one_line(run_cli, tmp_path):
    result = run_cli("--db", "postgresql://newsletter:s3cret@127.0.0.1:1/newsletter", "status")
    assert result.exit_code == 1
    assert "cannot open the PostgreSQL database" in result.stderr
    assert "Traceback" not in result.output and "s3cret" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing made on the way


def test_a_postgresql_schema_newer_than_the_code_is_refused(postgres_server):
    import psycopg

    url = postgres_server.fresh_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (999)")
    with pytest.raises(StoreUnavailable, match="schema version 999 is newer"):
        open_store(url)


def test_senders_claiming_the_same_edition_at_once_claim_each_message_once(settings):
    """Two senders, each with its own connection, race through the same list: the unique
    key of (edition, subscriber) leaves each message to exactly one of them."""
    import threading

    from .conftest import add_readers

    with open_store(settings.db) as store:
        add_readers(store, 200)
        readers = store.list_subscribers()
    claimed: dict[str, list[int]] = {"a": [], "b": []}

    def sender(name: str) -> None:
        with open_store(settings.db) as own:
            ledger = Ledger(own, owner=f"host-{name}:1")
            for reader in readers:
                result = ledger.claim(EDITION, reader, [], DOMAIN, force=False)
                if isinstance(result, Delivery):
                    claimed[name].append(reader.id)

    threads = [threading.Thread(target=sender, args=(name,)) for name in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed["a"] + claimed["b"]) == [r.id for r in readers]
    with open_store(settings.db) as store:
        assert store.deliveries.counts(EDITION.isoformat()) == {"sending": 200}


def test_senders_claiming_the_next_messages_in_batches_take_each_once(settings, backend):
    """Three senders take the next free messages of one list, a batch per transaction,
    until none is left: on PostgreSQL they skip the rows another one is claiming."""
    import threading

    from .conftest import add_readers

    with open_store(settings.db) as store:
        add_readers(store, 300)
        candidates = [(reader, []) for reader in store.list_subscribers()]
    claimed: dict[str, list[int]] = {"a": [], "b": [], "c": []}

    def sender(name: str) -> None:
        with open_store(settings.db) as own:
            ledger = Ledger(own, owner=f"host-{name}:1")
            position = 0
            while position < len(candidates):
                claims = ledger.claim_next(EDITION, candidates, 50, DOMAIN, False, start=position)
                assert claims.consumed > position
                position = claims.consumed
                claimed[name] += [sid for sid, d in claims.taken if isinstance(d, Delivery)]
                assert len(claims.taken) <= 50

    threads = [threading.Thread(target=sender, args=(name,)) for name in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = claimed["a"] + claimed["b"] + claimed["c"]
    assert sorted(every) == sorted(r.id for r, _ in candidates)
    with open_store(settings.db) as store:
        assert store.deliveries.counts(EDITION.isoformat()) == {"sending": 300}


def test_a_claim_starts_where_told_and_looks_past_a_long_run_of_held_messages(store):
    """A claim takes the first free messages from ``start`` on (at most ``limit``) and says
    where the next one starts; 300 messages in a row held by another sender are passed over
    in one claim."""
    from .conftest import add_readers

    add_readers(store, 400)
    candidates = [(reader, []) for reader in store.list_subscribers()]
    ids = [reader.id for reader, _ in candidates]
    other = Ledger(store, owner="host-a:1")
    held = other.claim_next(EDITION, candidates, 300, DOMAIN, force=False, start=10)
    assert [sid for sid, _ in held.taken] == ids[10:310]
    assert held.consumed == 310
    mine = Ledger(store, owner="host-b:2")
    first = mine.claim_next(EDITION, candidates, 1, DOMAIN, force=False)
    assert ([sid for sid, _ in first.taken], first.consumed) == ([ids[0]], 1)
    after = mine.claim_next(EDITION, candidates, 1, DOMAIN, force=False, start=9)
    assert ([sid for sid, _ in after.taken], after.consumed) == ([ids[9]], 10)
    past = mine.claim_next(EDITION, candidates, 1, DOMAIN, force=False, start=10)
    assert ([sid for sid, _ in past.taken], past.consumed) == ([ids[310]], 311)
    rest = mine.claim_next(EDITION, candidates, 500, DOMAIN, force=False, start=311)
    assert [sid for sid, _ in rest.taken] == ids[311:]
    gaps = mine.claim_next(EDITION, candidates, 500, DOMAIN, force=False)
    assert ([sid for sid, _ in gaps.taken], gaps.consumed) == (ids[1:9], 9)
    none_left = mine.claim_next(EDITION, candidates, 5, DOMAIN, force=False)
    assert (none_left.taken, none_left.consumed) == ([], len(candidates))


@pytest.mark.sqlite_only("SQLite's query planner")
def test_a_claim_on_sqlite_finds_its_rows_by_subscriber_not_by_reading_every_sent_one(
    tmp_path,
):
    """With thousands of messages of the edition sent, a claim looks its few candidates up
    by (edition, subscriber): SQLite's planner, without statistics, would otherwise read
    every sent row of the edition at each claim, which made a long list quadratic."""
    from .conftest import add_readers

    with open_store(tmp_path / "plan.db") as store:
        add_readers(store, 2000)
        candidates = [(reader, []) for reader in store.list_subscribers()]
        ledger = Ledger(store)
        claims = ledger.claim_next(EDITION, candidates, 1900, DOMAIN, force=False)
        ledger.record_many([(d, SendResult("sent")) for _, d in claims.taken])
        statements: list[str] = []
        store.conn.set_trace_callback(statements.append)
        ledger.claim_next(EDITION, candidates, 1, DOMAIN, force=False, start=claims.consumed)
        store.conn.set_trace_callback(None)
        [lookup] = [s for s in statements if s.startswith("SELECT subscriber_id FROM deliveries")]
        plan = " ".join(row[3] for row in store.conn.execute(f"EXPLAIN QUERY PLAN {lookup}"))
    assert "(edition=? AND subscriber_id=?)" in plan, plan


def test_a_dead_senders_expired_claims_are_taken_by_the_next_claim_as_unknown(store, clock):
    from .conftest import add_readers

    add_readers(store, 3)
    candidates = [(reader, []) for reader in store.list_subscribers()]
    dead = Ledger(store, now=clock, owner="host-a:1", lease=timedelta(seconds=30))
    first = dead.claim_next(EDITION, candidates, 2, DOMAIN, force=False)
    assert [sid for sid, _ in first.taken] == [r.id for r, _ in candidates[:2]]
    alive = Ledger(store, now=clock, owner="host-b:2", lease=timedelta(seconds=30))
    clock.advance(seconds=10)
    (only,) = alive.claim_next(EDITION, candidates, 5, DOMAIN, force=False).taken
    assert only[0] == candidates[2][0].id  # the others are held under a live lease
    clock.advance(seconds=25)
    later = alive.claim_next(EDITION, candidates, 5, DOMAIN, force=False)
    assert sorted(d.id for d in later.expired) == sorted(d.id for _, d in first.taken)
    again = dict(later.taken)
    for subscriber_id, delivery in first.taken:
        assert again[subscriber_id].message_id == delivery.message_id
        assert again[subscriber_id].lease_owner == "host-b:2"
    unknown = store.events("delivery.unknown")
    assert {e["detail"]["claimed_by"] for e in unknown} == {"host-a:1"}


def test_claims_released_unsent_are_as_if_never_taken(store, reader, clock):
    ledger = Ledger(store, now=clock)
    first = claim(ledger, reader)
    ledger.release([first])
    assert ledger.get(EDITION, reader.id) is None
    failed = claim(ledger, reader)
    ledger.record(failed, SendResult("failed", error="busy"))
    clock.advance(hours=2)
    again = claim(ledger, reader)
    assert again.attempts == 2
    ledger.release([again])
    row = ledger.get(EDITION, reader.id)
    assert (row.status, row.attempts) == ("failed", 1)
    assert datetime.fromisoformat(row.next_attempt_at) == clock()  # due at once
    assert claim(ledger, reader).message_id == first.message_id
