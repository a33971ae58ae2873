"""Bounces and complaints that come back by mail: the VERP envelope sender, the reading of
DSNs and ARF reports in real-world formats (tests/data/bounces), and the scan of a Maildir,
an mbox and a real IMAP server (dovecot, started by the ``dovecot`` fixture)."""

from __future__ import annotations

import grp
import json
import mailbox
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import email_validator
import imapclient
import pytest
import trustme

from newsletter.models import Shard, Status
from newsletter.sending.delivery import send_edition
from newsletter.sending.status import edition_rates
from newsletter.sending.worker import Worker
from newsletter.settings import Settings, SettingsError, load_settings
from newsletter.store.ingest import ingest_path
from newsletter.subscribers import bounce_mail
from newsletter.subscribers.bounce_mail import read_bounce
from newsletter.subscribers.mailbox import MailboxError, open_source, scan_bounces
from newsletter.subscribers.profiles import add_subscriber
from newsletter.tokens import BadToken, LinkSigner, token_in_verp

from .conftest import SECRET, free_port, require_tool, write_jsonl

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


# -- reading real-world bounce formats -------------------------------------------------------

SAMPLES = Path(__file__).resolve().parent / "data" / "bounces"
BOUNCES = "bounces@news.example.org"


@pytest.mark.parametrize(
    ("sample", "kind", "recipient"),
    [
        ("postfix-user-unknown.eml", "hard_bounce", "gone@example.net"),
        ("exchange-online-ndr.eml", "hard_bounce", "former.staff@contoso.example"),
        ("exim-no-dsn.eml", "hard_bounce", "left.the.lab@example.ac.uk"),
        ("qmail-no-dsn.eml", "hard_bounce", "nobody.here@example.info"),
        ("gmail-mailbox-full.eml", "soft_bounce", "full@example.com"),
        ("yahoo-arf-complaint.eml", "complaint", "annoyed@yahoo.example"),
        ("postfix-delayed.eml", "not_bounce", "slow@example.com"),
        ("out-of-office.eml", "not_bounce", None),
        ("human-reply.eml", "not_bounce", None),
        ("malformed.eml", "malformed", None),
    ],
)
def test_each_real_world_format_is_read_as_what_it_is(sample, kind, recipient):
    mail = read_bounce((SAMPLES / sample).read_bytes(), BOUNCES)
    assert mail.kind == kind, mail.detail
    assert mail.recipients[:1] == ((recipient,) if recipient else ())
    assert mail.message_id.startswith("<") and mail.detail


def test_what_a_dsn_reports_is_kept_as_its_detail_and_the_original_s_message_id():
    mail = read_bounce((SAMPLES / "postfix-user-unknown.eml").read_bytes(), BOUNCES)
    assert "550 5.1.1" in mail.detail and "User unknown" in mail.detail
    assert mail.original_message_id == "<2026-12-03.17.1@news.example.org>"


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x00\xff\xfe binary", b"no headers at all\n\njust text", b"\n\n\n", b"Subject: x"],
)
def test_garbage_is_malformed_and_named_by_its_digest(raw):
    mail = read_bounce(raw, BOUNCES)
    assert mail.kind in ("malformed", "not_bounce")
    assert mail.message_id.startswith(("sha256:", "<"))


def test_a_message_of_thousands_of_parts_is_malformed_before_it_is_parsed(monkeypatch):
    parts = b"".join(b"--b\nContent-Type: text/plain\n\npart %d\n" % n for n in range(5000))
    raw = (
        b"From: someone@example.org\nMessage-ID: <many@example.org>\n"
        b"Content-Type: multipart/mixed; boundary=b\n\n" + parts + b"--b--\n"
    )
    real_parse = bounce_mail.email.message_from_bytes

    def parse_headers_only(data: bytes):
        assert b"part 4999" not in data, "the whole message was parsed"
        return real_parse(data)

    monkeypatch.setattr(bounce_mail.email, "message_from_bytes", parse_headers_only)
    mail = read_bounce(raw, BOUNCES)
    assert (mail.kind, mail.message_id) == ("malformed", "<many@example.org>")
    assert "5001 MIME parts" in mail.detail
    # A real bounce, with its few parts, is still read.
    monkeypatch.undo()
    assert read_bounce((SAMPLES / "postfix-user-unknown.eml").read_bytes(), BOUNCES).kind == (
        "hard_bounce"
    )


