"""Bounces and complaints that relays report by webhook, read into one shape
(:class:`BounceEvent`) and applied to the subscribers by :func:`apply_events`: a hard
bounce suppresses the address at once (``bounced``), a complaint or an unsubscribe request
too (``unsubscribed``), and soft bounces once there have been ``soft_bounce_limit`` of
them within ``soft_bounce_window``. A suppressed address stays so until an operator
reactivates it.

Webhook formats:

- Postmark posts one JSON object per event: the Bounce webhook
  (https://postmarkapp.com/developer/webhooks/bounce-webhook) with a bounce ``Type``
  (https://postmarkapp.com/developer/api/bounce-api#bounce-types), and the SpamComplaint
  webhook (https://postmarkapp.com/developer/webhooks/spam-complaint-webhook). Postmark
  signs neither: the route that receives them must check a secret of its own (basic auth
  in the webhook URL).
- SendGrid posts a JSON array of events
  (https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event), batched:
  up to 768 KB in one post.

:func:`parse_webhook` reads a body as it arrives; anything else than what the provider
sends (not JSON, nested too deeply to read, a field that is not a string) is a
WebhookError, never a crash.
"""

from __future__ import annotations

import json
import logging
import reprlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from ..models import SUPPRESSED, Status, to_utc_iso
from ..store import Store, SubscriberNotFound

log = logging.getLogger(__name__)

Kind = Literal["hard_bounce", "soft_bounce", "complaint", "unsubscribe"]

#: The event each kind is recorded as in the events table.
EVENT_KINDS: dict[Kind, str] = {
    "hard_bounce": "bounce.hard",
    "soft_bounce": "bounce.soft",
    "complaint": "bounce.complaint",
    "unsubscribe": "bounce.unsubscribe",
}


@dataclass(frozen=True)
class BounceEvent:
    email: str
    kind: Kind
    provider: str
    #: The relay's id of the message (the ledger's ``transport_id`` for Postmark).
    provider_message_id: str | None
    #: The receiving server's words, or the relay's description.
    detail: str
    #: The relay's id of this event: a webhook delivered twice is applied once.
    event_id: str | None = None
    #: Our Message-ID, where the relay hands it back (SendGrid's custom arguments).
    message_id: str | None = None
    #: The edition the bounced message was of, where it is known (a VERP token names it).
    edition: str | None = None


class WebhookError(ValueError):
    """A webhook body that is not what the provider sends (answer it with a 400)."""


#: Postmark bounce types that say something about the address. The others
#: (AutoResponder, AddressChange, Subscribe, ChallengeVerification, OpenRelayTest,
#: VirusNotification, DMARCPolicy, Unknown...) do not, and are ignored.
POSTMARK_TYPES: dict[str, Kind] = {
    "HardBounce": "hard_bounce",
    "BadEmailAddress": "hard_bounce",
    # Deactivated by hand in Postmark's console: Postmark will not send there any more.
    "ManuallyDeactivated": "hard_bounce",
    "SoftBounce": "soft_bounce",
    "Transient": "soft_bounce",
    "DnsError": "soft_bounce",
    # The receiving server blocked the message: often our reputation, not the address.
    "Blocked": "soft_bounce",
    # A filter, not the person, took the message for spam.
    "SpamNotification": "soft_bounce",
    "SpamComplaint": "complaint",
    "Unsubscribe": "unsubscribe",
}

#: SendGrid ``dropped`` reasons that say something about the address: SendGrid did not
#: even try, because of its own suppression lists.
SENDGRID_DROPS: dict[str, Kind] = {
    "Bounced Address": "hard_bounce",
    "Invalid": "hard_bounce",
    "Spam Reporting Address": "complaint",
    "Unsubscribed Address": "unsubscribe",
}


def parse_postmark(payload: Any) -> list[BounceEvent]:
    """The event in one Postmark Bounce or SpamComplaint webhook; none for other records
    (Delivery, Open, Click...) and for bounce types that are not about the address."""
    if not isinstance(payload, dict):
        raise WebhookError("a Postmark webhook posts one JSON object")
    if payload.get("RecordType") not in ("Bounce", "SpamComplaint"):
        return []
    kind = POSTMARK_TYPES.get(_text(payload.get("Type")) or "")
    if kind is None:
        return []
    return [
        BounceEvent(
            email=_email(payload.get("Email"), "Postmark"),
            kind=kind,
            provider="postmark",
            provider_message_id=_text(payload.get("MessageID")),
            detail=_text(payload.get("Details") or payload.get("Description")) or kind,
            event_id=_text(payload.get("ID")),
        )
    ]


