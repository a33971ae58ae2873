"""Signed per-subscriber links (itsdangerous): unsubscribe, preferences, confirm, feedback,
and the archive ("View in your browser", for one edition).

A token names the subscriber by id and by a digest of their address, so that a link stays
valid for as long as the subscription does (unsubscribe links must keep working for
months) but dies with the subscriber: a new subscriber who later gets the same row id
cannot be reached by an old link. Each purpose has its own salt, so a token made for one
purpose is refused for any other. Keys rotate: the current key signs, the old keys
(``NEWSLETTER_OLD_SECRET_KEYS``) still verify.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadData, URLSafeSerializer
from itsdangerous.encoding import base64_decode, base64_encode

from .models import Subscriber
from .settings import Settings, SettingsError

PURPOSES = frozenset({"unsubscribe", "preferences", "confirm", "feedback", "archive"})
LOCAL_KEY_META = "local_secret_key"


class BadToken(ValueError):
    """A link that was not made by us, or not for this purpose, or was altered."""


@dataclass(frozen=True)
class LinkToken:
    subscriber_id: int
    email_digest: str
    #: Purpose-specific data, e.g. ``{"issued": 1767225600}`` (a Unix time) for confirm.
    data: dict[str, Any] = field(default_factory=dict)

    def matches(self, email: str) -> bool:
        return self.email_digest == email_digest(email)


def email_digest(email: str) -> str:
    return hashlib.sha256(email.casefold().encode()).hexdigest()[:12]


class LinkSigner:
    """Makes and reads the tokens of every link we send."""

    def __init__(self, secret_key: str, old_keys: Sequence[str] = ()):
        if not secret_key:
            raise ValueError("a LinkSigner needs a secret key")
        # itsdangerous signs with the last key and verifies with any of them.
        self._keys = [*[k for k in old_keys if k], secret_key]

    def _serializer(self, purpose: str) -> URLSafeSerializer:
        if purpose not in PURPOSES:
            raise ValueError(f"unknown link purpose {purpose!r}")
        return URLSafeSerializer(self._keys, salt=f"newsletter.{purpose}")

    def path(self, purpose: str, subscriber: Subscriber, **data: Any) -> str:
        """The path of a signed link, ``/PURPOSE/TOKEN``: the routes of the web app."""
        return f"/{purpose}/{self.make(purpose, subscriber.id, subscriber.email, **data)}"

    def url(self, base_url: str, purpose: str, subscriber: Subscriber, **data: Any) -> str:
        """The whole link, under the site's ``base_url``."""
        return base_url.rstrip("/") + self.path(purpose, subscriber, **data)

    def make(self, purpose: str, subscriber_id: int, email: str, **data: Any) -> str:
        payload: list[Any] = [subscriber_id, email_digest(email)]
        if data:
            payload.append(data)
        return self._serializer(purpose).dumps(payload)

    def read(self, purpose: str, token: str) -> LinkToken:
        """The subscriber (and data) a token was made for; BadToken if it was not made by
        us for this purpose, or was altered in any way."""
        if not _canonical(token):
            raise BadToken(f"this {purpose} link is not valid")
        try:
            payload = self._serializer(purpose).loads(token)
        except (BadData, TypeError, ValueError, UnicodeError) as exc:
            raise BadToken(f"this {purpose} link is not valid") from exc
        if (
            not isinstance(payload, list)
            or len(payload) not in (2, 3)
            or not isinstance(payload[0], int)
            or not isinstance(payload[1], str)
            or (len(payload) == 3 and not isinstance(payload[2], dict))
        ):
            raise BadToken(f"this {purpose} link is not valid")
        return LinkToken(payload[0], payload[1], payload[2] if len(payload) == 3 else {})


def _canonical(token: str) -> bool:
    """True if each base64 part of ``token`` is spelled exactly as its bytes encode. Base64
    leaves slack in a last character's low bits, so a changed character can decode to the
    same bytes and pass the signature check: such a token was not made by us."""
    payload, _, signature = token.rpartition(".")
    try:
        return all(
            part and base64_encode(base64_decode(part)).decode() == part
            for part in (payload.removeprefix("."), signature)
        )
    except BadData:
        return False


def link_signer(settings: Settings, store, *, real_send: bool) -> LinkSigner:
    """The signer for links. A real send needs ``NEWSLETTER_SECRET_KEY``; a local run (file
    outbox, preview, the demo) may create a key once and keep it in the database."""
    if settings.secret_key:
        return LinkSigner(settings.secret_key, settings.old_secret_keys)
    if real_send:
        raise SettingsError(
            "NEWSLETTER_SECRET_KEY is not set. Real emails carry signed unsubscribe and "
            "preference links, and those must verify on the web app for months: set a long "
            "random key (python -c 'import secrets; print(secrets.token_urlsafe(32))') in the "
            "environment of every newsletter process."
        )
    key = store.get_meta(LOCAL_KEY_META)
    if key is None:
        key = secrets.token_urlsafe(32)
        store.set_meta(LOCAL_KEY_META, key)
    return LinkSigner(key)
