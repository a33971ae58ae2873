"""SendGrid over its v3 HTTP API: ``sendgrid://API_KEY@``.

One ``POST /v3/mail/send`` per message
(https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send), answered 202
with the message id in ``X-Message-Id``
(https://www.twilio.com/docs/sendgrid/glossary/x-message-id); refusals are 400s with an
``errors`` list (https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors).

No batch: a v3 request can carry up to 1000 *personalizations*, but they share one
content, and per-recipient content can only come from substitutions, capped at 10,000
bytes per personalization
(https://www.twilio.com/docs/sendgrid/for-developers/sending-email/personalizations).
Each edition is its own HTML (its papers, its signed links), far above that; so each
message is one request with one personalization: its ``max_batch`` is 1, and the
delivery loop hands it one message at a time.

Rate limits come as ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (a Unix time)
(https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/rate-limits).
SendGrid has no idempotency key: a message whose answer was lost may have gone out
(``maybe_sent``), and sending it again may deliver it twice.
"""

from __future__ import annotations

import re
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any, Literal

import httpx

from . import SendResult
from .relay import Outgoing, RelayTransport, Unanswered

#: The custom argument that carries our Message-ID: SendGrid copies custom arguments into
#: every event of the message, so a bounce can be matched to its delivery.
MESSAGE_ID_ARG = "newsletter_message_id"
#: The error ``field`` of a refused recipient address.
RECIPIENT_FIELD = re.compile(r"personalizations\.\d+\.(to|cc|bcc)\b")


class SendGridTransport(RelayTransport):
    name = "SendGrid"
    scheme = "sendgrid"
    default_base_url = "https://api.sendgrid.com"
    remaining_header = "X-RateLimit-Remaining"
    reset_header = "X-RateLimit-Reset"
    reset_is_epoch = True

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def send(self, message: EmailMessage) -> SendResult:
        try:
            response = self._post("/v3/mail/send", _payload(Outgoing.of(message)))
        except Unanswered as exc:
            return exc.result
        if response.is_success:
            return SendResult("sent", transport_id=response.headers.get("X-Message-Id"))
        # 400 (invalid request), 413 (too large): rejected only when every error is about a
        # recipient address; anything else is our request's fault, not the subscriber's.
        status: Literal["rejected", "failed"] = (
            "rejected" if _about_recipients(response) else "failed"
        )
        return SendResult(
            status, error=f"SendGrid {response.status_code}: {self._detail(response)}"
        )


def _payload(message: Outgoing) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "personalizations": [{"to": [_contact(a) for a in message.to]}],
        "from": _contact(message.sender),
        "subject": message.subject,
        # The v3 API wants text/plain first, then text/html.
        "content": [
            {"type": kind, "value": body}
            for kind, body in (("text/plain", message.text), ("text/html", message.html))
            if body is not None
        ],
        # SendGrid refuses to set only x-sg-id, x-sg-eid, received, dkim-signature,
        # Content-Type, Content-Transfer-Encoding, To, From, Subject, Reply-To, CC and BCC
        # this way; none of them is among ours.
        "headers": message.headers,
    }
    if message.reply_to:
        payload["reply_to_list"] = [_contact(a) for a in message.reply_to]
    if message.message_id:
        payload["custom_args"] = {MESSAGE_ID_ARG: message.message_id}
    return payload


def _about_recipients(response: httpx.Response) -> bool:
    """Whether every error names a recipient field ("personalizations.0.to.0.email")."""
    try:
        errors = response.json().get("errors")
        fields = [str(e.get("field") or "") for e in errors]
    except (ValueError, AttributeError, TypeError):
        return False
    return bool(fields) and all(RECIPIENT_FIELD.match(f) for f in fields)


def _contact(address: Address) -> dict[str, str]:
    contact = {"email": address.addr_spec}
    if address.display_name:
        contact["name"] = address.display_name
    return contact
