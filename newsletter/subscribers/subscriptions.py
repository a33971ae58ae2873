"""Subscriptions managed by the subscribers themselves: sign-up with double opt-in,
confirmation, preferences, unsubscribe and resubscribe, and the clean-up of sign-ups that
were never confirmed.

The web app is a thin shell over these functions, and the console can call them too. A
sign-up never tells the person at the form whether the address was known: whatever its
state, the answer is one email to that address (a confirmation link, or for a subscriber who
already gets the newsletter, their preferences link), and nothing else changes until the
owner of the address acts on it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

from ..mail.confirmation import confirmation_email
from ..mail.render import FEEDBACK_SIGNALS
from ..mail.transport import transport_from_url
from ..models import Paper, Status, Subscriber, to_utc_iso
from ..settings import Settings
from ..store import Store, SubscriberNotFound
from ..tokens import BadToken, LinkSigner
from ..transports import SendResult, TransportError
from .profiles import (
    InvalidSubscriber,
    add_subscriber,
    check_frequency,
    check_hour,
    check_interests,
    check_max_papers,
    check_pause,
    check_timezone,
    check_trending_papers,
    check_weekday,
    normalize_email,
    parse_categories,
    parse_terms,
    update_subscriber,
)

log = logging.getLogger(__name__)

#: Subscribers in these states already get (or chose to pause) the newsletter.
SUBSCRIBED = frozenset({Status.ACTIVE, Status.PAUSED})
#: Profile fields that change what the ranking picks.
RANKING_FIELDS = frozenset({"interests", "categories", "muted_terms", "max_papers"})


class InvalidForm(InvalidSubscriber):
    """Some fields of a form are not acceptable; ``errors`` maps each one to its message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def _check_fields(
    values: Mapping[str, Any], checks: Mapping[str, Callable[[Any], Any]]
) -> dict[str, Any]:
    """Each value through its check, reporting every bad field at once rather than the first."""
    valid, errors = {}, {}
    for name, check in checks.items():
        try:
            valid[name] = check(values.get(name))
        except InvalidSubscriber as exc:
            errors[name] = str(exc)
    if errors:
        raise InvalidForm(errors)
    return valid


# -- reading links ----------------------------------------------------------------------------


def read_link(
    store: Store, settings: Settings, signer: LinkSigner, purpose: str, token: str
) -> tuple[Subscriber, dict[str, Any]]:
    """The subscriber a link was made for, and its data.

    BadToken for anything else: a token altered in any way (even in the spare bits of its
    last base64 character, which would otherwise still verify), made for another purpose or
    for a subscriber who is gone, or a confirmation link older than ``pending_expiry_days``.
    """
    parsed = signer.read(purpose, token)
    try:
        subscriber = store.get_subscriber(parsed.subscriber_id)
    except SubscriberNotFound as exc:
        raise BadToken(f"this {purpose} link is not valid") from exc
    if not parsed.matches(subscriber.email) or not _data_ok(purpose, parsed.data, settings):
        raise BadToken(f"this {purpose} link is not valid")
    return subscriber, parsed.data


def _data_ok(purpose: str, data: dict[str, Any], settings: Settings) -> bool:
    if purpose == "confirm":
        issued = data.get("issued")
        max_age = settings.pending_expiry_days * 86400
        return type(issued) is int and time.time() - issued <= max_age
    return True


@dataclass(frozen=True)
class Feedback:
    """What a feedback link asks to record: ``subscriber`` wants more (``signal`` "more")
    or fewer ("less") papers like ``paper``."""

    subscriber: Subscriber
    paper: Paper
    signal: str

    @property
    def value(self) -> int:
        """The signal as the store keeps it: +1 or -1."""
        return FEEDBACK_SIGNALS[self.signal]


def read_feedback(
    store: Store,
    settings: Settings,
    signer: LinkSigner,
    token: str,
    paper_id: str | None,
    signal: str | None,
) -> Feedback:
    """What the feedback link ``/feedback/TOKEN?paper=PAPER_ID&signal=SIGNAL`` asks.

    The token (one per email, no data) names the subscriber who marks; the paper and the
    signal come from the query, so the reader could change them, and may: they can only
    mark papers for themselves. BadToken, as for any bad link, for a token that read_link
    refuses, a paper that is not in the store, or a signal other than "more" or "less".
    """
    subscriber, _ = read_link(store, settings, signer, "feedback", token)
    paper = store.get_paper(paper_id) if paper_id else None
    if paper is None or signal is None or signal not in FEEDBACK_SIGNALS:
        raise BadToken("this feedback link is not valid")
    return Feedback(subscriber, paper, signal)


