"""Postmark over its HTTP API: ``postmark://SERVER_TOKEN@[?message_stream=broadcast]``.

Every send goes to the batch endpoint, up to 500 messages and 50 MB a request:
https://postmarkapp.com/developer/user-guide/send-email-with-api/batch-emails. Its answer
is a 200 even when some messages failed: a list, in the order of the request, of one
result per message with its own ``ErrorCode`` (0 = accepted). Error codes:
https://postmarkapp.com/developer/api/overview#error-codes. Authentication, ``Headers``
and ``MessageStream``: https://postmarkapp.com/developer/user-guide/sending-with-api.

A newsletter belongs in a *broadcast* stream (Postmark keeps bulk mail apart from
transactional mail), hence the default; the stream's own unsubscribe handling should be
off, as every message carries our List-Unsubscribe headers.

Postmark has no idempotency key: a batch whose answer was lost may have gone out
(``maybe_sent``), and sending it again may deliver it twice. Postmark documents no
rate-limit headers either; a 429 is read with its ``Retry-After`` if it has one.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from . import SendResult, TransportError
from .relay import BatchRelayTransport, Outgoing

#: The account or server cannot send at all: 10 bad or missing server token, 400/401
#: sender signature not found / not confirmed, 405 not allowed to send (out of credits),
#: 412/413 account pending / may not send.
ACCOUNT = frozenset({10, 400, 401, 405, 412, 413})
#: The ErrorCode 300 (invalid email request) messages that blame a recipient address, as
#: opposed to the From address or the content ("Invalid 'To' address: 'x'.", "Error
#: parsing 'To': Illegal email domain...").
RECIPIENT_ERROR = re.compile(r"^(Invalid|Error\s+parsing)\s+'(To|Cc|Bcc)'", re.IGNORECASE)


class PostmarkTransport(BatchRelayTransport):
    name = "Postmark"
    scheme = "postmark"
    default_base_url = "https://api.postmarkapp.com"
    options = BatchRelayTransport.options | {"message_stream"}
    largest_batch = 500
    max_request_bytes = 50_000_000

    def __init__(self, token: str, *, message_stream: str = "broadcast", **kwargs: Any):
        super().__init__(token, **kwargs)
        self.message_stream = message_stream

    def describe(self) -> str:
        return f"{super().describe()}, message stream {self.message_stream}"

    def _auth_headers(self) -> dict[str, str]:
        return {"X-Postmark-Server-Token": self._token}

    def _payload(self, message: Outgoing) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "From": str(message.sender),
            "To": ", ".join(map(str, message.to)),
            "Subject": message.subject,
            "MessageStream": self.message_stream,
            "Headers": [{"Name": name, "Value": value} for name, value in message.headers.items()],
        }
        if message.reply_to:
            payload["ReplyTo"] = ", ".join(map(str, message.reply_to))
        if message.text is not None:
            payload["TextBody"] = message.text
        if message.html is not None:
            payload["HtmlBody"] = message.html
        return payload

    def _send_batch(self, messages: list[Outgoing], body: bytes) -> list[SendResult]:
        response = self._post("/email/batch", body)
        if not response.is_success:
            return [self._refusal(response)] * len(messages)
        answer = self._json(response)
        if not isinstance(answer, list) or len(answer) != len(messages):
            raise self._unexpected(response)
        self._check_account(answer)
        return [self._result(item) for item in answer]

    def _refusal(self, response: httpx.Response) -> SendResult:
        """The request as a whole was refused: a 422 with one error for all of it."""
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not answer.get("ErrorCode"):
            return self._failure(f"HTTP {response.status_code}: {self._detail(response)}")
        self._check_account([answer])
        return self._result(answer)

    def _check_account(self, items: list[Any]) -> None:
        """Raise when every message was refused for the account's sake: nothing went out,
        and nothing will until the operator acts."""
        codes = {item.get("ErrorCode") if isinstance(item, dict) else None for item in items}
        if codes <= ACCOUNT:
            raise TransportError(f"Postmark cannot send: {self._error_text(items[0])}")

    def _result(self, item: Any) -> SendResult:
        if not isinstance(item, dict):
            return self._failure(f"unexpected result {item!r}", maybe_sent=True)
        # ErrorCode may be missing when Postmark accepts a message with delayed delivery.
        code = item.get("ErrorCode", 0)
        if code == 0:
            return SendResult("sent", transport_id=item.get("MessageID"))
        text = self._error_text(item)
        # 406 inactive recipient: Postmark stopped sending to the address after a hard
        # bounce or a spam complaint. Every other error is about our request, our account
        # or a passing state (100 maintenance, 429 rate limit).
        if code == 406 or (code == 300 and RECIPIENT_ERROR.match(text)):
            return SendResult("rejected", error=f"Postmark {code}: {text}")
        return SendResult("failed", error=f"Postmark {code}: {text}")