# -- scanning a mailbox ----------------------------------------------------------------------


def _verp_bounce(signer: LinkSigner, subscriber, reported: str) -> bytes:
    """Postfix's DSN for ``subscriber``'s copy of EDITION, delivered to its VERP address;
    the DSN names ``reported`` (a forwarding address, say), not the subscriber."""
    token = signer.return_token(subscriber.id, subscriber.email, EDITION)
    raw = (SAMPLES / "postfix-user-unknown.eml").read_bytes()
    raw = raw.replace(b"gone@example.net", reported.encode())
    return raw.replace(
        b"Delivered-To: bounces@", f"Delivered-To: bounces+{token}@".encode()
    ).replace(b"Message-Id: <20261203070004", b"Message-Id: <verp-20261203070004")


def _maildir(path: Path, messages: list[bytes]) -> mailbox.Maildir:
    box = mailbox.Maildir(path, create=True)
    for raw in messages:
        box.add(raw)
    return box


@pytest.fixture
def bounce_settings(settings, tmp_path):
    return replace(
        settings, bounce_address=BOUNCES, bounce_mailbox=f"maildir:{tmp_path / 'Maildir'}"
    )


def _subscribe(store, settings, *emails):
    return [add_subscriber(store, settings, e, interests="graph neural networks") for e in emails]


@pytest.mark.both_stores
def test_a_maildir_scan_applies_the_webhooks_rules_and_a_rescan_changes_nothing(
    store, bounce_settings, tmp_path, monkeypatch
):
    monkeypatch.setattr(email_validator, "TEST_ENVIRONMENT", True)
    gone, _full, _annoyed, _reader, verp = _subscribe(
        store,
        bounce_settings,
        "gone@example.net",
        "full@example.com",
        "annoyed@yahoo.example",
        "reader@example.org",
        "verp.reader@example.org",
    )
    signer = LinkSigner(SECRET)
    samples = [(SAMPLES / name).read_bytes() for name in sorted(os.listdir(SAMPLES))]
    box = _maildir(tmp_path / "Maildir", [*samples, _verp_bounce(signer, verp, "fwd@else.example")])

    report = scan_bounces(store, bounce_settings)

    status = {s.email: s.status for s in store.list_subscribers()}
    assert status == {
        "gone@example.net": Status.BOUNCED,
        "full@example.com": Status.ACTIVE,  # one soft bounce of three
        "annoyed@yahoo.example": Status.UNSUBSCRIBED,
        "reader@example.org": Status.ACTIVE,  # its out-of-office reply counts for nothing
        "verp.reader@example.org": Status.BOUNCED,  # the token names it, not the DSN
    }
    assert report.counts == {
        "hard_bounce": 2,
        "soft_bounce": 1,
        "complaint": 1,
        "unknown": 3,  # Exchange, Exim, qmail: nobody on the list
        "not_bounce": 3,
        "malformed": 1,
    }
    (verp_item,) = [i for i in report.items if i.email == "verp.reader@example.org"]
    assert verp_item.outcome == "bounced"
    events = store.events("bounce.hard")
    assert {e["subscriber_id"]: e["edition"] for e in events} == {
        gone.id: None,
        verp.id: "2026-12-03",
    }
    assert {e["detail"]["provider"] for e in events} == {"mail"}
    # What was applied is marked seen; what is kept for the operator is not.
    seen = [key for key, message in box.iteritems() if "S" in message.get_flags()]
    assert len(seen) == 4

    again = scan_bounces(store, bounce_settings)
    assert again.counts == {"already read": 7} and again.items == []
    assert {s.email: s.status for s in store.list_subscribers()} == status
    assert len(store.events("bounce.soft")) == 1


