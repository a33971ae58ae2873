"""Bounce and complaint webhooks (Postmark, SendGrid), with payloads shaped as in the
providers' documentation, and what applying them does to the subscribers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from newsletter.models import Status, Subscriber, to_utc_iso
from newsletter.store import Store
from newsletter.subscribers.bounces import (
    BounceEvent,
    WebhookError,
    apply_events,
    parse_postmark,
    parse_sendgrid,
)


def postmark_bounce(**changes: Any) -> dict[str, Any]:
    """The example of https://postmarkapp.com/developer/webhooks/bounce-webhook."""
    payload = {
        "RecordType": "Bounce",
        "MessageStream": "broadcast",
        "ID": 4323372036854775807,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Name": "Hard bounce",
        "Tag": "Test",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": {"a_key": "a_value", "b_key": "b_value"},
        "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user,"
        " mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": "ada@example.org",
        "From": "papers@example.org",
        "BouncedAt": "2019-11-05T16:33:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Test subject",
        "Content": "<Full dump of bounce>",
    }
    return {**payload, **changes}


def postmark_spam_complaint() -> dict[str, Any]:
    """The example of https://postmarkapp.com/developer/webhooks/spam-complaint-webhook."""
    return {
        "RecordType": "SpamComplaint",
        "MessageStream": "broadcast",
        "ID": 42,
        "Type": "SpamComplaint",
        "TypeCode": 512,
        "Name": "Spam complaint",
        "Tag": "Test",
        "MessageID": "00000000-0000-0000-0000-000000000000",
        "ServerID": 1234,
        "Description": "",
        "Details": "Test spam complaint details",
        "Email": "grace@example.org",
        "From": "papers@example.org",
        "BouncedAt": "2019-11-05T16:33:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": False,
        "Subject": "Test subject",
        "Content": "<Abuse report dump>",
    }


def sendgrid_event(event: str, email: str, n: int, **fields: Any) -> dict[str, Any]:
    """An event as in https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event."""
    return {
        "email": email,
        "timestamp": 1513299569,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": event,
        "category": "cat facts",
        "sg_event_id": f"sg-event-{n}",
        "sg_message_id": f"14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.{n}",
        "newsletter_message_id": f"<2026-03-02.m{n}@example.org>",
        **fields,
    }


# -- parsing ----------------------------------------------------------------------------------


def test_postmark_bounce_webhook_reads_as_one_event() -> None:
    assert parse_postmark(postmark_bounce()) == [
        BounceEvent(
            email="ada@example.org",
            kind="hard_bounce",
            provider="postmark",
            provider_message_id="883953f4-6105-42a2-a16a-77a8eac79483",
            detail="smtp;550 5.1.1 The email account that you tried to reach does not exist.",
            event_id="4323372036854775807",
        )
    ]


@pytest.mark.parametrize(
    ("bounce_type", "kind"),
    [
        ("HardBounce", "hard_bounce"),
        ("BadEmailAddress", "hard_bounce"),
        ("SoftBounce", "soft_bounce"),
        ("Transient", "soft_bounce"),
        ("DnsError", "soft_bounce"),
        ("Blocked", "soft_bounce"),
        ("SpamNotification", "soft_bounce"),
        ("Unsubscribe", "unsubscribe"),
        ("AutoResponder", None),
        ("AddressChange", None),
        ("DMARCPolicy", None),
    ],
)
def test_postmark_bounce_types_map_by_what_they_say_about_the_address(
    bounce_type: str, kind: str | None
) -> None:
    events = parse_postmark(postmark_bounce(Type=bounce_type))

    assert [e.kind for e in events] == ([kind] if kind else [])


def test_postmark_spam_complaint_webhook_is_a_complaint_and_other_records_are_not_ours() -> None:
    [complaint] = parse_postmark(postmark_spam_complaint())
    delivery = {
        "RecordType": "Delivery",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Recipient": "ada@example.org",
        "DeliveredAt": "2019-11-05T16:33:54.9070259Z",
    }

    assert (complaint.email, complaint.kind, complaint.event_id) == (
        "grace@example.org",
        "complaint",
        "42",
    )
    assert parse_postmark(delivery) == []


def test_sendgrid_event_post_keeps_bounces_complaints_and_unsubscribes_only() -> None:
    unknown_user = {"reason": "500 unknown recipient", "status": "5.0.0", "type": "bounce"}
    blocked = {"reason": "550 5.7.1 blocked by policy", "type": "blocked"}
    payload = [
        sendgrid_event("processed", "ada@example.org", 1),
        sendgrid_event("bounce", "ada@example.org", 2, **unknown_user),
        sendgrid_event("bounce", "ben@example.org", 3, **blocked),
        sendgrid_event("deferred", "ben@example.org", 4, response="400 try again later"),
        sendgrid_event("dropped", "cy@example.org", 5, reason="Bounced Address"),
        sendgrid_event("dropped", "cy@example.org", 6, reason="Invalid SMTPAPI header"),
        sendgrid_event("spamreport", "dee@example.org", 7),
        sendgrid_event("group_unsubscribe", "eve@example.org", 8, asm_group_id=10),
        sendgrid_event("delivered", "eve@example.org", 9, response="250 OK"),
    ]

    events = parse_sendgrid(json.loads(json.dumps(payload)))

    assert [(e.email, e.kind, e.event_id) for e in events] == [
        ("ada@example.org", "hard_bounce", "sg-event-2"),
        ("ben@example.org", "soft_bounce", "sg-event-3"),
        ("cy@example.org", "hard_bounce", "sg-event-5"),
        ("dee@example.org", "complaint", "sg-event-7"),
        ("eve@example.org", "unsubscribe", "sg-event-8"),
    ]
    assert events[0].detail == "500 unknown recipient"
    assert events[0].message_id == "<2026-03-02.m2@example.org>"
    assert events[0].provider_message_id.endswith(".filter0001.16648.5515E0B88.2")


