"""``newsletter bounces scan``: read the bounce mailbox and apply what it says with the
webhooks' rules (:func:`newsletter.subscribers.bounces.apply_events`, one code path).

The mailbox is ``bounce_mailbox``: ``imaps://user@host[:993][/FOLDER]`` (TLS from the
first byte) or ``imap://user@host[:143][/FOLDER]`` (STARTTLS, required),
the password from ``NEWSLETTER_BOUNCE_PASSWORD`` unless the URL carries one, certificates
verified (``?cafile=PATH`` for a private CA); or ``maildir:/path`` or ``mbox:/path`` on
the same host as the mail server.

Each message is read by :func:`newsletter.subscribers.bounce_mail.read_bounce`; its
subscriber is the one its VERP token names (the token checked against their address),
else the one the ledger sent the message it quotes to (when it quotes one of ours: a
Message-ID the ledger never sent applies to nobody), else the first address it names that
is on the list. A bounce or complaint applied is
moved to ``bounce_folder`` (IMAP) or marked seen (Maildir); an mbox is only read. Every
message read is noted by its Message-ID in the store, so that a rescan, or a copy of the
same message, counts nothing twice. What is kept for the operator, where it was: a bounce
that names nobody on the list, a message that is not a bounce, a malformed one, and one
larger than ``max_bounce_bytes`` (reported, never read whole).
"""

from __future__ import annotations

import logging
import mailbox
import os
import re
import ssl
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol, Self
from urllib.parse import parse_qs, unquote

import imapclient
import imapclient.exceptions

from ..settings import Settings, SettingsError
from ..store import Store, SubscriberNotFound
from ..tokens import BadToken, LinkSigner, link_signer
from ..urls import MalformedURL, redact_url, split_url
from .bounce_mail import BounceMail, read_bounce
from .bounces import EVENT_KINDS, BounceEvent, apply_events

log = logging.getLogger(__name__)

PROVIDER = "mail"
#: What is applied to a subscriber (the rest is kept for the operator).
APPLIED = frozenset({"hard_bounce", "soft_bounce", "complaint"})
ALREADY_READ = frozenset({"already read", "already applied"})
IMAP_TIMEOUT = 60.0


class MailboxError(RuntimeError):
    """The bounce mailbox cannot be reached or read (no password in the message)."""


@dataclass(frozen=True)
class Letter:
    """One message of the mailbox: its key there and its size; ``raw`` is its bytes, or
    only its headers when it is too large to read."""

    key: str
    size: int
    raw: bytes


class BounceSource(Protocol):
    """A bounce mailbox, open between ``__enter__`` and ``__exit__``."""

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def letters(self, max_bytes: int) -> Iterator[Letter]:
        """Every message not yet dealt with, as it is read."""
        ...

    def done(self, letter: Letter) -> None:
        """Put a message applied out of the way (moved, marked)."""
        ...


@dataclass
class ScanItem:
    message_id: str
    kind: str
    email: str | None
    outcome: str
    detail: str


@dataclass
class ScanReport:
    source: str
    counts: Counter[str] = field(default_factory=Counter)
    items: list[ScanItem] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "counts": dict(sorted(self.counts.items())),
            "items": [asdict(item) for item in self.items],
        }


def scan_bounces(
    store: Store, settings: Settings, source: BounceSource | None = None
) -> ScanReport:
    """Read the bounce mailbox once and apply what it says."""
    if source is None:
        source = open_source(settings)
    signer = link_signer(settings, store, real_send=False)
    report = ScanReport(describe_source(settings.bounce_mailbox))
    with source:
        for letter in source.letters(settings.max_bounce_bytes):
            item = _handle(store, settings, signer, letter)
            if item.outcome in ALREADY_READ:
                if item.outcome == "already applied":  # a scan stopped before the move
                    source.done(letter)
                report.counts["already read"] += 1
                continue
            if item.kind in APPLIED and item.email:
                source.done(letter)
            report.counts[item.kind] += 1
            report.items.append(item)
    log.info("bounce scan of %s: %s", report.source, dict(report.counts))
    return report