@pytest.mark.both_stores
def test_a_kept_bounce_stays_kept_and_an_applied_one_left_behind_is_moved_on_rescan(
    store, bounce_settings, tmp_path
):
    box = _maildir(
        tmp_path / "Maildir",
        [
            (SAMPLES / n).read_bytes()
            for n in ["postfix-user-unknown.eml", "gmail-mailbox-full.eml"]
        ],
    )
    _subscribe(store, bounce_settings, "full@example.com")
    assert scan_bounces(store, bounce_settings).counts == {"unknown": 1, "soft_bounce": 1}
    # A scan that stopped after the store but before the mark: the next one marks it.
    for key, message in box.iteritems():
        message.remove_flag("S")
        box[key] = message
    # The address of the kept bounce is subscribed since: the bounce stays kept, unapplied.
    (gone,) = _subscribe(store, bounce_settings, "gone@example.net")
    assert scan_bounces(store, bounce_settings).counts == {"already read": 2}
    flags = {m["Message-ID"].split("@")[0]: m.get_flags() for m in box}
    assert flags == {
        "<20261203070004.4QxZ1k2Lmnz9sT": "",
        "<6745e1b2.050a0220.3c1f2.8f3bSMTPIN_ADDED_MISSING": "S",
    }
    assert store.get_subscriber(gone.id).status == Status.ACTIVE


@pytest.mark.both_stores
def test_the_same_bounce_twice_counts_once(store, bounce_settings, tmp_path):
    _subscribe(store, bounce_settings, "full@example.com")
    raw = (SAMPLES / "gmail-mailbox-full.eml").read_bytes()
    _maildir(tmp_path / "Maildir", [raw, raw])
    report = scan_bounces(store, bounce_settings)
    assert report.counts == {"soft_bounce": 1, "already read": 1}
    assert len(store.events("bounce.soft")) == 1


@pytest.mark.both_stores
def test_soft_bounces_suppress_after_the_limit(store, bounce_settings, tmp_path):
    (full,) = _subscribe(store, bounce_settings, "full@example.com")
    raw = (SAMPLES / "gmail-mailbox-full.eml").read_bytes()
    copies = [raw.replace(b"<6745e1b2", f"<{n}-6745e1b2".encode()) for n in range(3)]
    _maildir(tmp_path / "Maildir", copies)
    report = scan_bounces(store, bounce_settings)
    assert [i.outcome for i in report.items] == [
        "soft bounce 1 of 3",
        "soft bounce 2 of 3",
        "bounced after 3 soft bounces",
    ]
    assert store.get_subscriber(full.id).status == Status.BOUNCED


def test_an_enormous_message_is_reported_and_skipped_and_the_scan_goes_on(
    store, bounce_settings, tmp_path
):
    (gone,) = _subscribe(store, bounce_settings, "gone@example.net")
    enormous = (
        (SAMPLES / "postfix-user-unknown.eml")
        .read_bytes()
        .replace(b"Message-Id: <2026", b"Message-Id: <huge-2026")
        + b"x" * 80
        + (b"\n" + b"y" * 76) * 30_000
    )
    settings = replace(bounce_settings, max_bounce_bytes=1_000_000)
    _maildir(tmp_path / "Maildir", [enormous, (SAMPLES / "postfix-user-unknown.eml").read_bytes()])
    report = scan_bounces(store, settings)
    assert report.counts == {"enormous": 1, "hard_bounce": 1}
    (huge,) = [i for i in report.items if i.kind == "enormous"]
    assert huge.message_id == "<huge-20261203070004.4QxZ1k2Lmnz9sT@mail.news.example.org>"
    assert "max_bounce_bytes" in huge.detail
    assert store.get_subscriber(gone.id).status == Status.BOUNCED
    # The bounce applied is marked seen and not read again; the enormous one, kept, is
    # reported once.
    assert scan_bounces(store, settings).counts == {"already read": 1}