@pytest.mark.parametrize(
    ("parse", "payload"),
    [
        (parse_postmark, [postmark_bounce()]),
        (parse_postmark, postmark_bounce(Email=None)),
        (parse_sendgrid, sendgrid_event("bounce", "ada@example.org", 1)),
        (parse_sendgrid, [sendgrid_event("spamreport", "not an address", 1)]),
    ],
)
def test_a_body_the_provider_would_not_send_is_refused(parse, payload) -> None:
    with pytest.raises(WebhookError):
        parse(payload)


# -- applying ---------------------------------------------------------------------------------


def reader(store: Store, email: str, status: Status = Status.ACTIVE) -> Subscriber:
    return store.add_subscriber(
        email, status=status, timezone="UTC", delivery_hour=7, max_papers=5, consent_source="test"
    )


def soft(email: str, n: int) -> BounceEvent:
    return BounceEvent(email, "soft_bounce", "postmark", f"pm-{n}", "452 mailbox full", str(n))


def status_of(store: Store, email: str) -> Status:
    return store.get_subscriber(email).status


def test_hard_bounce_suppresses_at_once_and_is_recorded_with_its_ids(store: Store) -> None:
    ada = reader(store, "ada@example.org")

    outcome = apply_events(store, parse_postmark(postmark_bounce()), soft_bounce_limit=3)

    assert outcome == ["bounced"]
    assert status_of(store, "ada@example.org") == Status.BOUNCED
    [recorded] = store.events("bounce.hard")
    assert recorded["subscriber_id"] == ada.id
    assert recorded["detail"]["provider_message_id"] == "883953f4-6105-42a2-a16a-77a8eac79483"
    assert recorded["detail"]["reason"].startswith("smtp;550 5.1.1")


def test_complaint_and_unsubscribe_request_unsubscribe(store: Store) -> None:
    reader(store, "grace@example.org")
    reader(store, "eve@example.org")
    unsubscribe = BounceEvent("EVE@example.org", "unsubscribe", "sendgrid", "sg-8", "", "sg-e8")

    outcomes = apply_events(
        store, [*parse_postmark(postmark_spam_complaint()), unsubscribe], soft_bounce_limit=3
    )

    assert outcomes == ["unsubscribed", "unsubscribed"]
    assert status_of(store, "grace@example.org") == Status.UNSUBSCRIBED
    assert status_of(store, "eve@example.org") == Status.UNSUBSCRIBED


def test_soft_bounces_suppress_at_the_limit_and_a_repeated_webhook_counts_once(
    store: Store,
) -> None:
    reader(store, "ben@example.org")
    first, second, third = (soft("ben@example.org", n) for n in range(3))

    outcomes = apply_events(store, [first, second, second, third], soft_bounce_limit=3)

    assert outcomes == [
        "soft bounce 1 of 3",
        "soft bounce 2 of 3",
        "already recorded",
        "bounced after 3 soft bounces",
    ]
    assert status_of(store, "ben@example.org") == Status.BOUNCED
    assert len(store.events("bounce.soft")) == 3


def test_soft_bounces_before_a_reactivation_or_the_window_are_forgotten(store: Store) -> None:
    ben = reader(store, "ben@example.org")
    cy = reader(store, "cy@example.org")
    apply_events(store, [soft(ben.email, n) for n in range(3)], soft_bounce_limit=3)
    store.update_subscriber(ben.id, status=Status.ACTIVE)  # an operator reactivates him
    long_ago = to_utc_iso(datetime.now(UTC) - timedelta(days=40))
    store.conn.executemany(
        "INSERT INTO events (at, kind, subscriber_id, detail) VALUES (?, 'bounce.soft', ?, '{}')",
        [(long_ago, cy.id), (long_ago, cy.id)],
    )

    outcomes = apply_events(store, [soft(ben.email, 10), soft(cy.email, 11)], soft_bounce_limit=3)

    assert outcomes == ["soft bounce 1 of 3", "soft bounce 1 of 3"]
    assert status_of(store, ben.email) == status_of(store, cy.email) == Status.ACTIVE


def test_unknown_or_already_suppressed_addresses_keep_their_state(store: Store) -> None:
    reader(store, "fay@example.org", status=Status.UNSUBSCRIBED)
    hard = parse_postmark(postmark_bounce(Email="fay@example.org"))
    stranger = parse_postmark(postmark_bounce(Email="nobody@example.org", ID=7))

    outcomes = apply_events(store, [*hard, *stranger], soft_bounce_limit=3)

    assert outcomes == ["already unsubscribed", "unknown address"]
    assert status_of(store, "fay@example.org") == Status.UNSUBSCRIBED
    assert len(store.events("bounce.hard")) == 1
