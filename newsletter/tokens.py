"""Signed per-subscriber links (itsdangerous): preferences, unsubscribe, feedback.

A token names the subscriber by id and by a digest of their address, so that a link stays
valid for as long as the subscription does (unsubscribe links must keep working for
months) but dies with the subscriber: a new subscriber who later gets the same row id
cannot be reached by an old link.
"""

from __future__ import annotations

import hashlib
import secrets

from itsdangerous import BadData, URLSafeSerializer

from .settings import Settings, SettingsError

PURPOSES = frozenset({"unsubscribe", "preferences"})
LOCAL_KEY_META = "local_secret_key"


class BadToken(ValueError):
    """A link that was not made by us, or not for this purpose, or was altered."""


def email_digest(email: str) -> str:
    return hashlib.sha256(email.casefold().encode()).hexdigest()[:12]


def _serializer(secret_key: str, purpose: str) -> URLSafeSerializer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown link purpose {purpose!r}")
    return URLSafeSerializer(secret_key, salt=f"newsletter.{purpose}")


def make_token(secret_key: str, purpose: str, subscriber_id: int, email: str) -> str:
    return _serializer(secret_key, purpose).dumps([subscriber_id, email_digest(email)])


def read_token(secret_key: str, purpose: str, token: str) -> tuple[int, str]:
    """The (subscriber id, address digest) a token was made for; BadToken if forged."""
    try:
        subscriber_id, digest = _serializer(secret_key, purpose).loads(token)
    except (BadData, TypeError, ValueError) as exc:
        raise BadToken(f"this {purpose} link is not valid (altered or not ours)") from exc
    if not isinstance(subscriber_id, int) or not isinstance(digest, str):
        raise BadToken(f"this {purpose} link is not valid")
    return subscriber_id, digest


def resolve_secret_key(settings: Settings, store, *, real_send: bool) -> str:
    """The key that signs links. A real send needs ``NEWSLETTER_SECRET_KEY``; a local run
    (file outbox, preview) may create a key once and keep it in the database."""
    if settings.secret_key:
        return settings.secret_key
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
    return key