# -- signing up -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignUp:
    email: str
    interests: str
    categories: list[str]


def check_sign_up(values: Mapping[str, Any]) -> SignUp:
    """The fields of a sign-up form (``email``, ``interests``, ``categories``), checked;
    InvalidForm lists every problem. Only the address is needed: a reader who gives no
    interests gets the day's trending papers."""
    valid = _check_fields(
        values,
        {
            "email": lambda v: normalize_email(v or ""),
            "interests": check_interests,
            "categories": parse_categories,
        },
    )
    return SignUp(valid["email"], valid["interests"], valid["categories"])


def visitor_profile(settings: Settings, interests: str | None) -> Subscriber:
    """What the home page's "See what you would get" ranks: a visitor's interests as a
    subscriber with the defaults of a new one, who is not stored (id 0: no stored
    subscriber has it). InvalidForm for interests the profile could not hold."""
    valid = _check_fields({"interests": interests}, {"interests": check_interests})
    return Subscriber(
        id=0,
        email="",
        status=Status.ACTIVE,
        timezone=settings.timezone,
        delivery_hour=settings.delivery_hour,
        max_papers=settings.papers_per_email,
        interests=valid["interests"],
    )


def start_subscription(
    store: Store,
    settings: Settings,
    signer: LinkSigner,
    sign_up: SignUp,
    *,
    ip: str | None,
    source: str = "web",
) -> Subscriber | None:
    """Record a sign-up and return the subscriber whose address is to get the answer, by
    :func:`answer_sign_up` (None for a suppressed, bounced, address: it is not mailed until
    an operator reactivates it; the page answers the same).

    A new address becomes a pending subscriber (consent time and IP recorded) and gets a
    confirmation link. A sign-up that is still pending is replaced by the new one (profile,
    consent and expiry start afresh). An unsubscribed address stays unsubscribed until its
    owner confirms. An address that already gets the newsletter is left as it is and is sent
    its preferences link instead. Only database work happens here, about the same for every
    state; composing the email, the slow part, is for answer_sign_up.
    """
    with store.transaction():
        try:
            subscriber: Subscriber | None = store.get_subscriber(sign_up.email)
        except SubscriberNotFound:
            subscriber = None
        if subscriber is not None and subscriber.status == Status.PENDING:
            store.remove_subscriber(subscriber.id)
            subscriber = None
        if subscriber is not None and subscriber.status == Status.BOUNCED:
            store.log_event("subscription.suppressed", subscriber.id, source=source, ip=ip)
            return None
        if subscriber is None:
            subscriber = add_subscriber(
                store,
                settings,
                sign_up.email,
                interests=sign_up.interests,
                categories=sign_up.categories,
                status=Status.PENDING,
                consent_source=source,
                consent_ip=ip,
            )
        store.log_event("subscription.requested", subscriber.id, source=source, ip=ip)
    return subscriber


def answer_sign_up(
    store: Store, settings: Settings, signer: LinkSigner, subscriber: Subscriber | None
) -> SendResult | None:
    """Compose and send the email that answers a sign-up to ``subscriber``, as
    :func:`start_subscription` returned it (nothing for None, a suppressed address). The web
    app calls it after its answer, for every state alike, so that the answer's time does
    not tell the state."""
    if subscriber is None:
        return None
    return send_message(store, settings, confirmation_message(settings, signer, subscriber))


def confirmation_message(
    settings: Settings, signer: LinkSigner, subscriber: Subscriber
) -> EmailMessage:
    """The email that answers a sign-up: a confirmation link, or for an address that is
    already subscribed, its preferences link."""
    name = settings.brand
    already = subscriber.status in SUBSCRIBED
    if already:
        subject = f"You already receive {name}"
        url = signer.url(settings.base_url, "preferences", subscriber)
    else:
        subject = f"Confirm your subscription to {name}"
        url = signer.url(settings.base_url, "confirm", subscriber, issued=int(time.time()))
    context = {
        "subject": subject,
        "brand": name,
        "url": url,
        "already_subscribed": already,
        "email": subscriber.email,
        "expiry_days": settings.pending_expiry_days,
        "sender_identity": settings.sender_identity,
    }
    return confirmation_email(settings, subscriber.email, context)


