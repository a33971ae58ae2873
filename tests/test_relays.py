"""The relay API transports (Postmark, SendGrid, Resend) against a real HTTP server on
loopback that checks the requests against the providers' documented shapes and answers
as they do: all sent, a 200 batch with failed items, rate limits, server errors, a refused
token, no answer at all."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from email.header import decode_header, make_header
from email.message import EmailMessage
from typing import Any

import pytest

from newsletter.mail.render import Renderer
from newsletter.mail.transport import transport_from_url
from newsletter.models import Pick, Status, Subscriber
from newsletter.settings import Settings
from newsletter.tokens import LinkSigner
from newsletter.transports import OneAtATime, SendResult, TransportError, send_many
from newsletter.transports.postmark import PostmarkTransport
from newsletter.transports.relay import Outgoing, RelayTransport
from newsletter.transports.resend import ResendTransport
from newsletter.transports.sendgrid import SendGridTransport

from .conftest import SECRET, free_port, make_paper
from .feedserver import FeedServer, Reply

TOKEN = "tok-5ecret-0123456789"
EDITION = date(2026, 3, 2)
SUBJECT = "Mar 2: Fréchet means of Schrödinger bridges"
RELAYS: dict[str, tuple[type[RelayTransport], str]] = {
    "postmark": (PostmarkTransport, "/email/batch"),
    "sendgrid": (SendGridTransport, "/v3/mail/send"),
    "resend": (ResendTransport, "/emails/batch"),
}


@pytest.fixture
def compose(settings: Settings) -> Callable[[int], EmailMessage]:
    """Edition messages as the renderer makes them, with a non-ASCII sender name and
    subject: ``compose(n)`` is for reader{n}@example.org, Message-ID <...m{n}@...>."""
    renderer = Renderer(
        replace(
            settings,
            from_address="Schrödinger Papers <papers@example.org>",
            reply_to="editor@example.org",
        ),
        LinkSigner(SECRET),
    )

    def message(n: int) -> EmailMessage:
        reader = Subscriber(n, f"reader{n}@example.org", Status.ACTIVE, "UTC", 7, 5)
        paper = make_paper(n, title=r"Fr\'echet means of Schr\"odinger bridges")
        return renderer.message(reader, [Pick(paper, 0.5, "new")], EDITION, message_id(n))

    return message


def message_id(n: int) -> str:
    return f"<2026-03-02.m{n}@example.org>"


def plain(n: int) -> EmailMessage:
    """A small message, for tests about many of them."""
    message = EmailMessage()
    message["From"] = "papers@example.org"
    message["To"] = f"reader{n}@example.org"
    message["Subject"] = f"Edition {n}"
    message["Message-ID"] = message_id(n)
    message.set_content("Hello")
    return message


def relay(server: FeedServer, scheme: str, **options: Any) -> RelayTransport:
    cls, _ = RELAYS[scheme]
    return cls(TOKEN, base_url=server.url(""), **options)


def reply(body: Any, status: int = 200, **headers: str) -> Reply:
    return Reply(status, json.dumps(body).encode(), {"Content-Type": "application/json", **headers})


def postmark_ok(n: int) -> dict[str, Any]:
    return {
        "To": f"reader{n}@example.org",
        "SubmittedAt": "2026-03-02T07:00:00.0000000-05:00",
        "MessageID": f"pm-{n}",
        "ErrorCode": 0,
        "Message": "OK",
    }


def postmark_error(code: int, text: str) -> dict[str, Any]:
    return {"ErrorCode": code, "Message": text}


def error(scheme: str, status: int, text: str) -> Reply:
    """An error answer in the provider's own shape."""
    body = {
        "postmark": {"ErrorCode": {401: 10, 429: 429}.get(status, status), "Message": text},
        "sendgrid": {"errors": [{"field": None, "message": text}]},
        "resend": {"statusCode": status, "name": "error", "message": text},
    }[scheme]
    return reply(body, status)


def decoded(value: str) -> str:
    return str(make_header(decode_header(value)))


