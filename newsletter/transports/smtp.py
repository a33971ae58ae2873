"""SMTP: one connection for the whole run. ``smtp://`` upgrades with STARTTLS whenever the
server offers it and never sends a password over a connection that is not encrypted;
``smtps://`` (port 465) is TLS from the first byte. Certificates are always verified; a
private CA can be named with ``?cafile=PATH``."""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from typing import Literal, TypeGuard
from urllib.parse import parse_qs, unquote

from ..urls import ENCODING_HINT, MalformedURL, redact_url, split_url
from . import Connection, OneAtATime, OutgoingEmail, SendResult, TransportError
from .courier import Courier

log = logging.getLogger(__name__)


class SMTPTransport(OneAtATime):
    """One message at a time over each connection; a run opens ``send_connections`` of
    them side by side, each held by a :class:`~newsletter.transports.courier.Courier`."""

    delivers_mail = True

    def __init__(
        self,
        host: str,
        port: int,
        *,
        implicit_tls: bool = False,
        username: str = "",
        password: str = "",
        timeout: float = 30.0,
        cafile: str | None = None,
    ):
        self.host, self.port = host, port
        self.implicit_tls = implicit_tls
        self.username, self.password = username, password
        self.timeout = timeout
        self.cafile = cafile
        self.connection: smtplib.SMTP | None = None

    @classmethod
    def from_url(cls, url: str, password: str = "") -> SMTPTransport:
        """``smtp[s]://[user[:pass]@]host[:port][?timeout=S&cafile=PATH]``: the user and the
        password percent-encoded; ``password`` (from the environment) is used as it is, when
        the URL has none. No error shows the password."""
        try:
            parts = split_url(url)
        except MalformedURL as exc:
            raise TransportError(str(exc)) from None
        if not parts.hostname:
            raise TransportError(f"the {parts.scheme}:// transport URL names no host")
        if parts.path.strip("/") or parts.fragment:
            raise TransportError(
                f"the transport URL {redact_url(url)} has something after host:port other"
                f" than ?options: {ENCODING_HINT}"
            )
        implicit_tls = parts.scheme.lower() == "smtps"
        query = parse_qs(parts.query)
        try:
            timeout = float(query.get("timeout", ["30"])[0])
        except ValueError:
            raise TransportError("smtp: timeout must be a number of seconds") from None
        return cls(
            parts.hostname,
            parts.port or (465 if implicit_tls else 25),
            implicit_tls=implicit_tls,
            username=unquote(parts.username or ""),
            password=unquote(parts.password or "") or password,
            timeout=timeout,
            cafile=query.get("cafile", [None])[0],
        )

    def describe(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"

    def open(self) -> None:
        context = ssl.create_default_context(cafile=self.cafile)
        connection: smtplib.SMTP
        try:
            if self.implicit_tls:
                connection = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=context
                )
            else:
                connection = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            connection.ehlo()
            if not self.implicit_tls and connection.has_extn("starttls"):
                connection.starttls(context=context)
                connection.ehlo()
            encrypted = self.implicit_tls or isinstance(connection.sock, ssl.SSLSocket)
            if self.username:
                if not encrypted:
                    connection.close()
                    raise TransportError(
                        f"{self.describe()} does not offer STARTTLS: refusing to send the "
                        "password in clear (use smtps:// or a server with TLS)"
                    )
                connection.login(self.username, self.password)
        except (OSError, smtplib.SMTPException) as exc:
            raise TransportError(f"cannot connect to {self.describe()}: {exc}") from exc
        self.connection = connection
        log.info("connected to %s (%s)", self.describe(), "TLS" if encrypted else "no TLS")

    def send(self, message: EmailMessage) -> SendResult:
        if self.connection is None:
            self.open()
        try:
            return self._send_once(message)
        except smtplib.SMTPServerDisconnected:
            log.warning("%s closed the connection; reconnecting once", self.describe())
            self.connection = None
            try:
                self.open()
                return self._send_once(message)
            except TransportError as exc:
                return SendResult("failed", error=str(exc))
            except smtplib.SMTPServerDisconnected as exc:
                # Dropped again, possibly after the data went: the message's fate is unknown.
                return SendResult("failed", error=f"connection lost: {exc}", maybe_sent=True)

    def _send_once(self, message: EmailMessage) -> SendResult:
        assert self.connection is not None
        try:
            if _sealed(message):
                # Flattened once already, by the sender, while the last one was on the wire.
                refused = self.connection.sendmail(
                    message.sender, [message.recipient], message.wire
                )
            else:
                envelope = message.sender if isinstance(message, OutgoingEmail) else ""
                refused = self.connection.send_message(message, from_addr=envelope or None)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            return _refusal(code, text)
        except smtplib.SMTPSenderRefused as exc:
            # Our From is refused: every message would fail the same way.
            raise TransportError(
                f"{self.describe()} refuses the sender {exc.sender!r}: {exc.smtp_code} "
                f"{_text(exc.smtp_error)}"
            ) from exc
        except smtplib.SMTPResponseException as exc:
            # A refusal of the message itself (content, size, policy), not of the address:
            # never a reason to suppress the subscriber.
            return SendResult("failed", error=f"{exc.smtp_code} {_text(exc.smtp_error)}")
        except smtplib.SMTPServerDisconnected:
            raise
        except (OSError, smtplib.SMTPException) as exc:
            return SendResult("failed", error=f"{type(exc).__name__}: {exc}")
        if refused:
            code, text = next(iter(refused.values()))
            return _refusal(code, text)
        sent_id = message.message_id if _sealed(message) else message.get("Message-ID")
        return SendResult("sent", transport_id=sent_id)

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.quit()
            except (OSError, smtplib.SMTPException):
                self.connection.close()
            self.connection = None

    def connections(self, wanted: int) -> list[Connection]:
        """``wanted`` connections, each in a courier process of its own, which talks to the
        server while this one renders the next email."""
        return [Courier(self), *(Courier(self._another()) for _ in range(wanted - 1))]

    def _another(self) -> SMTPTransport:
        """An unopened transport to the same server, for one more connection."""
        return SMTPTransport(
            self.host,
            self.port,
            implicit_tls=self.implicit_tls,
            username=self.username,
            password=self.password,
            timeout=self.timeout,
            cafile=self.cafile,
        )


def _sealed(message: EmailMessage) -> TypeGuard[OutgoingEmail]:
    """Whether ``message`` carries its bytes, for an ASCII envelope (an internationalized
    address needs SMTPUTF8 and headers in UTF-8, which send_message arranges)."""
    return (
        isinstance(message, OutgoingEmail)
        and bool(message.wire)
        and (message.sender + message.recipient).isascii()
    )


def _text(text: bytes | str) -> str:
    return text.decode(errors="replace") if isinstance(text, bytes) else text


def _refusal(code: int, text: bytes | str) -> SendResult:
    """A refused recipient: 5xx is permanent for that address; anything else may pass."""
    status: Literal["rejected", "failed"] = "rejected" if 500 <= code < 600 else "failed"
    return SendResult(status, error=f"{code} {_text(text)}")
