"""Who is asking: the client's address, and HTTP basic auth against a secret."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from starlette.requests import Request


def basic_auth_password(header: str) -> str | None:
    """The password of an ``Authorization: Basic`` header; None for no such header."""
    kind, _, encoded = header.partition(" ")
    if kind.lower() != "basic":
        return None
    try:
        _, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return password


def same_secret(given: str, secret: str) -> bool:
    """Whether ``given`` is ``secret``, in a time that tells nothing of either, its length
    included (their digests are compared, which have one length)."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(secret.encode()).digest()
    )


def basic_auth_ok(header: str, secret: str) -> bool:
    """Whether an ``Authorization: Basic`` header carries ``secret`` as its password."""
    password = basic_auth_password(header)
    return password is not None and same_secret(password, secret)


def client_ip(request: Request) -> str | None:
    """The client's address; uvicorn takes it from X-Forwarded-For when the request comes
    through a trusted proxy (``FORWARDED_ALLOW_IPS``)."""
    return request.client.host if request.client else None
