"""Bounces and complaints that come back by mail: the VERP envelope sender, the reading of
DSNs and ARF reports in real-world formats (tests/data/bounces), and the scan of a Maildir,
an mbox and a real IMAP server (dovecot, started by the ``dovecot`` fixture)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from newsletter.sending.delivery import send_edition
from newsletter.settings import Settings, SettingsError
from newsletter.store.ingest import ingest_path
from newsletter.subscribers.profiles import add_subscriber
from newsletter.tokens import BadToken, LinkSigner, token_in_verp

from .conftest import SECRET, write_jsonl

EDITION = date(2026, 12, 3)
PAPERS = [
    {
        "id": "2601.00101",
        "title": "Spectral graph neural networks beyond homophily",
        "abstract": "Graph neural networks with spectral filters for heterophilous graphs.",
    }
]


# -- the VERP envelope sender ------------------------------------------------------------------


def test_a_return_path_token_is_short_lowercase_and_names_subscriber_and_edition():
    signer = LinkSigner(SECRET)
    token = signer.return_token(123456, "Reader@Example.org", EDITION)
    assert token == token.lower() and len(token) <= 34
    read = signer.read_return_token(token.upper())  # a server may change the case
    assert (read.subscriber_id, read.edition) == (123456, EDITION)
    assert signer.return_token_matches(read, "reader@example.org")
    assert not signer.return_token_matches(read, "someone.else@example.org")
    assert not LinkSigner("another key").return_token_matches(read, "reader@example.org")
    # Rotated keys still verify tokens already sent.
    assert LinkSigner("new key", [SECRET]).return_token_matches(read, "reader@example.org")
    for bad in ["", "1-2026-abc", "1-20261399-aaaaaaaaaaaaaaaa", token + "x"]:
        with pytest.raises(BadToken):
            signer.read_return_token(bad)


def test_the_token_is_found_only_in_the_bounce_address_s_own_verp_form():
    assert token_in_verp("<Bounces+ABC@News.Example.org>", "bounces@news.example.org") == "abc"
    assert token_in_verp("bounces@news.example.org", "bounces@news.example.org") is None
    assert token_in_verp("other+abc@news.example.org", "bounces@news.example.org") is None
    assert token_in_verp("bounces+abc@elsewhere.org", "bounces@news.example.org") is None


@pytest.mark.parametrize(
    "address",
    ["Bounces <bounces@example.org>", "bounces+x@example.org", "a" * 30 + "@example.org", "nope"],
)
def test_a_bounce_address_that_leaves_no_room_for_a_token_is_refused(address):
    with pytest.raises(SettingsError, match="bounce_address"):
        Settings(bounce_address=address)


def test_smtp_sends_with_the_verp_envelope_sender(store, settings, smtp_server, tmp_path):
    ingest_path(store, write_jsonl(tmp_path / "papers.jsonl", PAPERS))
    subscriber = add_subscriber(store, settings, "reader@example.org", interests="graph neural")
    settings = replace(settings, transport=smtp_server.url, bounce_address="bounces@example.org")

    report = send_edition(store, settings, EDITION)

    assert report.counts == {"sent": 1}
    (envelope,) = smtp_server.envelopes
    token = token_in_verp(envelope.mail_from, "bounces@example.org")
    assert token is not None and len(envelope.mail_from.partition("@")[0]) <= 64
    read = LinkSigner(SECRET).read_return_token(token)
    assert (read.subscriber_id, read.edition) == (subscriber.id, EDITION)
    # The From header stays the newsletter's.
    assert smtp_server.messages[0]["From"] == settings.from_address


def test_without_a_bounce_address_the_envelope_sender_is_the_from_address(
    store, settings, smtp_server, tmp_path
):
    ingest_path(store, write_jsonl(tmp_path / "papers.jsonl", PAPERS))
    add_subscriber(store, settings, "reader@example.org", interests="graph neural")
    send_edition(store, replace(settings, transport=smtp_server.url), EDITION)
    assert [e.mail_from for e in smtp_server.envelopes] == ["papers@example.org"]