def test_a_sealed_email_gives_the_relays_the_headers_that_folding_it_again_gives(
    settings: Settings,
) -> None:
    long_name = "Schrödinger Papers the daily digest of new work on nonlinear wave equations"
    renderer = Renderer(
        replace(settings, from_address=f"{long_name} <papers@example.org>"), LinkSigner(SECRET)
    )
    reader = Subscriber(1, "reader1@example.org", Status.ACTIVE, "UTC", 7, 5)
    sealed = renderer.message(reader, [Pick(make_paper(1), 0.5, "new")], EDITION, message_id(1))
    unsealed = copy.copy(sealed)
    unsealed.wire = b""

    headers = Outgoing.of(sealed).headers
    assert headers == Outgoing.of(unsealed).headers
    assert decoded(headers["List-Id"]).startswith(long_name)
    assert headers["List-Id"].isascii() and "\n" not in headers["List-Id"]


# -- Postmark ---------------------------------------------------------------------------------


def test_postmark_batch_carries_each_message_as_documented_and_all_are_sent(
    feed_server: FeedServer, compose
) -> None:
    feed_server.script("/email/batch", reply([postmark_ok(1), postmark_ok(2)]))
    messages = [compose(1), compose(2)]
    messages[0]["DKIM-Signature"] = "v=1; a=rsa-sha256; d=example.org; s=papers; b=c2ln"

    with relay(feed_server, "postmark") as transport:
        results = transport.send_many(messages)

    assert results == [SendResult("sent", "pm-1"), SendResult("sent", "pm-2")]
    [request] = feed_server.requests
    assert (request.method, request.path) == ("POST", "/email/batch")
    assert request.header("X-Postmark-Server-Token") == TOKEN
    assert request.header("Accept") == "application/json"
    assert request.header("Content-Type") == "application/json"
    first = request.json()[0]
    assert first["From"] == "Schrödinger Papers <papers@example.org>"
    assert first["To"] == "reader1@example.org"
    assert first["ReplyTo"] == "editor@example.org"
    assert first["Subject"] == SUBJECT
    assert first["MessageStream"] == "broadcast"
    assert first["TextBody"] == messages[0].get_body(("plain",)).get_content()
    assert first["HtmlBody"] == messages[0].get_body(("html",)).get_content()
    headers = {h["Name"]: h["Value"] for h in first["Headers"]}
    assert headers["Message-ID"] == message_id(1)
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Unsubscribe"].startswith("<https://papers.example.org/unsubscribe/")
    assert headers["List-Unsubscribe"].endswith(
        ">, <mailto:papers@example.org?subject=unsubscribe>"
    )
    assert decoded(headers["List-Id"]) == "Schrödinger Papers <daily-papers.example.org>"
    assert headers["List-Id"].isascii()
    # The relay writes these itself; our own DKIM signature would not survive its re-encoding.
    assert not {"From", "To", "Subject", "Date", "Content-Type", "DKIM-Signature"} & set(headers)
    assert request.json()[1]["To"] == "reader2@example.org"


def test_postmark_200_batch_with_failed_items_maps_each_by_its_error_code(
    feed_server: FeedServer,
) -> None:
    inactive = (
        "You tried to send to recipient(s) that have been marked as inactive. Found inactive"
        " addresses: reader2@example.org. Inactive recipients are ones that have generated a"
        " hard bounce, a spam complaint, or a manual suppression."
    )
    answer = [
        postmark_ok(1),
        postmark_error(406, inactive),
        postmark_error(300, "Invalid 'To' address: 'reader3@example'."),
        postmark_error(300, "Invalid 'From' address: 'papers@'."),
        postmark_ok(5),
    ]
    feed_server.script("/email/batch", reply(answer))

    results = relay(feed_server, "postmark").send_many([plain(n) for n in range(1, 6)])

    assert [r.status for r in results] == ["sent", "rejected", "rejected", "failed", "sent"]
    assert [r.transport_id for r in results] == ["pm-1", None, None, None, "pm-5"]
    assert results[1].error.startswith("Postmark 406: You tried to send")
    # A refusal of our From address is ours to fix: it must not suppress the subscriber.
    assert results[3].error == "Postmark 300: Invalid 'From' address: 'papers@'."