def _nested_mime(depth: int) -> bytes:
    """A message of ``depth`` multiparts, one inside the other: more than the parser's
    recursion can take."""
    inner = b"Content-Type: text/plain\n\nhi\n"
    for level in range(depth):
        inner = b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n%s\n--b%d--\n" % (
            level,
            level,
            inner,
            level,
        )
    return b"From: someone@example.org\nMessage-ID: <nested@example.org>\n" + inner


def test_a_message_nested_too_deeply_to_parse_is_malformed_and_the_maildir_scan_goes_on(
    store, bounce_settings, tmp_path
):
    (gone,) = _subscribe(store, bounce_settings, "gone@example.net")
    messages = [_nested_mime(2000), (SAMPLES / "postfix-user-unknown.eml").read_bytes()]
    _maildir(tmp_path / "Maildir", messages)
    report = scan_bounces(store, bounce_settings)
    assert report.counts == {"malformed": 1, "hard_bounce": 1}
    assert store.get_subscriber(gone.id).status == Status.BOUNCED
    # Only the bounce applied is marked seen (read from the file names: the nested
    # message cannot be parsed), and the files are unchanged.
    files = sorted((tmp_path / "Maildir").glob("*/*"))
    seen = [f.read_bytes() for f in files if "S" in f.name.rpartition(":2,")[2]]
    assert seen == [(SAMPLES / "postfix-user-unknown.eml").read_bytes()]
    assert sorted(f.read_bytes() for f in files) == sorted(messages)
    assert scan_bounces(store, bounce_settings).counts == {"already read": 1}


def _dsn_about(original_message_id: str, reported: str) -> bytes:
    """Postfix's DSN, sent to the bounce address without a token, that quotes the message
    ``original_message_id`` and names ``reported`` as the address that failed."""
    raw = (SAMPLES / "postfix-user-unknown.eml").read_bytes()
    return raw.replace(b"gone@example.net", reported.encode()).replace(
        b"<2026-12-03.17.1@news.example.org>", original_message_id.encode()
    )


@pytest.mark.both_stores
def test_a_dsn_that_quotes_our_message_applies_to_its_reader_not_to_whom_it_names(
    store, bounce_settings, tmp_path
):
    ingest_path(store, write_jsonl(tmp_path / "papers.jsonl", PAPERS))
    alice, bob = _subscribe(store, bounce_settings, "alice@example.org", "bob@example.org")
    send_edition(store, bounce_settings, EDITION)
    sent_to_alice = store.deliveries.get(EDITION.isoformat(), alice.id).message_id
    domain = sent_to_alice.rpartition("@")[2].rstrip(">")
    never_sent = f"<{EDITION.isoformat()}.{'0' * 20}@{domain}>"
    _maildir(
        tmp_path / "Maildir",
        [
            # Our message to Alice bounced from where she forwards it; the DSN names Bob
            # (a forged one, or a forwarding address that happens to be his).
            _dsn_about(sent_to_alice, "bob@example.org"),
            # A message of ours that the ledger never sent, naming Bob: forged, kept.
            _dsn_about(never_sent, "bob@example.org").replace(
                b"Message-Id: <2026", b"Message-Id: <forged-2026"
            ),
        ],
    )
    report = scan_bounces(store, bounce_settings)
    assert store.get_subscriber(bob.id).status == Status.ACTIVE
    assert store.get_subscriber(alice.id).status == Status.BOUNCED
    assert report.counts == {"hard_bounce": 1, "unknown": 1}
    (event,) = store.events("bounce.hard")
    assert (event["subscriber_id"], event["edition"]) == (alice.id, EDITION.isoformat())