def send_message(store: Store, settings: Settings, message: EmailMessage) -> SendResult:
    """Send one message through the configured transport. A failure is logged and recorded
    as an event, not raised: the person at the form has had their answer already."""
    transport = transport_from_url(settings.transport, settings)
    try:
        transport.open()
        result = transport.send(message)
    except TransportError as exc:
        result = SendResult("failed", error=str(exc))
    finally:
        transport.close()
    if result.status != "sent":
        log.error("cannot send %r to %s: %s", message["Subject"], message["To"], result.error)
        store.log_event("subscription.mail_failed", to=str(message["To"]), error=result.error)
    return result


def confirm_subscription(store: Store, subscriber: Subscriber, *, ip: str | None) -> Subscriber:
    """Activate a subscriber who followed their confirmation link (pending, or coming back
    after unsubscribing); one who is already subscribed stays as they are."""
    if subscriber.status in SUBSCRIBED or subscriber.status == Status.BOUNCED:
        return subscriber  # a bounced address comes back only through an operator
    with store.transaction():
        subscriber = store.update_subscriber(subscriber.id, status=Status.ACTIVE)
        store.log_event("subscription.confirmed", subscriber.id, ip=ip)
    return subscriber


def expire_pending(store: Store, settings: Settings, now: datetime | None = None) -> list[str]:
    """Forget the sign-ups not confirmed within ``pending_expiry_days``; returns their
    addresses. Their confirmation links have stopped working at the same age."""
    cutoff = to_utc_iso((now or datetime.now(UTC)) - timedelta(days=settings.pending_expiry_days))
    with store.transaction():
        expired = [s for s in store.list_subscribers(Status.PENDING) if s.created_at < cutoff]
        for subscriber in expired:
            store.remove_subscriber(subscriber.id)
        if expired:
            store.log_event("subscriptions.expired", count=len(expired))
    return [s.email for s in expired]


# -- unsubscribing ----------------------------------------------------------------------------


def unsubscribe(store: Store, subscriber: Subscriber, *, via: str) -> Subscriber:
    """Stop all mail to a subscriber at once; ``via`` says how (``one-click``, ``page``)."""
    if subscriber.status in (Status.UNSUBSCRIBED, Status.BOUNCED):
        return subscriber  # no mail goes there already; a bounce stays a bounce
    with store.transaction():
        subscriber = store.update_subscriber(subscriber.id, status=Status.UNSUBSCRIBED)
        store.log_event("subscription.unsubscribed", subscriber.id, via=via)
    return subscriber


def resubscribe(store: Store, subscriber: Subscriber) -> Subscriber:
    """Undo an unsubscribe, from the page that confirmed it (the link came in their mail)."""
    if subscriber.status != Status.UNSUBSCRIBED:
        return subscriber
    with store.transaction():
        subscriber = store.update_subscriber(subscriber.id, status=Status.ACTIVE)
        store.log_event("subscription.resubscribed", subscriber.id)
    return subscriber


# -- preferences ------------------------------------------------------------------------------

PREFERENCE_CHECKS: dict[str, Callable[[Any], Any]] = {
    "interests": check_interests,
    "categories": parse_categories,
    "muted_terms": parse_terms,
    "max_papers": check_max_papers,
    "trending_papers": check_trending_papers,
    "frequency": check_frequency,
    "weekly_day": check_weekday,
    "delivery_hour": check_hour,
    "timezone": lambda v: check_timezone((v or "").strip()),
    "paused_until": check_pause,
}


def save_preferences(
    store: Store, subscriber: Subscriber, values: Mapping[str, Any]
) -> tuple[Subscriber, bool]:
    """Apply the preferences form (every field of :data:`PREFERENCE_CHECKS`; an empty
    ``paused_until`` ends a pause). Returns the subscriber and whether what the ranking
    picks may have changed. InvalidForm lists every bad field and changes nothing."""
    changes = _check_fields(values, PREFERENCE_CHECKS)
    updated = update_subscriber(store, subscriber.email, **changes)
    return updated, any(getattr(subscriber, f) != getattr(updated, f) for f in RANKING_FIELDS)