def _handle(store: Store, settings: Settings, signer: LinkSigner, letter: Letter) -> ScanItem:
    if letter.size > settings.max_bounce_bytes:
        read = read_bounce(letter.raw, settings.bounce_address)
        mail = BounceMail(
            "malformed",
            read.message_id,
            (),
            (),
            None,
            f"{letter.size} bytes, more than max_bounce_bytes ({settings.max_bounce_bytes}):"
            " not read",
        )
        kind = "enormous"
    else:
        mail = read_bounce(letter.raw, settings.bounce_address)
        kind = mail.kind
    subscriber_email, edition = _recipient(store, settings, signer, mail)
    with store.transaction():
        if not store.record_mail(mail.message_id, kind, subscriber_email):
            outcome = (
                "already applied" if _applied(store, mail, subscriber_email) else "already read"
            )
            return ScanItem(mail.message_id, kind, subscriber_email, outcome, mail.detail)
        if kind in ("malformed", "enormous"):
            log.warning(
                "bounce mailbox: %s message %s skipped: %s", kind, mail.message_id, mail.detail
            )
        if kind not in APPLIED:
            return ScanItem(mail.message_id, kind, None, "kept", mail.detail)
        if subscriber_email is None:
            why = (
                "carries no VERP token that verifies (bounce_require_verp)"
                if settings.bounce_require_verp
                else "names nobody on the list"
            )
            log.warning(
                "bounce mailbox: %s %s %s (%s): kept",
                kind,
                mail.message_id,
                why,
                ", ".join(mail.recipients) or "no address",
            )
            named = mail.recipients[0] if mail.recipients else None
            return ScanItem(mail.message_id, "unknown", named, "kept", mail.detail)
        event = BounceEvent(
            email=subscriber_email,
            kind=mail.kind,  # type: ignore[arg-type]  # one of the three, checked above
            provider=PROVIDER,
            provider_message_id=mail.message_id,
            detail=mail.detail,
            event_id=mail.message_id,
            message_id=mail.original_message_id,
            edition=edition,
        )
        (outcome,) = apply_events(
            store,
            [event],
            settings.soft_bounce_limit,
            soft_bounce_window=timedelta(days=settings.soft_bounce_window_days),
        )
    return ScanItem(mail.message_id, kind, subscriber_email, outcome, mail.detail)


def _applied(store: Store, mail: BounceMail, subscriber_email: str | None) -> bool:
    """Whether an earlier scan applied this message to its subscriber (and so it is to be
    moved, not kept: kept ones stay even if their address has been subscribed since)."""
    if subscriber_email is None:
        return False
    subscriber = store.get_subscriber(subscriber_email)
    return store.has_subscriber_event(
        subscriber.id, EVENT_KINDS.values(), provider=PROVIDER, event_id=mail.message_id
    )


def _recipient(
    store: Store, settings: Settings, signer: LinkSigner, mail: BounceMail
) -> tuple[str | None, str | None]:
    """The subscriber's address and the edition: from a VERP token that verifies, else from
    the ledger when the bounce quotes a Message-ID of ours (nobody when the ledger never
    sent it: the addresses a bounce names are anyone's to write), else the first address
    named that is on the list (edition unknown). With ``bounce_require_verp``, only the
    token counts."""
    for token in mail.tokens:
        try:
            read = signer.read_return_token(token)
            subscriber = store.get_subscriber(read.subscriber_id)
        except (BadToken, SubscriberNotFound):
            continue
        if signer.return_token_matches(read, subscriber.email):
            return subscriber.email, read.edition.isoformat()
    if settings.bounce_require_verp:
        return None, None
    if (ours := _our_message(mail.original_message_id, settings.sender_domain)) is not None:
        return _ledger_recipient(store, mail.original_message_id or "", ours)
    for address in mail.recipients:
        try:
            return store.get_subscriber(address).email, None
        except SubscriberNotFound:
            continue
    return None, None


#: The Message-ID of an edition's message (:func:`newsletter.sending.ledger.message_id`).
_EDITION_MESSAGE_ID = re.compile(r"^<(\d{4}-\d{2}-\d{2})\.[0-9a-f]{20}@([^<>@\s]+)>$")