def test_an_mbox_is_read_and_left_as_it_was(store, bounce_settings, tmp_path):
    (gone,) = _subscribe(store, bounce_settings, "gone@example.net")
    path = tmp_path / "bounces.mbox"
    box = mailbox.mbox(path)
    box.add((SAMPLES / "postfix-user-unknown.eml").read_bytes())
    box.add((SAMPLES / "out-of-office.eml").read_bytes())
    box.close()
    before = path.read_bytes()
    settings = replace(bounce_settings, bounce_mailbox=f"mbox:{path}")

    assert scan_bounces(store, settings).counts == {"hard_bounce": 1, "not_bounce": 1}
    assert scan_bounces(store, settings).counts == {"already read": 2}  # all of it, again
    assert path.read_bytes() == before
    assert store.get_subscriber(gone.id).status == Status.BOUNCED


@pytest.mark.parametrize(
    "url",
    ["", "pop3://mail.example.org", "maildir:", "imaps://mail.example.org", "imap://:pw@x"],
)
def test_a_bounce_mailbox_that_names_no_source_is_a_settings_error(settings, url):
    with pytest.raises(SettingsError, match=r"bounce mailbox|bounce_mailbox"):
        open_source(replace(settings, bounce_mailbox=url))


def test_a_missing_maildir_or_mbox_is_a_mailbox_error(settings, tmp_path):
    for url in [f"maildir:{tmp_path / 'none'}", f"mbox:{tmp_path / 'none.mbox'}"]:
        with pytest.raises(MailboxError):
            open_source(replace(settings, bounce_mailbox=url))


def test_a_bounce_mailbox_password_in_the_config_file_is_refused(tmp_path):
    config = tmp_path / "newsletter.toml"
    config.write_text('bounce_mailbox = "imaps://bounces:hunter2@mail.example.org"\n')
    with pytest.raises(SettingsError, match="NEWSLETTER_BOUNCE_PASSWORD") as caught:
        load_settings({}, config)
    assert "hunter2" not in str(caught.value)
    with pytest.raises(SettingsError, match="secrets belong in the environment"):
        config.write_text('bounce_password = "hunter2"\n')
        load_settings({}, config)


# -- the console and the status ----------------------------------------------------------------


def test_bounces_scan_on_the_console_and_as_json(store, bounce_settings, tmp_path, run_cli):
    _subscribe(store, bounce_settings, "gone@example.net")
    _maildir(
        tmp_path / "Maildir",
        [(SAMPLES / n).read_bytes() for n in ["postfix-user-unknown.eml", "out-of-office.eml"]],
    )
    env = {
        "NEWSLETTER_SECRET_KEY": SECRET,
        "NEWSLETTER_BOUNCE_ADDRESS": BOUNCES,
        "NEWSLETTER_BOUNCE_MAILBOX": bounce_settings.bounce_mailbox,
    }
    result = run_cli("bounces", "scan", env=env)
    assert result.exit_code == 0, result.output
    assert "1 hard bounce, 1 not bounce" in result.output
    assert "hard bounce gone@example.net: bounced (smtp; 550 5.1.1" in result.output

    again = run_cli("bounces", "scan", "--json", env=env)
    data = json.loads(again.output)
    assert data["counts"] == {"already read": 1} and data["items"] == []
    assert data["source"] == bounce_settings.bounce_mailbox


def test_bounces_scan_without_a_mailbox_says_how_to_set_one(run_cli):
    result = run_cli("bounces", "scan")
    assert result.exit_code == 1
    assert "NEWSLETTER_BOUNCE_MAILBOX" in result.output


