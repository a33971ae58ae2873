"""Transports: where a rendered message goes. One protocol, one module per transport.

Every transport answers each message with a :class:`SendResult` in the same terms
(``sent``, ``rejected``, ``failed``), which the delivery ledger records as it is, and says
how it is best used: how many messages one request carries (``max_batch``) and which
:class:`Connection` s a run sends over (``connections``), so that the delivery loop never
asks what kind of transport it has.

A transport is built from its own small :class:`TransportConfig` (its URL and the secrets
kept out of it), never from the settings: :mod:`newsletter.mail.transport` makes that
config from them. May import the base modules (``models``, ``fetch``) only; nothing of the
pipeline above (store, ranking, mail, subscribers, sending, the apps), not even the
settings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Literal, Protocol, Self

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


class Connection(Protocol):
    """One connection of a transport for the length of a run, used by one sender at a time:
    it takes a batch of at most ``max_batch`` messages, sends it while the sender makes the
    next one, and answers one result per message, in order, through the future."""

    def hand_over(self, messages: Sequence[EmailMessage]) -> Future[list[SendResult]]: ...

    def close(self) -> None: ...


class Transport(Protocol):
    """Where a rendered message goes. Each transport says how it is best used, so that the
    delivery loop never asks what kind of transport it has: how many messages one request
    carries (``max_batch``) and which connections a run sends over (``connections``)."""

    #: False for transports that only write files: a send through them is not a real send.
    delivers_mail: bool
    #: The most messages that one call of ``send_many`` hands over in one request (a relay's
    #: batch endpoint); 1 for a transport that takes one message at a time.
    max_batch: int

    def describe(self) -> str: ...

    def open(self) -> None: ...

    def send(self, message: EmailMessage) -> SendResult:
        """Send one message, opening the transport first if it is not open."""
        ...

    def send_many(self, messages: Sequence[EmailMessage]) -> list[SendResult]:
        """One result per message, in order, for at most ``max_batch`` messages. Raises
        :class:`TransportError` only when nothing was accepted."""
        ...

    def connections(self, wanted: int) -> list[Connection]:
        """The connections a run sends over, side by side: as many as this transport can
        use, at most ``wanted`` (and at least one). Each is closed by the run."""
        ...

    def close(self) -> None: ...


class OneAtATime:
    """What a transport has unless it says otherwise: one message a request, one
    connection, which sends from a thread of its own."""

    delivers_mail: bool
    max_batch = 1

    def describe(self) -> str:
        raise NotImplementedError

    def send(self, message: EmailMessage) -> SendResult:
        raise NotImplementedError

    def send_many(self, messages: Sequence[EmailMessage]) -> list[SendResult]:
        return _keep_what_went_out(messages, 1, lambda chunk: [self.send(chunk[0])])

    def connections(self, wanted: int) -> list[Connection]:
        return [InThread(self)]

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InThread:
    """A connection that sends from a thread of its own, one batch at a time, so that the
    sender makes the next batch meanwhile (httpx and file writes wait without holding the
    interpreter lock). Closing it closes the transport."""

    def __init__(self, transport: Transport):
        self.transport = transport
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="send")

    def hand_over(self, messages: Sequence[EmailMessage]) -> Future[list[SendResult]]:
        return self._thread.submit(send_many, self.transport, list(messages))

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self.transport.close()


def send_many(transport: Transport, messages: Sequence[EmailMessage]) -> list[SendResult]:
    """One result per message, in order, in requests of at most ``transport.max_batch``.

    A :class:`TransportError` before anything was accepted is raised; after that, the
    messages not yet sent are answered ``failed`` with its text, so that the results of
    the ones that went out are not lost."""
    return _keep_what_went_out(messages, transport.max_batch, transport.send_many)


def _keep_what_went_out(
    messages: Sequence[EmailMessage],
    size: int,
    send_chunk: Callable[[Sequence[EmailMessage]], list[SendResult]],
) -> list[SendResult]:
    results: list[SendResult] = []
    for start in range(0, len(messages), size):
        try:
            results.extend(send_chunk(messages[start : start + size]))
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