def parse_sendgrid(payload: Any) -> list[BounceEvent]:
    """The bounces, complaints and unsubscribes in one SendGrid event webhook post."""
    if not isinstance(payload, list) or not all(isinstance(e, dict) for e in payload):
        raise WebhookError("a SendGrid event webhook posts a JSON array of objects")
    events = []
    for item in payload:
        kind = _sendgrid_kind(item)
        if kind is None:
            continue
        events.append(
            BounceEvent(
                email=_email(item.get("email"), "SendGrid"),
                kind=kind,
                provider="sendgrid",
                provider_message_id=_text(item.get("sg_message_id")),
                detail=_text(item.get("reason") or item.get("response")) or item["event"],
                event_id=_text(item.get("sg_event_id")),
                message_id=_text(item.get("newsletter_message_id")),
            )
        )
    return events


def _sendgrid_kind(item: dict[str, Any]) -> Kind | None:
    event = item.get("event")
    if event == "bounce":
        # type "blocked": the receiving server refused the message for now (content,
        # reputation); type "bounce": the address does not work.
        return "soft_bounce" if _text(item.get("type")) == "blocked" else "hard_bounce"
    if event == "spamreport":
        return "complaint"
    if event in ("unsubscribe", "group_unsubscribe"):
        return "unsubscribe"
    if event == "dropped":
        return SENDGRID_DROPS.get(_text(item.get("reason")) or "")
    # processed, deferred (SendGrid retries by itself), delivered, open, click...
    return None


#: The webhook parser of each provider, by its name in the route (``/webhooks/NAME``).
PARSERS: dict[str, Callable[[Any], list[BounceEvent]]] = {
    "postmark": parse_postmark,
    "sendgrid": parse_sendgrid,
}


def parse_webhook(provider: str, body: bytes) -> list[BounceEvent]:
    """The events in the body of a webhook post from ``provider`` (a key of PARSERS).
    WebhookError, with a short message, for a body that is not JSON in UTF-8, is nested
    too deeply to decode, holds a number too long to convert, or is not the provider's
    shape."""
    try:
        payload = json.loads(body)
    except RecursionError as exc:
        raise WebhookError("JSON nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an int too long
        raise WebhookError("not JSON that can be read") from exc
    return PARSERS[provider](payload)


def _email(value: Any, provider: str) -> str:
    if not isinstance(value, str) or "@" not in value:
        raise WebhookError(f"{provider} event without a recipient address: {reprlib.repr(value)}")
    return _storable(value).strip()


def _text(value: Any) -> str | None:
    """A field the providers send as a string (an id may be a number); WebhookError for
    anything else."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise WebhookError(f"a {type(value).__name__} where a string belongs")
    return _storable(value)


def _storable(text: str) -> str:
    """``text``, unless the store cannot keep it (a lone surrogate, from a \\ud800 escape)."""
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise WebhookError("a string that is not valid Unicode") from exc
    return text


def apply_events(
    store: Store,
    events: Sequence[BounceEvent],
    soft_bounce_limit: int,
    *,
    soft_bounce_window: timedelta = timedelta(days=30),
) -> list[str]:
    """Record each event and suppress the addresses it condemns; returns what was done
    for each, in order (for the log and the webhook's answer).

    Soft bounces count since the later of ``soft_bounce_window`` ago and the subscriber's
    last (re)activation, so an operator who reactivates an address starts it afresh."""
    return [_apply(store, e, soft_bounce_limit, soft_bounce_window) for e in events]


def _apply(store: Store, event: BounceEvent, limit: int, window: timedelta) -> str:
    try:
        subscriber = store.get_subscriber(event.email)
    except SubscriberNotFound:
        log.warning("%s %s for %s: not a subscriber", event.provider, event.kind, event.email)
        return "unknown address"
    with store.transaction():
        if event.event_id and _recorded(store, subscriber.id, event):
            return "already recorded"
        store.log_event(
            EVENT_KINDS[event.kind],
            subscriber.id,
            event.edition,
            provider=event.provider,
            event_id=event.event_id,
            provider_message_id=event.provider_message_id,
            message_id=event.message_id,
            reason=event.detail,
        )
        if subscriber.status in SUPPRESSED:
            return f"already {subscriber.status}"
        if event.kind == "hard_bounce":
            store.update_subscriber(subscriber.id, status=Status.BOUNCED)
            return "bounced"
        if event.kind in ("complaint", "unsubscribe"):
            store.update_subscriber(subscriber.id, status=Status.UNSUBSCRIBED)
            return "unsubscribed"
        count = _soft_bounces(store, subscriber.id, window)
        if count >= limit:
            store.update_subscriber(subscriber.id, status=Status.BOUNCED)
            return f"bounced after {count} soft bounces"
        return f"soft bounce {count} of {limit}"


def _recorded(store: Store, subscriber_id: int, event: BounceEvent) -> bool:
    """Whether this very event (same relay, same event id) was applied already."""
    return store.has_subscriber_event(
        subscriber_id, EVENT_KINDS.values(), provider=event.provider, event_id=event.event_id
    )


def _soft_bounces(store: Store, subscriber_id: int, window: timedelta) -> int:
    """Soft bounces since ``window`` ago or the last (re)activation, whichever is later."""
    since = to_utc_iso(datetime.now(UTC) - window)
    return store.count_events_since_active(subscriber_id, EVENT_KINDS["soft_bounce"], since)
