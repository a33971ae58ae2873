"""Transports: where a rendered message goes. One protocol, one module per transport.

Every transport answers each message with a :class:`SendResult` in the same terms
(``sent``, ``rejected``, ``failed``), which the delivery ledger records as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal, Protocol
from urllib.parse import urlsplit

from ..settings import Settings, SettingsError


@dataclass(frozen=True)
class SendResult:
    #: ``sent``: accepted by the next hop. ``rejected``: refused for this recipient, do not
    #: retry as is. ``failed``: not delivered for a reason that may pass (retry later).
    status: Literal["sent", "rejected", "failed"]
    transport_id: str | None = None
    error: str | None = None


class TransportError(RuntimeError):
    """The transport as a whole cannot work (bad URL, server unreachable, refused login)."""


class Transport(Protocol):
    #: False for transports that only write files: a send through them is not a real send.
    delivers_mail: bool

    def open(self) -> None: ...

    def send(self, message: EmailMessage) -> SendResult: ...

    def close(self) -> None: ...

    def describe(self) -> str: ...


def transport_from_url(url: str, settings: Settings) -> Transport:
    """``outbox:DIR``, ``smtp://[user[:pass]@]host[:port]`` or ``smtps://...``."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "outbox":
        from .outbox import OutboxTransport

        return OutboxTransport.from_url(url)
    if scheme in {"smtp", "smtps"}:
        from .smtp import SMTPTransport

        return SMTPTransport.from_url(url, password=settings.smtp_password)
    raise SettingsError(
        f"unknown transport {url!r}: use outbox:DIR, smtp://host:port or smtps://host:465"
    )
