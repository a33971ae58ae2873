"""Transport URLs, which may carry a secret (an SMTP password, a relay's API token): read so
that no error message, and so no log or journal, ever shows it.

A password with a character that has a meaning in a URL (``/ ? # @ : % [ ]``) must be
percent-encoded; unencoded, it breaks the URL apart, and :mod:`urllib.parse` names the
broken pieces (the start of the password as a "port") in its errors.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

#: Transports whose URL user part is an API token.
RELAY_SCHEMES = frozenset({"postmark", "sendgrid", "resend"})
HIDDEN = "***"
ENCODING_HINT = (
    "a password or token with / ? # @ : % [ or ] in it must be percent-encoded (see the README)"
)


class MalformedURL(ValueError):
    """A URL that cannot be read; the message shows it without its secret parts."""


def _userinfo(url: str) -> tuple[str, str, str]:
    """``(scheme, userinfo, rest)``: userinfo is everything between ``://`` and the last
    ``@``, read from the text itself rather than by urlsplit, which stops the authority at
    the first ``/``, ``?`` or ``#``, inside an unencoded password."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return scheme, "", rest
    userinfo, _, rest = rest.rpartition("@")
    return scheme, userinfo, rest


def carries_secret(url: str) -> bool:
    """Whether ``url`` holds a password (``user:pass@``) or, for a relay, a token."""
    scheme, userinfo, _ = _userinfo(url)
    return ":" in userinfo or bool(userinfo and scheme.lower() in RELAY_SCHEMES)


def redact_url(url: str) -> str:
    """``url`` as it may be shown: ``smtp://mailer:***@host:25``, ``postmark://***@``."""
    scheme, userinfo, rest = _userinfo(url)
    if not userinfo:
        return url
    user, colon, _ = userinfo.partition(":")
    shown = HIDDEN if scheme.lower() in RELAY_SCHEMES else user + (colon and ":" + HIDDEN)
    return f"{scheme}://{shown}@{rest}"


def split_url(url: str) -> SplitResult:
    """``urlsplit(url)``, its port checked, or :class:`MalformedURL` without the secret."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError:
        # urllib's message may quote the netloc, password and all: it is not passed on.
        raise MalformedURL(
            f"cannot read the transport URL {redact_url(url)} (its host or port is not"
            f" valid): {ENCODING_HINT}"
        ) from None
    return parts
