"""What a message in the bounce mailbox says: a hard bounce, a soft bounce, a complaint, or
not a bounce at all; and whom it names.

- A delivery status notification (RFC 3464: ``multipart/report;
  report-type=delivery-status``) is read block by block: an ``Action: failed`` with a 5.x.x
  ``Status`` is a hard bounce, except 5.2.2 (mailbox full), which passes, like any 4.x.x:
  a soft bounce. ``delayed`` (a warning: the server still tries), ``delivered``,
  ``relayed`` and ``expanded`` are not bounces.
- A feedback report (RFC 5965, ARF: ``report-type=feedback-report``) of type ``abuse`` or
  ``fraud`` (or none) is a complaint; ``not-spam``, ``virus`` and ``other`` are not.
- Anything else is given to ``flufl.bounce``, whose detectors know the bounces of
  servers that send no DSN (qmail, old Exim, Exchange, Yahoo...): what it reports as
  permanent is a hard bounce, as temporary a soft one. What it does not recognize (an
  out-of-office reply, a human answer) is not a bounce.

The recipients are every address the message names, best first: the VERP token's
address (the caller verifies the token), then the DSN's ``Original-Recipient`` and
``Final-Recipient`` (or the report's ``Original-Rcpt-To``), then what ``flufl.bounce``
found. A message whose structure cannot be read is ``malformed``.
"""

from __future__ import annotations

import email
import email.errors
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses, parseaddr
from typing import Literal

import flufl.bounce

from ..tokens import token_in_verp

Kind = Literal["hard_bounce", "soft_bounce", "complaint", "not_bounce", "malformed"]

#: Headers of the bounce itself where the receiving server wrote the address it delivered
#: to: the VERP address, when the bounce came back to one.
DELIVERY_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
#: Feedback types that are a person's complaint (RFC 5965 section 7.3; none given: abuse).
COMPLAINT_TYPES = frozenset({"abuse", "fraud", ""})
#: Enhanced status codes that are permanent in form but pass with time: mailbox full.
PASSING_PERMANENT = frozenset({"5.2.2"})
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_STRUCTURE_DEFECTS = (
    email.errors.StartBoundaryNotFoundDefect,
    email.errors.MultipartInvariantViolationDefect,
    email.errors.CloseBoundaryNotFoundDefect,
)
DETAIL_CHARS = 300


@dataclass(frozen=True)
class BounceMail:
    """One message of the bounce mailbox, read."""

    kind: Kind
    #: The bounce's own Message-ID, or a digest of its bytes when it has none: a message
    #: seen twice counts once.
    message_id: str
    #: The tokens of the VERP addresses it came back to (not yet verified).
    tokens: tuple[str, ...]
    #: The addresses it names as the failed recipient (or the complainant), best first.
    recipients: tuple[str, ...]
    #: The Message-ID of our message it is about, where it quotes it.
    original_message_id: str | None
    #: The receiving server's words (Diagnostic-Code, Status), or why it is what it is.
    detail: str


#: MIME parts a message may have to be read at all.
MAX_MIME_PARTS = 200


def read_bounce(raw: bytes, bounce_address: str) -> BounceMail:
    """Read one message; never raises for what a mailbox may hold."""
    message_id = _message_id_of(raw)
    # Counted in the bytes before anything parses them: the parser and the detectors take
    # time with every part (150,000 parts in 5 MB: half a minute), and a bounce has a few.
    parts = raw.lower().count(b"content-type:")
    if parts > MAX_MIME_PARTS:
        detail = f"{parts} MIME parts (a bounce has a few; more than {MAX_MIME_PARTS} are not read)"
        return BounceMail("malformed", message_id, (), (), None, detail)
    try:
        message = email.message_from_bytes(raw)
        return _read(message, message_id, bounce_address)
    except Exception as exc:  # a message must never stop the scan
        return BounceMail("malformed", message_id, (), (), None, f"unreadable: {exc!r}"[:200])


def _read(message: Message, message_id: str, bounce_address: str) -> BounceMail:
    if not message.keys():
        return BounceMail("malformed", message_id, (), (), None, "no mail headers")
    if any(isinstance(d, _STRUCTURE_DEFECTS) for part in message.walk() for d in part.defects):
        return BounceMail("malformed", message_id, (), (), None, "broken MIME structure")
    original = _original(message)
    tokens = _tokens(message, original, bounce_address)
    original_id = _clean_id(original.get("Message-ID")) if original is not None else None

    if feedback := _first_part(message, "message/feedback-report"):
        fields = _fields(feedback)
        feedback_type = fields.get("feedback-type", "").strip().lower()
        recipients = _addresses(fields.get("original-rcpt-to", ""))
        if original is not None:
            recipients += _addresses(str(original.get("To", "")))
        kind: Kind = "complaint" if feedback_type in COMPLAINT_TYPES else "not_bounce"
        detail = f"feedback report: {feedback_type or 'abuse'}"
        if agent := fields.get("user-agent"):
            detail += f" ({agent.strip()})"
        return BounceMail(kind, message_id, tokens, _unique(recipients), original_id, detail)

    blocks = list(_status_blocks(message))
    if blocks:
        return _from_dsn(blocks, message_id, tokens, original_id)

    temporary, permanent = flufl.bounce.all_failures(message)
    if permanent or temporary:
        found = sorted(a.decode("ascii", "replace") for a in permanent or temporary)
        kind = "hard_bounce" if permanent else "soft_bounce"
        detail = _subject(message) or "a bounce (flufl.bounce)"
        return BounceMail(kind, message_id, tokens, tuple(found), original_id, detail)
    return BounceMail("not_bounce", message_id, tokens, (), original_id, _subject(message))


