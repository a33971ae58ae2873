"""Resend over its HTTP API: ``resend://API_KEY@``.

Every send goes to the batch endpoint, up to 100 messages a request:
https://resend.com/docs/api-reference/emails/send-batch-emails. It runs in *permissive*
validation (``x-batch-validation``), so that one invalid message does not refuse the
whole batch: the 200 answer lists the ids of the emails created, in order, and an
``errors`` array of ``{index, message}`` for the others
(https://resend.com/docs/dashboard/emails/batch-validation-modes). Errors:
https://resend.com/docs/api-reference/errors. Rate limits (``ratelimit-remaining``,
``ratelimit-reset`` in seconds, ``retry-after``):
https://resend.com/docs/api-reference/rate-limit.

Unlike Postmark and SendGrid, Resend takes an ``Idempotency-Key``
(https://resend.com/docs/dashboard/emails/idempotency-keys): for 24 hours, the same key
with the same payload answers as the first time without sending again, and the same key
with another payload is refused (409 ``invalid_idempotent_request``). The key is derived
from the Message-IDs of the request, which the ledger keeps across retries: retrying a
batch (or a message alone) whose answer was lost cannot send it twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import httpx

from . import SendResult
from .relay import BatchRelayTransport, Outgoing


def idempotency_key(messages: Sequence[Outgoing]) -> str | None:
    """The same for the same messages, in the same order, and different for any other:
    None if a message has no Message-ID to derive it from."""
    ids = [m.message_id for m in messages]
    if not all(ids):
        return None
    return "newsletter/" + hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()


class ResendTransport(BatchRelayTransport):
    name = "Resend"
    scheme = "resend"
    default_base_url = "https://api.resend.com"
    largest_batch = 100
    remaining_header = "ratelimit-remaining"
    reset_header = "ratelimit-reset"

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def _payload(self, message: Outgoing) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "from": str(message.sender),
            "to": [str(a) for a in message.to],
            "subject": message.subject,
            "headers": message.headers,
        }
        if message.reply_to:
            payload["reply_to"] = [str(a) for a in message.reply_to]
        if message.html is not None:
            payload["html"] = message.html
        # Resend derives a text part from the HTML when none is given; ours is written.
        if message.text is not None:
            payload["text"] = message.text
        return payload

    def _send_batch(self, messages: list[Outgoing], body: bytes) -> list[SendResult]:
        headers = {"x-batch-validation": "permissive"}
        if key := idempotency_key(messages):
            headers["Idempotency-Key"] = key
        response = self._post("/emails/batch", body, headers)
        if not response.is_success:
            return [self._refusal(response)] * len(messages)
        answer = self._json(response)
        try:
            errors = {int(e["index"]): str(e["message"]) for e in answer.get("errors") or []}
            ids = [str(d["id"]) for d in answer.get("data") or []]
        except (AttributeError, KeyError, TypeError, ValueError):
            raise self._unexpected(response) from None
        # ``data`` holds the emails created, in order: the messages not in ``errors``.
        indexes = range(len(messages))
        if len(ids) + len(errors) != len(messages) or not set(errors) <= set(indexes):
            raise self._unexpected(response)
        created = iter(ids)
        return [
            self._invalid(errors[i]) if i in errors else SendResult("sent", next(created))
            for i in indexes
        ]

    def _invalid(self, text: str) -> SendResult:
        """A message that failed validation. The error names the field only in its words
        ("Invalid `to` field..."): an invalid recipient is refused for good, any other
        field is our request's fault and must not suppress the subscriber."""
        error = f"Resend: {self._redact(text)}"
        return SendResult("rejected" if "`to`" in text else "failed", error=error)

    def _refusal(self, response: httpx.Response) -> SendResult:
        """A 4xx for the whole request (401, 403, 404, 405, 429 and 5xx are read before):
        our request is wrong, not the recipients, so the messages are failed, not rejected."""
        try:
            name = response.json().get("name")
        except (ValueError, AttributeError):
            name = None
        error = f"Resend {response.status_code} {name or 'error'}: {self._detail(response)}"
        # 409: the idempotency key was seen in the last 24 hours, either still in flight
        # (concurrent_idempotent_requests) or with another payload
        # (invalid_idempotent_request): these messages were handed over before and may
        # have gone out.
        return SendResult("failed", error=error, maybe_sent=response.status_code == 409)
