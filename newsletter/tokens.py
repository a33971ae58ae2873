"""Signed per-subscriber links (itsdangerous): unsubscribe, preferences, confirm, feedback,
and the archive ("View in your browser", for one edition).

A token names the subscriber by id and by a digest of their address, so that a link stays
valid for as long as the subscription does (unsubscribe links must keep working for
months) but dies with the subscriber: a new subscriber who later gets the same row id
cannot be reached by an old link. Each purpose has its own salt, so a token made for one
purpose is refused for any other. Keys rotate: the current key signs, the old keys
(``NEWSLETTER_OLD_SECRET_KEYS``) still verify.

The return-path token of a VERP envelope sender (``bounces+TOKEN@domain``) is made by the
same keys, shorter and in lower case, since it must fit a 64-character local part and some
mail servers change the case of an address: ``ID-YYYYMMDD-MAC``, the subscriber's id in
base 36, the edition, and 80 bits of an HMAC over both and the address's digest.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from itsdangerous import BadData, Signer, URLSafeSerializer
from itsdangerous.encoding import base64_decode, base64_encode

from .models import Subscriber
from .settings import Settings, SettingsError

PURPOSES = frozenset({"unsubscribe", "preferences", "confirm", "feedback", "archive"})
LOCAL_KEY_META = "local_secret_key"
#: The longest return-path token: 8 characters of id (base 36), the edition, 16 of MAC.
RETURN_TOKEN_MAX_CHARS = 34
_RETURN_TOKEN = re.compile(r"^([0-9a-z]{1,8})-([0-9]{8})-([a-z2-7]{16})$")


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


@dataclass(frozen=True)
class ReturnToken:
    """What a return-path token names; :meth:`LinkSigner.return_token_matches` says whether
    it was made for a given address."""

    subscriber_id: int
    edition: date
    token: str


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

    def return_token(self, subscriber_id: int, email: str, edition: date) -> str:
        """The token of a VERP envelope sender, for ``email``'s copy of ``edition``."""
        head = f"{_base36(subscriber_id)}-{edition:%Y%m%d}"
        return f"{head}-{self._return_mac(self._keys[-1], head, email)}"

    def read_return_token(self, token: str) -> ReturnToken:
        """The subscriber and edition a return-path token names (not yet checked against
        the address: see :meth:`return_token_matches`); BadToken if it is not one."""
        token = token.lower()
        if not (match := _RETURN_TOKEN.match(token)):
            raise BadToken("not a return-path token")
        try:
            edition = datetime.strptime(match[2], "%Y%m%d").date()
        except ValueError:
            raise BadToken("not a return-path token") from None
        return ReturnToken(int(match[1], 36), edition, token)

    def return_token_matches(self, token: ReturnToken, email: str) -> bool:
        """Whether ``token`` was made by one of our keys for this address."""
        head, _, mac = token.token.rpartition("-")
        return any(
            hmac.compare_digest(self._return_mac(key, head, email), mac) for key in self._keys
        )

    @staticmethod
    def _return_mac(key: str, head: str, email: str) -> str:
        signer = Signer(key, salt="newsletter.return-path", digest_method=hashlib.sha256)
        raw = signer.algorithm.get_signature(
            signer.derive_key(), f"{head}.{email_digest(email)}".encode()
        )
        return base64.b32encode(raw[:10]).decode("ascii").lower()


def verp_address(bounce_address: str, token: str) -> str:
    """``bounces+TOKEN@domain`` for ``bounce_address`` ``bounces@domain``."""
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{token}@{domain}"


def token_in_verp(address: str, bounce_address: str) -> str | None:
    """The token of a VERP address made from ``bounce_address`` (case-insensitive), or None
    when ``address`` is not one."""
    local, _, domain = bounce_address.casefold().rpartition("@")
    their_local, _, their_domain = address.strip().strip("<>").casefold().rpartition("@")
    base, plus, token = their_local.partition("+")
    if plus and base == local and their_domain == domain and token:
        return token
    return None


def _base36(number: int) -> str:
    if number < 0:
        raise ValueError("a subscriber id is not negative")
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if not number:
            return text


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
