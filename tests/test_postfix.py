"""An edition sent through a real Postfix on loopback and read back from a local mailbox,
Postfix's own bounce of it read back by ``newsletter bounces scan``, and
deploy/postfix/main.cf.example read by Postfix itself.

.ci/run installs Postfix ("Local only"), has it deliver mail for example.test to the local
user newsletter-test (the mbox /var/mail/newsletter-test), starts it on 127.0.0.1:25 and
exports NEWSLETTER_TEST_POSTFIX and NEWSLETTER_TEST_MAILBOX. Without them, or without a
Postfix answering there, the end-to-end test is skipped (fails under
NEWSLETTER_REQUIRE_TOOLS=1).
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import os
import socket
import subprocess
import time
import uuid
from dataclasses import replace
from datetime import date
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

import email_validator
import pytest

from newsletter.models import Status
from newsletter.sending.delivery import send_edition
from newsletter.sending.ledger import DeliveryStatus, Ledger
from newsletter.store.ingest import ingest_path
from newsletter.subscribers.mailbox import scan_bounces
from newsletter.subscribers.profiles import add_subscriber
from newsletter.tokens import LinkSigner, verp_address

from .conftest import REQUIRE_TOOLS, require_tool, write_jsonl

# Read at import: the autouse ``isolated`` fixture clears NEWSLETTER_* before each test.
POSTFIX_URL = os.environ.get("NEWSLETTER_TEST_POSTFIX", "")
MAILBOX = os.environ.get("NEWSLETTER_TEST_MAILBOX", "")
DOMAIN = "example.test"
EXAMPLE = Path(__file__).resolve().parent.parent / "deploy" / "postfix" / "main.cf.example"
DELIVERY_WAIT = 10.0  # seconds; Postfix delivers to a local mailbox in milliseconds
TODAY = date.today()
PAPERS = [
    {
        "id": "2601.00101",
        "title": "Spectral graph neural networks beyond homophily",
        "abstract": "Graph neural networks with spectral filters for heterophilous graphs.",
    },
    {
        "id": "2601.00102",
        "title": "Message passing neural networks on hypergraphs",
        "abstract": "A graph neural network for hypergraphs, built from message passing.",
    },
    {
        "id": "2601.00103",
        "title": "Oversmoothing in deep graph neural networks, measured",
        "abstract": "How deep graph neural networks lose the signal of their node features.",
    },
]
TITLES = {paper["id"]: paper["title"] for paper in PAPERS}


@pytest.fixture
def postfix() -> tuple[str, Path]:
    """The SMTP URL of the loopback Postfix and the mailbox it delivers to."""
    require_tool("/usr/sbin/postfix")
    problem = None
    if not (POSTFIX_URL and MAILBOX):
        problem = "NEWSLETTER_TEST_POSTFIX and NEWSLETTER_TEST_MAILBOX are not set (.ci/run sets up Postfix)"
    else:
        where = urlsplit(POSTFIX_URL)
        try:
            socket.create_connection((where.hostname, where.port or 25), timeout=5).close()
        except OSError as exc:
            problem = f"no Postfix at {POSTFIX_URL}: {exc}"
    if problem:
        if REQUIRE_TOOLS:
            pytest.fail(problem + " (NEWSLETTER_REQUIRE_TOOLS=1: .ci/run must start it)")
        pytest.skip(problem)
    return POSTFIX_URL, Path(MAILBOX)


def delivered_to(path: Path, address: str) -> EmailMessage | None:
    """The message for ``address`` in the mbox at ``path``, read under the mailbox locks
    that Postfix's local delivery takes too; None while it is not there (or Postfix holds
    the lock, writing)."""
    if not path.exists():
        return None
    box = mailbox.mbox(path, create=False)
    try:
        box.lock()
    except mailbox.ExternalClashError:
        box.close()
        return None
    try:
        for entry in box:
            message = email.message_from_bytes(entry.as_bytes(), policy=email.policy.default)
            if message["To"] == address:
                return message
    finally:
        box.unlock()
        box.close()
    return None


def test_an_edition_goes_through_postfix_into_a_local_mailbox(
    postfix, store, settings, tmp_path, monkeypatch
):
    url, mbox = postfix
    # The mailbox keeps every earlier run's mail: this run gets an address of its own
    # (Postfix delivers newsletter-test+TAG to newsletter-test).
    address = f"{mbox.name}+{uuid.uuid4().hex[:12]}@{DOMAIN}"
    # .test is a special-use domain, refused outside a test environment.
    monkeypatch.setattr(email_validator, "TEST_ENVIRONMENT", True)
    ingest_path(store, write_jsonl(tmp_path / "papers.jsonl", PAPERS))
    subscriber = add_subscriber(store, settings, address, interests="graph neural networks")

    report = send_edition(store, replace(settings, transport=url), TODAY)

    assert report.counts == {"sent": 1}
    delivery = Ledger(store).get(TODAY, subscriber.id)
    assert delivery is not None and delivery.status == DeliveryStatus.SENT
    deadline = time.monotonic() + DELIVERY_WAIT
    while (message := delivered_to(mbox, address)) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert message is not None, f"nothing for {address} in {mbox} after {DELIVERY_WAIT} s"

    # It went through Postfix and its local delivery, with our From as envelope sender
    # (where a relaying Postfix sends its bounces).
    assert any("(Postfix)" in hop for hop in message.get_all("Received"))
    assert message["Delivered-To"] == address
    assert message["Return-Path"] == f"<{settings.sender_email}>"
    # ...and arrived as sent: the ledger's Message-ID, a subject naming the edition and its
    # first paper, both parts with every paper the ledger recorded, one-click unsubscribe.
    assert message["Message-ID"] == delivery.message_id == report.outcomes[0].message_id
    titles = [TITLES[paper_id] for paper_id in delivery.paper_ids]
    assert titles
    assert message["Subject"].startswith(f"{TODAY:%b} {TODAY.day}: {titles[0]}")
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    for title in titles:
        assert title in text.get_content()
        assert title in html.get_content()
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "https://papers.example.org/unsubscribe/" in message["List-Unsubscribe"]


def test_the_postfix_example_reads_cleanly_and_keeps_loopback_plain(tmp_path):
    """Postfix's own parser reads deploy/postfix/main.cf.example without a warning (a
    misspelt parameter is "unused"), with the settings the newsletter relies on."""
    postconf = require_tool("/usr/sbin/postconf")
    (tmp_path / "main.cf").write_text(EXAMPLE.read_text())
    (tmp_path / "master.cf").write_text(Path("/etc/postfix/master.cf").read_text())
    names = [
        "inet_interfaces",
        "smtpd_relay_restrictions",
        "smtpd_tls_security_level",
        "mydestination",
        "smtp_sasl_auth_enable",
        "smtp_tls_security_level",
    ]
    result = subprocess.run(
        [postconf, "-c", str(tmp_path), "-n", *names],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.splitlines() == [
        "inet_interfaces = loopback-only",  # nothing but this host can hand it mail
        "smtpd_relay_restrictions = permit_mynetworks, reject",
        "smtpd_tls_security_level = none",  # the newsletter would refuse a snakeoil cert
        "mydestination =",  # a null client: it delivers nothing locally
        "smtp_sasl_auth_enable = yes",
        "smtp_tls_security_level = secure",  # the password goes out over verified TLS only
    ]


def test_postfix_s_own_bounce_comes_back_to_the_verp_address_and_the_scan_suppresses_it(
    postfix, store, settings, tmp_path, monkeypatch
):
    """An edition to one existing local user and one address that does not exist: Postfix
    accepts both (.ci/run empties local_recipient_maps, so that its local delivery, not its
    SMTP server, finds the user missing), and mails its DSN to the VERP return path, which
    is delivered to the same local mailbox; ``newsletter bounces scan`` reads it there."""
    url, mbox = postfix
    run = uuid.uuid4().hex[:12]
    present = f"{mbox.name}+{run}@{DOMAIN}"
    missing = f"nobody-{run}@{DOMAIN}"
    monkeypatch.setattr(email_validator, "TEST_ENVIRONMENT", True)
    ingest_path(store, write_jsonl(tmp_path / "papers.jsonl", PAPERS))
    here, gone = (
        add_subscriber(store, settings, address, interests="graph neural networks")
        for address in (present, missing)
    )
    settings = replace(
        settings,
        transport=url,
        bounce_address=f"{mbox.name}@{DOMAIN}",
        bounce_mailbox=f"mbox:{mbox}",
    )

    report = send_edition(store, settings, TODAY)

    assert report.counts == {"sent": 2}
    token = LinkSigner(settings.secret_key).return_token(gone.id, gone.email, TODAY)
    return_path = verp_address(settings.bounce_address, token)
    deadline = time.monotonic() + DELIVERY_WAIT
    while (dsn := delivered_to(mbox, return_path)) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert dsn is not None, f"no DSN for {return_path} in {mbox} after {DELIVERY_WAIT} s"
    assert dsn.get_content_type() == "multipart/report"
    assert delivered_to(mbox, present) is not None

    scan = scan_bounces(store, settings)

    (item,) = [i for i in scan.items if i.email in (present, missing)]
    assert (item.kind, item.email, item.outcome) == ("hard_bounce", missing, "bounced")
    assert store.get_subscriber(gone.id).status == Status.BOUNCED
    assert store.get_subscriber(here.id).status == Status.ACTIVE
    (event,) = store.events("bounce.hard")
    assert event["edition"] == TODAY.isoformat() and "5.1.1" in event["detail"]["reason"]

    again = scan_bounces(store, settings)
    assert set(again.counts) == {"already read"} and again.items == []
    assert store.get_subscriber(here.id).status == Status.ACTIVE
    assert len(store.events("bounce.hard")) == 1
