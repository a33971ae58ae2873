"""Transports: where a rendered message goes. One protocol, one module per transport.

Every transport answers each message with a :class:`SendResult` in the same terms
(``sent``, ``rejected``, ``failed``), which the delivery ledger records as it is.

A transport is built from its own small :class:`TransportConfig` (its URL and the secrets
kept out of it), never from the settings: :mod:`newsletter.mail.transport` makes that
config from them. May import the base modules (``models``, ``fetch``) only; nothing of the
pipeline above (store, ranking, mail, subscribers, sending, the apps), not even the
settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Literal, Protocol

from ..urls import MalformedURL, split_url

#: Where a relay API token comes from when the transport URL carries none.
RELAY_TOKEN_ENV = "NEWSLETTER_RELAY_TOKEN"


@dataclass(frozen=True)
class SendResult:
    #: ``sent``: accepted by the next hop. ``rejected``: refused for this recipient, do not
    #: retry as is (relays: only for the address itself, invalid or suppressed there; a
    #: refusal of our request or account is ``failed``, so that no subscriber is suppressed
    #: for our mistake). ``failed``: not delivered for a reason that may pass (retry later).
    status: Literal["sent", "rejected", "failed"]
    transport_id: str | None = None
    error: str | None = None
    #: Seconds the server asked us to wait before the next attempt (rate limits), if any.
    retry_after: float | None = None
    #: True when the request may have reached the server before the failure (a read
    #: timeout, a dropped answer): the message may have gone out, and a retry may duplicate
    #: it unless the transport sends an idempotency key.
    maybe_sent: bool = False


@dataclass(frozen=True)
class TransportConfig:
    """What a transport is made from: its URL and the secrets that may be kept out of it
    (the SMTP password, a relay API token)."""

    url: str
    smtp_password: str = field(default="", repr=False)
    relay_token: str = field(default="", repr=False)


class UnknownTransport(ValueError):
    """A transport URL whose scheme names no transport."""


class TransportError(RuntimeError):
    """The transport as a whole cannot work (bad URL, server unreachable, refused login).

    Raised by ``send`` or ``send_many`` only when nothing in that call was accepted."""


class OutgoingEmail(EmailMessage):
    """An email as ``newsletter.mail.render.Renderer`` makes it: any transport reads it as an
    ``EmailMessage``; once sealed, it also carries its Message-ID, its envelope and its
    bytes as SMTP sends them (``wire``), which the SMTP transport sends as they are: a
    sealed email is not to be changed."""

    wire: bytes = b""
    message_id: str = ""
    sender: str = ""
    recipient: str = ""


class Transport(Protocol):
    #: False for transports that only write files: a send through them is not a real send.
    delivers_mail: bool

    def open(self) -> None: ...

    def send(self, message: EmailMessage) -> SendResult: ...

    def close(self) -> None: ...

    def describe(self) -> str: ...


class BatchTransport(Transport, Protocol):
    """A transport with a batch endpoint: one request for up to ``batch_size`` messages."""

    batch_size: int

    def send_many(self, messages: Sequence[EmailMessage]) -> list[SendResult]: ...


def send_many(transport: Transport, messages: Sequence[EmailMessage]) -> list[SendResult]:
    """One result per message, in order, in as few requests as ``transport`` allows: its
    batch endpoint in chunks of ``batch_size`` where it has one, else ``send`` one by one.

    A :class:`TransportError` before anything was accepted is raised; after that, the
    messages not yet sent are answered ``failed`` with its text, so that the results of
    the ones that went out are not lost."""
    batch = getattr(transport, "send_many", None)
    size = getattr(transport, "batch_size", 1) if batch else 1
    results: list[SendResult] = []
    for start in range(0, len(messages), size):
        chunk = messages[start : start + size]
        try:
            results.extend(batch(chunk) if batch else [transport.send(chunk[0])])
        except TransportError as exc:
            if not results:
                raise
            failure = SendResult("failed", error=str(exc))
            results.extend(failure for _ in messages[len(results) :])
            break
    return results


def transport_from_config(config: TransportConfig) -> Transport:
    """``outbox:DIR``, ``smtp://[user[:pass]@]host[:port]``, ``smtps://...``, or a relay API:
    ``postmark://TOKEN@``, ``sendgrid://API_KEY@``, ``resend://API_KEY@`` (the token may
    instead come from ``config.relay_token``, which the settings read from
    ``NEWSLETTER_RELAY_TOKEN``)."""
    url = config.url
    try:
        scheme = split_url(url).scheme.lower()
    except MalformedURL as exc:
        raise TransportError(str(exc)) from None
    if scheme == "outbox":
        from .outbox import OutboxTransport

        return OutboxTransport.from_url(url)
    if scheme in {"smtp", "smtps"}:
        from .smtp import SMTPTransport

        return SMTPTransport.from_url(url, password=config.smtp_password)
    token = config.relay_token
    if scheme == "postmark":
        from .postmark import PostmarkTransport

        return PostmarkTransport.from_url(url, token=token)
    if scheme == "sendgrid":
        from .sendgrid import SendGridTransport

        return SendGridTransport.from_url(url, token=token)
    if scheme == "resend":
        from .resend import ResendTransport

        return ResendTransport.from_url(url, token=token)
    raise UnknownTransport(
        f"unknown transport scheme {scheme!r}: use outbox:DIR, smtp://host:port, "
        "smtps://host:465,"
        " postmark://TOKEN@, sendgrid://API_KEY@ or resend://API_KEY@"
    )