def test_postmark_refusal_of_the_whole_request_fails_every_message(
    feed_server: FeedServer,
) -> None:
    feed_server.script(
        "/email/batch", reply(postmark_error(402, "The request body is not valid JSON."), 422)
    )

    results = relay(feed_server, "postmark").send_many([plain(1), plain(2)])

    assert (
        results
        == [SendResult("failed", error="Postmark 402: The request body is not valid JSON.")] * 2
    )


def test_postmark_account_refusal_of_every_message_stops_the_transport(
    feed_server: FeedServer,
) -> None:
    refused = postmark_error(400, "The 'From' address you supplied is not a Sender Signature.")
    feed_server.script("/email/batch", reply([refused, refused]))

    with pytest.raises(TransportError, match="Postmark cannot send: The 'From' address"):
        relay(feed_server, "postmark").send_many([plain(1), plain(2)])


def test_postmark_stream_comes_from_the_url_and_describe_never_shows_the_token(
    feed_server: FeedServer, settings: Settings
) -> None:
    feed_server.script("/email/batch", reply([postmark_ok(1)]))
    url = f"postmark://{TOKEN}@?message_stream=daily-digest&base_url={feed_server.url('')}"

    transport = transport_from_url(url, settings)
    assert transport.send(plain(1)) == SendResult("sent", "pm-1")

    assert feed_server.requests[0].json()[0]["MessageStream"] == "daily-digest"
    assert TOKEN not in transport.describe()
    assert transport.describe() == (
        f"Postmark API at {feed_server.url('')}, message stream daily-digest"
    )


# -- SendGrid ---------------------------------------------------------------------------------


