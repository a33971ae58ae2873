"""CSRF protection for the forms: a signed double-submit token.

A random value lives in a cookie; each form carries that value signed (itsdangerous, with a
timestamp). A POST passes only if the signature holds, is recent, and names the value in the
cookie: another site can make a browser send the cookie, but can neither read it nor sign a
value of its own.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence

from itsdangerous import BadData, URLSafeTimedSerializer
from starlette.datastructures import FormData
from starlette.requests import Request

COOKIE = "newsletter_csrf"
FIELD = "csrf_token"
#: How long a form stays valid once the page was served.
MAX_AGE = 24 * 3600
_NONCE = re.compile(r"^[A-Za-z0-9_-]{22,64}$")


class CSRFError(Exception):
    """A form POST without a valid CSRF token."""


class CSRF:
    def __init__(self, keys: Sequence[str]):
        self._serializer = URLSafeTimedSerializer(list(keys), salt="newsletter.csrf")

    def token(self, request: Request) -> tuple[str, str]:
        """The token for the forms of a page, and the cookie value to set with it: the
        browser's own, or a new one if it has none."""
        nonce = request.cookies.get(COOKIE, "")
        if not _NONCE.match(nonce):
            nonce = secrets.token_urlsafe(24)
        return self._serializer.dumps(nonce), nonce

    def check(self, request: Request, form: FormData) -> None:
        cookie = request.cookies.get(COOKIE, "")
        submitted = form.get(FIELD)
        if not _NONCE.match(cookie) or not isinstance(submitted, str):
            raise CSRFError("no CSRF token")
        try:
            nonce = self._serializer.loads(submitted, max_age=MAX_AGE)
        except BadData as exc:
            raise CSRFError("bad CSRF token") from exc
        if not isinstance(nonce, str) or not secrets.compare_digest(
            nonce.encode(), cookie.encode()
        ):
            raise CSRFError("CSRF token does not match the cookie")