def test_an_imap_password_never_shows_in_an_error(run_cli):
    env = {"NEWSLETTER_BOUNCE_MAILBOX": f"imap://bounces:hunter2@127.0.0.1:{free_port()}"}
    result = run_cli("bounces", "scan", env=env)
    assert result.exit_code == 1 and "cannot read" in result.output
    assert "hunter2" not in result.output
    env = {
        "NEWSLETTER_BOUNCE_MAILBOX": f"imap://bounces@127.0.0.1:{free_port()}",
        "NEWSLETTER_BOUNCE_PASSWORD": "hunter2",
    }
    result = run_cli("bounces", "scan", env=env)
    assert result.exit_code == 1 and "hunter2" not in result.output


@pytest.mark.both_stores
def test_the_status_shows_the_rates_of_the_last_editions_beside_the_thresholds(
    store, bounce_settings, tmp_path, run_cli
):
    ingest_path(store, write_jsonl(tmp_path / "papers.jsonl", PAPERS))
    readers = _subscribe(store, bounce_settings, *(f"r{n}@example.org" for n in range(4)))
    send_edition(store, bounce_settings, EDITION)
    signer = LinkSigner(SECRET)
    _maildir(tmp_path / "Maildir", [_verp_bounce(signer, readers[0], "r0@example.org")])
    scan_bounces(store, bounce_settings)

    (rates,) = edition_rates(store)
    assert (rates.edition, rates.delivered, rates.hard_bounces) == ("2026-12-03", 4, 1)
    assert rates.bounce_rate == 0.25 and rates.over == ["bounce_rate"]

    result = run_cli("status", "--date", "2026-12-03", env={"NEWSLETTER_SECRET_KEY": SECRET})
    assert "Gmail: under 0.3%, aim for 0.1%" in result.output
    assert "2026-12-03: 4 delivered, 1 bounced (25.00%), 0 soft, 0 complaints (0.00%)" in (
        result.output
    )
    assert "OVER: bounce_rate" in result.output
    data = json.loads(run_cli("status", "--json").output)
    assert data["rates"]["thresholds"]["complaint_rate"] == {"limit": 0.003, "aim": 0.001}
    assert data["rates"]["editions"][0]["hard_bounces"] == 1


def test_the_worker_scans_the_bounce_mailbox_only_when_one_is_set(bounce_settings, store, tmp_path):
    assert Worker(bounce_settings).scans_bounces
    assert not Worker(replace(bounce_settings, bounce_mailbox="")).scans_bounces
    assert not Worker(replace(bounce_settings, bounce_scan_minutes=0)).scans_bounces
    assert not Worker(bounce_settings, shard=Shard(1, 2)).scans_bounces
    (gone,) = _subscribe(store, bounce_settings, "gone@example.net")
    _maildir(tmp_path / "Maildir", [(SAMPLES / "postfix-user-unknown.eml").read_bytes()])
    Worker(bounce_settings).scan_bounces()
    assert store.get_subscriber(gone.id).status == Status.BOUNCED
    assert store.get_meta("worker.last_bounce_scan")


# -- a real IMAP server: dovecot on loopback ---------------------------------------------------

DOVECOT = "/usr/sbin/dovecot"
DOVECOT_USER = "newsletter-imap"  # who runs it when the tests run as root
IMAP_USER, IMAP_PASSWORD = "bounces", "imap-test-password"
DOVECOT_CONF = """
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
first_valid_uid = {uid}
last_valid_uid = {uid}
ssl = required
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
auth_mechanisms = plain
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
  }}
}}
service anvil {{
  chroot =
}}
"""