def _our_message(message_id: str | None, domain: str) -> str | None:
    """The edition of ``message_id`` if it is one of our editions' Message-IDs."""
    match = _EDITION_MESSAGE_ID.match(message_id or "")
    if match and match[2].casefold() == domain.casefold():
        return match[1]
    return None


def _ledger_recipient(store: Store, message_id: str, edition: str) -> tuple[str | None, str | None]:
    """Whom the ledger sent ``message_id`` of ``edition`` to, if anyone still subscribed."""
    delivery = store.deliveries.with_message_id(edition, message_id)
    if delivery is not None:
        try:
            return store.get_subscriber(delivery.subscriber_id).email, edition
        except SubscriberNotFound:
            pass
    return None, None


# -- sources --------------------------------------------------------------------------------


def describe_source(url: str) -> str:
    return redact_url(url) if url else "(no bounce mailbox)"


def open_source(settings: Settings) -> BounceSource:
    """The source ``bounce_mailbox`` names; SettingsError when it names none."""
    url = settings.bounce_mailbox
    scheme, colon, rest = url.partition(":")
    scheme = scheme.lower()
    if scheme == "maildir" and colon and rest:
        return MaildirSource(Path(rest).expanduser())
    if scheme == "mbox" and colon and rest:
        return MboxSource(Path(rest).expanduser())
    if scheme in ("imap", "imaps"):
        return ImapSource.from_url(url, settings.bounce_password, settings.bounce_folder)
    raise SettingsError(
        "bounce_mailbox (NEWSLETTER_BOUNCE_MAILBOX) must be imaps://user@host, imap://user@host,"
        f" maildir:/path or mbox:/path, not {describe_source(url)!r}"
    )


class MaildirSource:
    """A Maildir: messages applied are marked seen (flag S) and not read again.

    Its files are read as bytes and renamed, never parsed here: a hostile message (MIME
    nested deeper than the parser goes) is :func:`read_bounce`'s to report, and a message
    larger than the limit is not read whole."""

    #: The separator of a file's name and its flags (``NAME:2,FLAGS``), as in :mod:`mailbox`.
    INFO = ":2,"

    def __init__(self, path: Path):
        if not (path / "cur").is_dir() or not (path / "new").is_dir():
            raise MailboxError(f"{path} is not a Maildir (no cur/ and new/)")
        self.path = path

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def letters(self, max_bytes: int) -> Iterator[Letter]:
        names = sorted(
            f"{sub}/{name}"
            for sub in ("new", "cur")
            for name in os.listdir(self.path / sub)
            if not name.startswith(".")
        )
        for key in names:
            if "S" in key.rpartition(self.INFO)[2]:
                continue
            try:
                with open(self.path / key, "rb") as file:
                    size = os.fstat(file.fileno()).st_size
                    raw = file.read() if size <= max_bytes else _head(file.read(65536))
            except FileNotFoundError:  # taken away meanwhile
                continue
            yield Letter(key, size, raw)

    def done(self, letter: Letter) -> None:
        name, info, flags = letter.key.partition("/")[2].partition(self.INFO)
        flags = "".join(sorted({*flags, "S"})) if info else "S"
        os.rename(self.path / letter.key, self.path / "cur" / f"{name}{self.INFO}{flags}")


class MboxSource:
    """An mbox, read under its locks (those of Postfix's local delivery) and never written:
    the store's notes of Message-IDs say what was read."""

    def __init__(self, path: Path):
        if not path.is_file():
            raise MailboxError(f"no mbox at {path}")
        self.box = mailbox.mbox(path, create=False)

    def __enter__(self) -> Self:
        try:
            self.box.lock()
        except mailbox.ExternalClashError as exc:
            raise MailboxError(f"the mbox is locked by another program: {exc}") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        self.box.unlock()
        self.box.close()

    def letters(self, max_bytes: int) -> Iterator[Letter]:
        for key in self.box.iterkeys():
            raw = self.box.get_bytes(key)
            yield Letter(str(key), len(raw), _head(raw) if len(raw) > max_bytes else raw)

    def done(self, letter: Letter) -> None:
        """Nothing: an mbox is shared with the server that delivers to it."""


