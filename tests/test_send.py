"""Sending an edition end to end: ledger, transports, idempotency and the message itself."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from newsletter.sending.delivery import RunControls, send_edition
from newsletter.sending.ledger import Ledger
from newsletter.settings import load_settings
from newsletter.sources.jsonl import paper_from_record
from newsletter.store import open_store
from newsletter.store.ingest import ingest_path
from newsletter.subscribers.profiles import add_subscriber
from newsletter.tokens import LinkSigner, email_digest

from .conftest import SECRET, SENDER, write_jsonl

TODAY = date.today()
PAPERS = [
    {
        "id": "2501.00001v2",
        "title": "<script>alert('x')</script> Spectral graph neural networks",
        "abstract": "We study spectral filters for graph neural networks and their stability.",
        "authors": ["Ada Lovelace", "Alan Turing"],
        "categories": ["cs.LG"],
    },
    {
        "id": "2501.00002",
        "title": "Continuous-depth graph neural diffusion",
        "abstract": "Graph neural diffusion models propagate features as a continuous process.",
    },
    {
        "id": "2501.00003",
        "title": "Regularity for the Schrödinger equation",
        "abstract": "We prove well-posedness and regularity of nonlinear Schrödinger equations.",
    },
]


@pytest.fixture
def smtp_env(smtp_server) -> dict[str, str]:
    return {
        "NEWSLETTER_TRANSPORT": smtp_server.url,
        "NEWSLETTER_SECRET_KEY": SECRET,
        "NEWSLETTER_FROM": SENDER,
        "NEWSLETTER_BASE_URL": "https://papers.example.org",
    }


@pytest.fixture
def populated(tmp_path, run_cli):
    """Papers ingested and two subscribers added, through the CLI."""
    feed = write_jsonl(tmp_path / "papers.jsonl", PAPERS)
    assert run_cli("ingest", str(feed)).exit_code == 0
    for email, interests in [
        ("gnn@example.org", "graph neural networks, spectral filters"),
        ("pde@example.org", "nonlinear Schrödinger equations, regularity"),
    ]:
        assert run_cli("subscribers", "add", email, "--interests", interests).exit_code == 0
    return tmp_path


def test_round_trip_through_smtp_delivers_multipart_with_escaped_title(
    populated, run_cli, smtp_env, smtp_server
):
    result = run_cli("send", env=smtp_env)
    assert result.exit_code == 0, result.output

    received = {m["To"]: m for m in smtp_server.messages}
    assert set(received) == {"gnn@example.org", "pde@example.org"}
    assert [env.rcpt_tos for env in smtp_server.envelopes] == [
        ["gnn@example.org"],
        ["pde@example.org"],
    ]

    message = received["gnn@example.org"]
    assert message.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert" in html
    assert "Spectral graph neural networks" in text
    assert "Regularity for the Schrödinger equation" not in text  # not this reader's interest
    assert "Schrödinger" in received["pde@example.org"]["Subject"]


def test_unsubscribe_link_in_email_verifies_for_that_subscriber(
    populated, run_cli, smtp_env, smtp_server
):
    run_cli("send", env=smtp_env)
    message = next(m for m in smtp_server.messages if m["To"] == "gnn@example.org")
    html = message.get_body(("html",)).get_content()
    urls = re.findall(r'href="(https://papers\.example\.org/unsubscribe/[^"]+)"', html)
    assert len(urls) == 1
    assert f"<{urls[0]}>" in message["List-Unsubscribe"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    with open_store(populated / "newsletter.db") as store:
        subscriber = store.get_subscriber("gnn@example.org")
    token = urls[0].rsplit("/", 1)[1]
    link = LinkSigner(SECRET).read("unsubscribe", token)
    assert (link.subscriber_id, link.email_digest) == (
        subscriber.id,
        email_digest(subscriber.email),
    )


def test_second_send_same_day_sends_nothing_and_force_sends_again(
    populated, run_cli, smtp_env, smtp_server
):
    assert run_cli("send", env=smtp_env).exit_code == 0
    assert len(smtp_server.envelopes) == 2
    first_ids = {m["Message-ID"] for m in smtp_server.messages}

    again = run_cli("send", env=smtp_env)
    assert again.exit_code == 0
    assert len(smtp_server.envelopes) == 2
    assert again.output.count("already sent") == 2

    forced = run_cli("send", "--force", "--to", "gnn@example.org", env=smtp_env)
    assert forced.exit_code == 0, forced.output
    assert len(smtp_server.envelopes) == 3
    resent = smtp_server.messages[-1]
    assert resent["To"] == "gnn@example.org"
    assert resent["Message-ID"] not in first_ids  # a new send, not a duplicate to drop


def test_real_send_without_secret_key_refuses_and_sends_nothing(
    populated, run_cli, smtp_env, smtp_server
):
    env = {**smtp_env, "NEWSLETTER_SECRET_KEY": ""}
    result = run_cli("send", env=env)
    assert result.exit_code == 1
    assert "NEWSLETTER_SECRET_KEY" in result.output
    assert smtp_server.envelopes == []


def test_smtp_refuses_to_send_password_without_tls(populated, run_cli, smtp_env, smtp_server):
    env = {**smtp_env, "NEWSLETTER_TRANSPORT": f"smtp://user:secret@127.0.0.1:{smtp_server.port}"}
    result = run_cli("send", env=env)
    assert result.exit_code == 1
    assert "refusing to send the password in clear" in result.output
    assert smtp_server.envelopes == []
    # The message that was about to go is recorded as failed, so the next run retries it.
    with open_store(populated / "newsletter.db") as store:
        counts = Ledger(store).counts(TODAY)
    assert counts == {"failed": 1}


@pytest.mark.parametrize(
    "password", ["S3cr/etPass", "S3cr#etPass", "S3cr?etPass", "S3cr[etPass", "S3cr\uff0fetPass"]
)
def test_a_malformed_transport_url_is_reported_without_its_password(
    populated, run_cli, smtp_env, password
):
    env = {**smtp_env, "NEWSLETTER_TRANSPORT": f"smtp://mailer:{password}@127.0.0.1:2525"}

    result = run_cli("send", "--dry-run", env=env)

    assert result.exit_code == 1
    assert "smtp://mailer:***@127.0.0.1:2525" in result.stderr
    assert "percent-encoded" in result.stderr
    assert "S3cr" not in result.output and "etPass" not in result.output
    assert "Traceback" not in result.output


def test_failed_delivery_is_retried_once_its_back_off_has_passed(
    populated, run_cli, smtp_env, smtp_server
):
    env = {**smtp_env, "NEWSLETTER_TRANSPORT": f"smtp://user:secret@127.0.0.1:{smtp_server.port}"}
    run_cli("send", env=env)
    with open_store(populated / "newsletter.db") as store:
        (row,) = store.db.query("select * from deliveries")
    assert row["status"] == "failed" and row["next_attempt_at"] > row["updated_at"]

    too_soon = run_cli("send", env=smtp_env)
    assert "next try after" in too_soon.output
    assert [m["To"] for m in smtp_server.messages] == ["pde@example.org"]

    # An hour later (the ledger's clock), past the back-off: `newsletter send` again.
    an_hour_later = datetime.now(UTC) + timedelta(hours=1)
    settings = load_settings(smtp_env, db=populated / "newsletter.db")
    with open_store(settings) as store:
        report = send_edition(
            store, settings, TODAY, controls=RunControls(now=lambda: an_hour_later)
        )
    assert report.ok, report.to_dict()
    assert sorted(m["To"] for m in smtp_server.messages) == ["gnn@example.org", "pde@example.org"]
    with open_store(populated / "newsletter.db") as store:
        (row,) = store.db.query("select * from deliveries where email = 'gnn@example.org'")
    assert (row["status"], row["attempts"]) == ("sent", 2)


def test_dry_run_sends_and_records_nothing(populated, run_cli, smtp_env, smtp_server):
    result = run_cli("send", "--dry-run", env=smtp_env)
    assert result.exit_code == 0
    assert result.output.count("· would-send") == 2
    assert smtp_server.envelopes == []
    assert run_cli("send", env=smtp_env).exit_code == 0
    assert len(smtp_server.envelopes) == 2


def test_limit_caps_the_number_of_emails_and_the_rest_go_next_run(
    populated, run_cli, smtp_env, smtp_server
):
    run_cli("send", "--limit", "1", env=smtp_env)
    assert len(smtp_server.envelopes) == 1
    run_cli("send", env=smtp_env)
    assert sorted(m["To"] for m in smtp_server.messages) == ["gnn@example.org", "pde@example.org"]


def test_subscriber_with_nothing_relevant_gets_no_email(store, settings, tmp_path):
    ingest_path(store, write_jsonl(tmp_path / "p.jsonl", PAPERS))
    add_subscriber(store, settings, "bio@example.org", interests="protein folding in yeast")
    report = send_edition(store, settings, TODAY)
    assert [(o.email, o.status) for o in report.outcomes] == [("bio@example.org", "skipped")]
    assert "no new paper" in report.outcomes[0].detail
    assert not (tmp_path / "outbox").exists() or not list((tmp_path / "outbox").rglob("*.eml"))
    assert (
        store.events("edition.empty")[0]["subscriber_id"]
        == store.get_subscriber("bio@example.org").id
    )
    send_edition(store, settings, TODAY)  # the worker looks again at every tick...
    assert len(store.events("edition.empty")) == 1  # ...and the log says it once


def test_papers_sent_yesterday_are_not_sent_again_today(store, settings, tmp_path):
    yesterday = date.fromordinal(TODAY.toordinal() - 1)
    seen_yesterday = f"{yesterday.isoformat()}T06:00:00.000000+00:00"
    for record in PAPERS:
        store.save_paper(replace(paper_from_record(record, "test"), first_seen_at=seen_yesterday))
    add_subscriber(store, settings, "gnn@example.org", interests="graph neural networks")
    assert send_edition(store, settings, yesterday).counts == {"sent": 1}

    assert send_edition(store, settings, TODAY).counts == {"skipped": 1}

    fresh = {
        "id": "2501.00009",
        "title": "Graph neural networks at scale",
        "abstract": "Graph neural networks for huge graphs.",
    }
    ingest_path(store, write_jsonl(tmp_path / "q.jsonl", [fresh]))
    assert send_edition(store, settings, TODAY).counts == {"sent": 1}
    delivery = Ledger(store).get(TODAY, store.get_subscriber("gnn@example.org").id)
    assert delivery.paper_ids == ["2501.00009"]


def test_outbox_writes_one_eml_and_html_per_message(store, settings, tmp_path):
    ingest_path(store, write_jsonl(tmp_path / "p.jsonl", PAPERS))
    add_subscriber(store, settings, "gnn@example.org", interests="graph neural networks")
    add_subscriber(store, settings, "pde@example.org", interests="Schrödinger equations")
    send_edition(store, settings, TODAY)
    folder = tmp_path / "outbox" / TODAY.isoformat()
    emls = sorted(p.name.split("--")[0] for p in folder.glob("*.eml"))
    assert emls == ["gnn@example.org", "pde@example.org"]
    assert len(list(folder.glob("*.html"))) == 2
    assert not list(folder.glob(".tmp-*"))  # written atomically, no leftovers


def test_a_new_subscriber_who_gets_a_removed_ones_row_id_gets_new_message_ids(
    store, settings, tmp_path
):
    ingest_path(store, write_jsonl(tmp_path / "p.jsonl", PAPERS))
    first = add_subscriber(store, settings, "old@example.org", interests="graph neural networks")
    send_edition(store, settings, TODAY)
    old_id = Ledger(store).get(TODAY, first.id).message_id
    store.remove_subscriber(first.id)
    second = add_subscriber(store, settings, "new@example.org", interests="graph neural networks")
    assert second.id == first.id  # SQLite reuses the highest row id
    send_edition(store, settings, TODAY)
    assert Ledger(store).get(TODAY, second.id).message_id != old_id