def test_sendgrid_posts_one_personalization_per_message_as_documented(
    feed_server: FeedServer, compose
) -> None:
    feed_server.script("/v3/mail/send", Reply(202, b"", {"X-Message-Id": "sg-1"}))
    message = compose(1)

    result = relay(feed_server, "sendgrid").send(message)

    assert result == SendResult("sent", "sg-1")
    [request] = feed_server.requests
    assert (request.method, request.path) == ("POST", "/v3/mail/send")
    assert request.header("Authorization") == f"Bearer {TOKEN}"
    body = request.json()
    assert body["personalizations"] == [{"to": [{"email": "reader1@example.org"}]}]
    assert body["from"] == {"email": "papers@example.org", "name": "Schrödinger Papers"}
    assert body["reply_to_list"] == [{"email": "editor@example.org"}]
    assert body["subject"] == SUBJECT
    assert body["content"] == [
        {"type": "text/plain", "value": message.get_body(("plain",)).get_content()},
        {"type": "text/html", "value": message.get_body(("html",)).get_content()},
    ]
    assert body["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert body["headers"]["List-Unsubscribe"].startswith("<https://papers.example.org/")
    assert body["headers"]["Message-ID"] == message_id(1)
    # Echoed in every event of the message, so that a bounce finds its delivery.
    assert body["custom_args"] == {"newsletter_message_id": message_id(1)}


def test_sendgrid_refusal_is_rejected_only_when_it_names_the_recipient(
    feed_server: FeedServer,
) -> None:
    bad_to = {
        "message": "Does not contain a valid address.",
        "field": "personalizations.0.to.0.email",
        "help": "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html",
    }
    bad_from = {
        "message": "The from email does not contain a valid address.",
        "field": "from.email",
    }
    feed_server.script(
        "/v3/mail/send", reply({"errors": [bad_to]}, 400), reply({"errors": [bad_from]}, 400)
    )
    transport = relay(feed_server, "sendgrid")

    bad_address, bad_sender = transport.send(plain(1)), transport.send(plain(2))

    assert bad_address == SendResult(
        "rejected", error="SendGrid 400: Does not contain a valid address."
    )
    assert bad_sender.status == "failed"
    assert "from email" in bad_sender.error


def test_sendgrid_rate_limit_reset_is_honoured_for_the_messages_after(
    feed_server: FeedServer,
) -> None:
    reset = int(time.time()) + 40
    limits = {
        "X-RateLimit-Limit": "600",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(reset),
    }
    too_many = {"errors": [{"field": None, "message": "too many requests"}]}
    feed_server.script("/v3/mail/send", reply(too_many, 429, **limits))

    results = send_many(relay(feed_server, "sendgrid"), [plain(1), plain(2), plain(3)])

    assert [r.status for r in results] == ["failed"] * 3
    assert all(37 <= r.retry_after <= 41 for r in results)
    assert "rate limit (HTTP 429): too many requests" in results[0].error
    # The second and third messages waited instead of asking again.
    assert len(feed_server.requests) == 1


# -- Resend -----------------------------------------------------------------------------------


def test_resend_batch_carries_each_message_as_documented_and_all_are_sent(
    feed_server: FeedServer, compose
) -> None:
    feed_server.script("/emails/batch", reply({"data": [{"id": "re-1"}, {"id": "re-2"}]}))
    messages = [compose(1), compose(2)]

    results = relay(feed_server, "resend").send_many(messages)

    assert results == [SendResult("sent", "re-1"), SendResult("sent", "re-2")]
    [request] = feed_server.requests
    assert (request.method, request.path) == ("POST", "/emails/batch")
    assert request.header("Authorization") == f"Bearer {TOKEN}"
    assert request.header("x-batch-validation") == "permissive"
    assert request.header("Idempotency-Key").startswith("newsletter/")
    first = request.json()[0]
    assert first["from"] == "Schrödinger Papers <papers@example.org>"
    assert first["to"] == ["reader1@example.org"]
    assert first["reply_to"] == ["editor@example.org"]
    assert first["subject"] == SUBJECT
    assert first["text"] == messages[0].get_body(("plain",)).get_content()
    assert first["html"] == messages[0].get_body(("html",)).get_content()
    assert first["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert first["headers"]["Message-ID"] == message_id(1)
    assert request.json()[1]["to"] == ["reader2@example.org"]


def test_resend_permissive_errors_refuse_only_their_own_messages(
    feed_server: FeedServer,
) -> None:
    invalid_to = (
        "Invalid `to` field. The email address needs to follow the `email@example.com` or"
        " `Name <email@example.com>` format."
    )
    answer = {
        "data": [{"id": "re-1"}, {"id": "re-4"}],
        "errors": [
            {"index": 1, "message": invalid_to},
            {"index": 2, "message": "The `reply_to` field is invalid."},
        ],
    }
    feed_server.script("/emails/batch", reply(answer))

    results = relay(feed_server, "resend").send_many([plain(n) for n in range(1, 5)])

    assert [(r.status, r.transport_id) for r in results] == [
        ("sent", "re-1"),
        ("rejected", None),
        ("failed", None),
        ("sent", "re-4"),
    ]
    assert results[1].error == f"Resend: {invalid_to}"


def test_resend_idempotency_key_is_stable_across_retries_and_differs_across_messages(
    feed_server: FeedServer,
) -> None:
    feed_server.script(
        "/emails/batch",
        reply({"statusCode": 500, "name": "application_error", "message": "boom"}, 500),
        reply({"data": [{"id": "re-x"}, {"id": "re-y"}]}),
    )
    transport = relay(feed_server, "resend")

    first = transport.send_many([plain(1), plain(2)])
    retry = transport.send_many([plain(1), plain(2)])
    transport.send_many([plain(3), plain(4)])
    transport.send(plain(1))
    transport.send(plain(1))

    assert [r.status for r in first] == ["failed", "failed"]
    assert [r.status for r in retry] == ["sent", "sent"]
    keys = [r.header("Idempotency-Key") for r in feed_server.requests]
    assert keys[0] == keys[1]
    assert keys[3] == keys[4]
    assert len({keys[0], keys[2], keys[3]}) == 3


def test_resend_key_already_used_for_another_payload_is_not_a_rejection(
    feed_server: FeedServer,
) -> None:
    feed_server.script(
        "/emails/batch",
        reply(
            {
                "statusCode": 409,
                "name": "invalid_idempotent_request",
                "message": "Same idempotency key used with a different request payload.",
            },
            409,
        ),
    )

    [result] = relay(feed_server, "resend").send_many([plain(1)])

    # It may have gone out under this key: never suppress the subscriber for it.
    assert (result.status, result.maybe_sent) == ("failed", True)
    assert "invalid_idempotent_request" in result.error


def test_resend_exhausted_window_waits_or_defers_the_next_request(
    feed_server: FeedServer,
) -> None:
    feed_server.script(
        "/emails/batch",
        reply({"data": [{"id": "re-1"}]}, **{"ratelimit-remaining": "0", "ratelimit-reset": "1"}),
        reply({"data": [{"id": "re-2"}]}, **{"ratelimit-remaining": "0", "ratelimit-reset": "20"}),
    )
    sleeps: list[float] = []
    transport = relay(feed_server, "resend", sleep=sleeps.append, max_wait=5)

    transport.send(plain(1))
    second = transport.send(plain(2))
    third = transport.send(plain(3))

    # A second's wait is slept through; twenty are left to the caller to schedule.
    assert len(sleeps) == 1 and 0 < sleeps[0] <= 1
    assert second == SendResult("sent", "re-2")
    assert third.status == "failed" and 18 <= third.retry_after <= 20
    assert len(feed_server.requests) == 2


# -- every relay ------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", RELAYS)
def test_refused_token_is_a_clear_transport_error_that_never_shows_it(
    feed_server: FeedServer, scheme: str
) -> None:
    _, path = RELAYS[scheme]
    feed_server.script(path, error(scheme, 401, f"API key {TOKEN} is invalid"))

    with pytest.raises(TransportError) as raised:
        relay(feed_server, scheme).send(plain(1))

    refusal = "refused the API token or the account (HTTP 401): API key [token] is invalid"
    assert str(raised.value).endswith(refusal)
    assert TOKEN not in str(raised.value)


@pytest.mark.parametrize("scheme", RELAYS)
def test_rate_limit_fails_every_message_with_the_wait_and_holds_the_next_request(
    feed_server: FeedServer, scheme: str
) -> None:
    _, path = RELAYS[scheme]
    too_many = error(scheme, 429, "Too many requests")
    too_many.headers["Retry-After"] = "30"
    feed_server.script(path, too_many)
    transport = relay(feed_server, scheme)

    results = send_many(transport, [plain(1), plain(2)])
    later = transport.send(plain(3))

    # SendGrid sends one by one: its second message is held back before it is asked.
    assert [r.status for r in results] == ["failed", "failed"]
    assert all(20 <= r.retry_after <= 30 for r in results)  # 30 s asked, minus time passed
    assert later.status == "failed" and 20 <= later.retry_after <= 30
    assert len(feed_server.requests) == 1


@pytest.mark.parametrize("scheme", RELAYS)
def test_server_error_fails_the_messages_for_a_later_retry(
    feed_server: FeedServer, scheme: str
) -> None:
    _, path = RELAYS[scheme]
    feed_server.script(path, Reply(503, b"<html>Service Unavailable</html>"))

    result = relay(feed_server, scheme).send(plain(1))

    assert result.status == "failed" and not result.maybe_sent
    assert result.error == (
        f"{RELAYS[scheme][0].name}: server error (HTTP 503): <html>Service Unavailable</html>"
    )


@pytest.mark.parametrize("scheme", RELAYS)
def test_lost_answer_may_have_sent_and_refused_connection_cannot_have(
    feed_server: FeedServer, scheme: str
) -> None:
    _, path = RELAYS[scheme]
    feed_server.script(path, Reply(200, b"{}", delay=1.0))
    cls, _ = RELAYS[scheme]

    lost = relay(feed_server, scheme, timeout=0.2).send(plain(1))
    refused = cls(TOKEN, base_url=f"http://127.0.0.1:{free_port()}").send(plain(1))

    assert (lost.status, lost.maybe_sent) == ("failed", True)
    assert "ReadTimeout" in lost.error
    assert (refused.status, refused.maybe_sent) == ("failed", False)
    assert "cannot connect" in refused.error


@pytest.mark.parametrize("scheme", RELAYS)
def test_transport_url_takes_the_token_from_the_url_or_else_the_environment(
    scheme: str, settings: Settings, monkeypatch
) -> None:
    from newsletter.settings import load_settings

    cls, _ = RELAYS[scheme]
    monkeypatch.setenv("NEWSLETTER_RELAY_TOKEN", "from-env")
    from_env = transport_from_url(f"{scheme}://", load_settings())
    from_url = transport_from_url(f"{scheme}://in-url@", settings)

    assert type(from_env) is cls and from_env._token == "from-env"
    assert from_url._token == "in-url"
    with pytest.raises(TransportError, match="NEWSLETTER_RELAY_TOKEN"):
        transport_from_url(f"{scheme}://", settings)


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        (f"resend://{TOKEN}", "token before an @"),
        (f"resend://{TOKEN}@api.resend.com", "another API address goes in \\?base_url="),
        (f"resend://{TOKEN}@?stream=x", "unknown transport option\\(s\\) stream"),
        (f"resend://{TOKEN}@?base_url=http://relay.example.org", "must be https://"),
        (f"resend://{TOKEN}[@", "must be percent-encoded"),
    ],
)
def test_malformed_transport_url_is_refused_without_repeating_the_token(
    url: str, complaint: str, settings: Settings
) -> None:
    with pytest.raises(TransportError, match=complaint) as raised:
        transport_from_url(url, settings)
    assert TOKEN not in str(raised.value)