class ImapSource:
    """An IMAP folder (INBOX unless the URL names one): messages applied are moved to
    ``done_folder`` (MOVE, or COPY and expunge where the server has no MOVE)."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        implicit_tls: bool,
        folder: str = "INBOX",
        done_folder: str = "Processed",
        cafile: str | None = None,
    ):
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.implicit_tls = implicit_tls
        self.folder, self.done_folder = folder, done_folder
        self.cafile = cafile
        self.client: imapclient.IMAPClient | None = None

    @classmethod
    def from_url(cls, url: str, password: str, done_folder: str) -> ImapSource:
        try:
            parts = split_url(url)
        except MalformedURL as exc:
            raise SettingsError(str(exc).replace("transport", "bounce mailbox")) from None
        if not parts.hostname or not parts.username:
            raise SettingsError(f"the bounce mailbox URL {redact_url(url)} needs user@host")
        implicit_tls = parts.scheme.lower() == "imaps"
        query = parse_qs(parts.query)
        return cls(
            parts.hostname,
            parts.port or (993 if implicit_tls else 143),
            unquote(parts.username),
            unquote(parts.password or "") or password,
            implicit_tls=implicit_tls,
            folder=unquote(parts.path.strip("/")) or "INBOX",
            done_folder=done_folder,
            cafile=query.get("cafile", [None])[0],
        )

    def describe(self) -> str:
        scheme = "imaps" if self.implicit_tls else "imap"
        return f"{scheme}://{self.username}@{self.host}:{self.port}/{self.folder}"

    def __enter__(self) -> Self:
        context = ssl.create_default_context(cafile=self.cafile)
        try:
            client = imapclient.IMAPClient(
                self.host,
                self.port,
                ssl=self.implicit_tls,
                ssl_context=context,
                timeout=IMAP_TIMEOUT,
            )
            if not self.implicit_tls:
                if not client.has_capability("STARTTLS"):
                    client.shutdown()
                    raise MailboxError(
                        f"{self.describe()} does not offer STARTTLS: refusing to send the"
                        " password in clear (use imaps://)"
                    )
                client.starttls(context)
            client.login(self.username, self.password)
            client.select_folder(self.folder)
            if not client.folder_exists(self.done_folder):
                client.create_folder(self.done_folder)
        except (OSError, imapclient.exceptions.IMAPClientError) as exc:
            raise MailboxError(f"cannot read {self.describe()}: {exc}") from exc
        self.client = client
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            try:
                self.client.logout()
            except (OSError, imapclient.exceptions.IMAPClientError):
                self.client.shutdown()
            self.client = None

    def letters(self, max_bytes: int) -> Iterator[Letter]:
        assert self.client is not None
        uids = self.client.search(["NOT", "DELETED"])
        for uid, data in self.client.fetch(uids, ["RFC822.SIZE"]).items():
            size = data[b"RFC822.SIZE"]
            what = b"BODY.PEEK[HEADER]" if size > max_bytes else b"BODY.PEEK[]"
            fetched = self.client.fetch([uid], [what.decode()]).get(uid, {})
            raw = fetched.get(what.replace(b".PEEK", b""), b"")
            yield Letter(str(uid), size, raw)

    def done(self, letter: Letter) -> None:
        assert self.client is not None
        uid = int(letter.key)
        if self.client.has_capability("MOVE"):
            self.client.move([uid], self.done_folder)
        else:
            self.client.copy([uid], self.done_folder)
            self.client.delete_messages([uid])
            if self.client.has_capability("UIDPLUS"):
                self.client.uid_expunge([uid])
            else:
                self.client.expunge()


def _head(raw: bytes) -> bytes:
    """The headers of a message too large to read: enough for its Message-ID."""
    head = raw[:65536]
    for end in (b"\r\n\r\n", b"\n\n"):
        if end in head:
            return head.split(end, 1)[0] + end
    return head