def _from_dsn(
    blocks: list[dict[str, str]],
    message_id: str,
    tokens: tuple[str, ...],
    original_id: str | None,
) -> BounceMail:
    """The worst failure that the blocks of a DSN report."""
    hard, soft, other = [], [], []
    for block in blocks:
        action = block.get("action", "").strip().lower()
        status = _STATUS.search(block.get("status", ""))
        code = status.group(0) if status else ""
        addresses = _addresses(block.get("original-recipient", ""))
        addresses += _addresses(block.get("final-recipient", ""))
        words = " ".join(block.get("diagnostic-code", "").split()) or code or action
        entry = (addresses, f"{code} {words}".strip() if code and code not in words else words)
        if action != "failed":
            other.append(entry)
        elif code.startswith("5") and code not in PASSING_PERMANENT:
            hard.append(entry)
        else:
            soft.append(entry)
    kind: Kind = "hard_bounce" if hard else "soft_bounce" if soft else "not_bounce"
    chosen = hard or soft or other
    recipients = _unique([a for addresses, _ in chosen for a in addresses])
    detail = "; ".join(words for _, words in chosen)[:DETAIL_CHARS]
    if kind == "not_bounce":
        detail = f"a DSN that reports no failure: {detail}"[:DETAIL_CHARS]
    return BounceMail(kind, message_id, tokens, recipients, original_id, detail)


def _status_blocks(message: Message) -> Iterator[dict[str, str]]:
    """The per-recipient blocks of every message/delivery-status part."""
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        blocks = payload if isinstance(payload, list) else []
        for block in blocks[1:] if len(blocks) > 1 else blocks:  # the first is per-message
            if not isinstance(block, Message):
                continue
            fields = _fields(block)
            if "final-recipient" in fields or "action" in fields:
                yield fields


def _fields(part: Message) -> dict[str, str]:
    """The header fields of a report part (a delivery-status block, a feedback report),
    lower-cased names; a feedback report's fields sit in its payload as text."""
    if part.get_content_type() == "message/feedback-report" and not part.is_multipart():
        payload = part.get_payload(decode=True)
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
        part = email.message_from_string(text)
    elif part.is_multipart() and part.get_content_type() == "message/feedback-report":
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            part = inner[0]
    return {name.lower(): str(value) for name, value in part.items()}


def _first_part(message: Message, content_type: str) -> Message | None:
    return next((p for p in message.walk() if p.get_content_type() == content_type), None)


def _original(message: Message) -> Message | None:
    """The headers of our message that a report quotes: a message/rfc822 part, or
    text/rfc822-headers (read as a message)."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        elif kind == "text/rfc822-headers":
            text = part.get_payload(decode=True)
            if isinstance(text, bytes):
                return email.message_from_bytes(text)
    return None


def _tokens(message: Message, original: Message | None, bounce_address: str) -> tuple[str, ...]:
    """The tokens of the VERP addresses the bounce came back to, or that its quoted
    original was sent from (its Return-Path, in a feedback report)."""
    if not bounce_address:
        return ()
    values = [str(v) for name in DELIVERY_HEADERS for v in message.get_all(name) or []]
    if original is not None:
        values += [str(v) for v in original.get_all("Return-Path") or []]
    found = (token_in_verp(address, bounce_address) for _, address in getaddresses(values))
    return _unique([t for t in found if t])


def _addresses(field: str) -> list[str]:
    """The address of a DSN field (``rfc822; user@example.org``) or of an address list."""
    value = field.partition(";")[2] if ";" in field else field
    return [a for _, a in getaddresses([value]) if "@" in a]


def _unique(items: list[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item.strip(), None)
    return tuple(seen)


def _subject(message: Message) -> str:
    return " ".join(str(message.get("Subject", "")).split())[:DETAIL_CHARS]


def _clean_id(value: object) -> str | None:
    text = " ".join(str(value or "").split())
    return text or None


def _message_id_of(raw: bytes) -> str:
    """The Message-ID in the headers of ``raw`` (read without parsing the body), or the
    digest of its bytes."""
    head = raw[:65536].split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    try:
        headers = email.message_from_bytes(head + b"\n\n")
        found = _clean_id(headers.get("Message-ID"))
    except Exception:  # the digest names any bytes
        found = None
    if found and parseaddr(found)[1]:
        return found
    return "sha256:" + hashlib.sha256(raw).hexdigest()