# -- send_many --------------------------------------------------------------------------------


def test_send_many_splits_into_batches_of_the_relays_size(feed_server: FeedServer) -> None:
    feed_server.script(
        "/emails/batch",
        reply({"data": [{"id": f"re-{n}"} for n in range(100)]}),
        reply({"data": [{"id": f"re-{n}"} for n in range(100, 150)]}),
    )
    transport = relay(feed_server, "resend")

    results = send_many(transport, [plain(n) for n in range(150)])

    assert [r.transport_id for r in results] == [f"re-{n}" for n in range(150)]
    assert [len(r.json()) for r in feed_server.requests] == [100, 50]
    with pytest.raises(ValueError, match="at most 100"):
        transport.send_many([plain(n) for n in range(101)])


class Flaky(OneAtATime):
    """A transport without a batch endpoint whose connection dies after ``works`` sends."""

    delivers_mail = True

    def __init__(self, works: int):
        self.works = works

    def send(self, message: EmailMessage) -> SendResult:
        if self.works == 0:
            raise TransportError("connection lost")
        self.works -= 1
        return SendResult("sent", message["Message-ID"])


def test_send_many_sends_one_by_one_and_keeps_what_went_out_when_the_transport_dies() -> None:
    results = send_many(Flaky(works=2), [plain(1), plain(2), plain(3), plain(4)])

    assert results == [
        SendResult("sent", message_id(1)),
        SendResult("sent", message_id(2)),
        SendResult("failed", error="connection lost"),
        SendResult("failed", error="connection lost"),
    ]
    with pytest.raises(TransportError, match="connection lost"):
        send_many(Flaky(works=0), [plain(1), plain(2)])