@dataclass
class Dovecot:
    imap_port: int
    imaps_port: int
    cafile: Path

    def url(self, scheme: str = "imaps") -> str:
        port = self.imaps_port if scheme == "imaps" else self.imap_port
        return f"{scheme}://{IMAP_USER}@127.0.0.1:{port}?cafile={self.cafile}"

    def client(self) -> imapclient.IMAPClient:
        context = ssl.create_default_context(cafile=str(self.cafile))
        client = imapclient.IMAPClient("127.0.0.1", self.imaps_port, ssl_context=context)
        client.login(IMAP_USER, IMAP_PASSWORD)
        return client


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    """Debian's dovecot-imapd with a config of its own in a temporary directory: a
    passwd-file user, Maildirs there, TLS with a certificate of a test CA (trustme), on two
    free ports of 127.0.0.1; run as an unprivileged user when the tests run as root."""
    binary = require_tool(DOVECOT)
    root = Path(tempfile.mkdtemp(prefix="newsletter-imap-"))
    as_user: list[str] = []
    if os.getuid() == 0:
        if subprocess.run(["id", DOVECOT_USER], capture_output=True).returncode != 0:
            home = ["--no-create-home", "--home-dir", "/nonexistent"]
            shell = ["--shell", "/usr/sbin/nologin"]
            subprocess.run(["useradd", "--system", *home, *shell, DOVECOT_USER], check=True)
        as_user = ["runuser", "-u", DOVECOT_USER, "--"]
        shutil.chown(root, DOVECOT_USER)
        os.chmod(root, 0o755)
        user = pwd.getpwnam(DOVECOT_USER)
    else:
        user = pwd.getpwuid(os.getuid())
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(root / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    (root / "passwd").write_text(f"{IMAP_USER}:{{PLAIN}}{IMAP_PASSWORD}\n")
    ports = free_port(), free_port()
    config = root / "dovecot.conf"
    config.write_text(
        DOVECOT_CONF.format(
            root=root,
            user=user.pw_name,
            group=grp.getgrgid(user.pw_gid).gr_name,
            uid=user.pw_uid,
            gid=user.pw_gid,
            imap_port=ports[0],
            imaps_port=ports[1],
        )
    )
    for path in root.iterdir():
        shutil.chown(path, user.pw_uid, user.pw_gid)
    server = subprocess.Popen([*as_user, binary, "-F", "-c", str(config)])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", ports[1]), timeout=1).close()
                break
            except OSError:
                log = root / "dovecot.log"
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"dovecot did not start: {log.read_text() if log.exists() else ''}")
                time.sleep(0.1)
        yield Dovecot(ports[0], ports[1], root / "ca.pem")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("scheme", ["imaps", "imap"])  # TLS at once, or STARTTLS
def test_a_scan_over_imap_moves_what_it_applied_to_the_processed_folder(
    store, settings, dovecot, scheme
):
    folder = f"Test-{scheme}"
    with dovecot.client() as client:
        client.create_folder(folder)
    settings = replace(
        settings,
        bounce_address=BOUNCES,
        bounce_mailbox=dovecot.url(scheme).replace("?", f"/{folder}?"),
        bounce_folder=f"Processed-{scheme}",
    )
    settings = replace(settings, bounce_password=IMAP_PASSWORD)
    gone, verp = _subscribe(store, settings, "gone@example.net", "verp.reader@example.org")
    bounce = _verp_bounce(LinkSigner(SECRET), verp, "fwd@else.example")
    with dovecot.client() as client:
        for raw in [
            (SAMPLES / "postfix-user-unknown.eml").read_bytes(),
            (SAMPLES / "out-of-office.eml").read_bytes(),
            (SAMPLES / "malformed.eml").read_bytes(),
            bounce,
        ]:
            client.append(folder, raw.replace(b"\n", b"\r\n"))

    report = scan_bounces(store, settings)

    assert report.counts == {"hard_bounce": 2, "not_bounce": 1, "malformed": 1}
    assert store.get_subscriber(gone.id).status == Status.BOUNCED
    assert store.get_subscriber(verp.id).status == Status.BOUNCED
    with dovecot.client() as client:
        client.select_folder(settings.bounce_folder, readonly=True)
        moved = client.fetch(client.search(), ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
        client.select_folder(folder, readonly=True)
        kept = client.fetch(client.search(), ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
    ids = [
        [v[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"].split(b"<")[1].split(b"@")[0] for v in m.values()]
        for m in (moved, kept)
    ]
    assert sorted(ids[0]) == [
        b"20261203070004.4QxZ1k2Lmnz9sT",
        b"verp-20261203070004.4QxZ1k2Lmnz9sT",
    ]
    assert sorted(ids[1]) == [b"broken-0001", b"ooo-5f2e8a"]  # kept for the operator

    again = scan_bounces(store, settings)
    assert again.counts == {"already read": 2} and again.items == []
    assert len(store.events("bounce.hard")) == 2


def test_a_wrong_imap_password_is_an_error_that_does_not_show_it(settings, dovecot):
    settings = replace(settings, bounce_mailbox=dovecot.url(), bounce_password="wrong-hunter2")
    with pytest.raises(MailboxError) as caught:
        open_source(settings).__enter__()
    assert "cannot read imaps://bounces@127.0.0.1" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_an_imap_server_without_tls_is_refused_before_the_password_goes(settings, smtp_server):
    """A server that offers no STARTTLS (here: not even IMAP) never gets the password."""
    url = f"imap://bounces@127.0.0.1:{free_port()}"
    with pytest.raises(MailboxError, match="cannot read"):
        open_source(replace(settings, bounce_mailbox=url, bounce_password="pw")).__enter__()


@pytest.mark.both_stores
def test_with_verp_required_only_a_bounce_whose_token_verifies_is_applied(
    store, bounce_settings, tmp_path, caplog
):
    """``bounce_require_verp``: a DSN without a token naming a reader (forged, or from a
    forwarding server) and one quoting our message to another are kept, not applied; the
    one that came back to its reader's VERP address is."""
    ingest_path(store, write_jsonl(tmp_path / "papers.jsonl", PAPERS))
    _named, quoted, verp = _subscribe(
        store, bounce_settings, "gone@example.net", "alice@example.org", "verp@example.org"
    )
    send_edition(store, bounce_settings, EDITION)
    sent_to_alice = store.deliveries.get(EDITION.isoformat(), quoted.id).message_id
    _maildir(
        tmp_path / "Maildir",
        [
            (SAMPLES / "postfix-user-unknown.eml").read_bytes(),  # names gone@example.net
            _dsn_about(sent_to_alice, "alice@example.org").replace(
                b"Message-Id: <2026", b"Message-Id: <quoting-2026"
            ),
            _verp_bounce(LinkSigner(SECRET), verp, "fwd@else.example"),
        ],
    )
    strict = replace(bounce_settings, bounce_require_verp=True)
    report = scan_bounces(store, strict)
    assert report.counts == {"unknown": 2, "hard_bounce": 1}
    status = {s.email: s.status for s in store.list_subscribers()}
    assert status == {
        "gone@example.net": Status.ACTIVE,
        "alice@example.org": Status.ACTIVE,
        "verp@example.org": Status.BOUNCED,
    }
    assert "no VERP token that verifies (bounce_require_verp)" in caplog.text


def test_verp_required_needs_a_bounce_address_and_reads_as_a_yes_or_no(settings):
    from newsletter.settings import SettingsError, load_settings

    assert load_settings({"NEWSLETTER_BOUNCE_REQUIRE_VERP": "no"}).bounce_require_verp is False
    on = {"NEWSLETTER_BOUNCE_REQUIRE_VERP": "true", "NEWSLETTER_BOUNCE_ADDRESS": BOUNCES}
    assert load_settings(on).bounce_require_verp is True
    with pytest.raises(SettingsError, match="bounce_require_verp needs bounce_address"):
        load_settings({"NEWSLETTER_BOUNCE_REQUIRE_VERP": "1"})
    with pytest.raises(SettingsError, match="cannot read 'maybe'"):
        load_settings({**on, "NEWSLETTER_BOUNCE_REQUIRE_VERP": "maybe"})