@pytest.mark.parametrize(("scheme", "largest"), [("postmark", 500), ("resend", 100)])
def test_batch_size_comes_from_the_url_within_the_providers_largest(
    scheme: str, largest: int, settings: Settings
) -> None:
    assert transport_from_url(f"{scheme}://tok@", settings).max_batch == largest
    assert transport_from_url(f"{scheme}://tok@?batch_size=20", settings).max_batch == 20
    for bad in ("0", str(largest + 1), "ten"):
        with pytest.raises(
            TransportError, match=f"batch_size must be a whole number from 1 to {largest}"
        ):
            transport_from_url(f"{scheme}://tok@?batch_size={bad}", settings)
    assert transport_from_url("sendgrid://tok@", settings).max_batch == 1


def test_postmark_splits_a_batch_that_would_pass_its_request_size(
    feed_server: FeedServer,
) -> None:
    class SmallRequests(PostmarkTransport):
        max_request_bytes = 500  # each of these messages is about 200 bytes of JSON

    feed_server.script(
        "/email/batch",
        reply([postmark_ok(1), postmark_ok(2)]),
        reply([postmark_ok(3), postmark_ok(4)]),
        reply([postmark_ok(5)]),
    )
    transport = SmallRequests(TOKEN, base_url=feed_server.url(""))

    results = transport.send_many([plain(n) for n in range(1, 6)])

    assert [r.transport_id for r in results] == [f"pm-{n}" for n in range(1, 6)]
    assert [len(r.json()) for r in feed_server.requests] == [2, 2, 1]
    assert all(len(r.body) <= 500 for r in feed_server.requests)
