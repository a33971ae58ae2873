"""Postmark's and Resend's batch endpoints on the loopback HTTP server, for the delivery
tests: each answers one result per message as the provider does, keeps what it accepted
(recipient and Message-ID), and does what the provider does with an idempotency key
(Resend: the same key and payload answer as the first time and send nothing). An
address starting with ``gone`` is refused for good (Postmark 406 inactive recipient,
Resend an invalid ``to``), one starting with ``busy`` (or in ``busy``) is not accepted this
time (Postmark 100 maintenance, Resend an invalid field). One request can be held (never answered while
the test runs), as if the sender died while it was on the wire."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from .feedserver import FeedServer, Reply, Request

POSTMARK = "/email/batch"
RESEND = "/emails/batch"


@dataclass
class RelaySink:
    server: FeedServer
    #: The batch request (counting from 1) whose answer is held until ``release`` is set;
    #: its messages are accepted all the same.
    hold: int | None = None
    #: Seconds to wait before answering the request ``slow`` (counting from 1).
    slow: int | None = None
    delay: float = 0.0
    #: Addresses not accepted this time, as those starting with ``busy``.
    busy: set[str] = field(default_factory=set)
    #: (recipient, Message-ID) of every message accepted, in order.
    accepted: list[tuple[str, str]] = field(default_factory=list)
    batches: list[Request] = field(default_factory=list)
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    _keys: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.server.script(POSTMARK, self._postmark)
        self.server.script(RESEND, self._resend)

    def url(self, scheme: str, **options: Any) -> str:
        query = "&".join(
            f"{k}={v}" for k, v in {"base_url": self.server.url(""), **options}.items()
        )
        return f"{scheme}://tok-5ecret@?{query}"

    def recipients(self) -> list[str]:
        return [to for to, _ in self.accepted]

    def _postmark(self, request: Request) -> Reply:
        items = request.json()
        results = []
        with self._lock:
            number = self._number(request)
            for n, item in enumerate(items):
                to = item["To"]
                if to.startswith("gone"):
                    results.append(
                        {"ErrorCode": 406, "Message": f"Found inactive addresses: {to}."}
                    )
                elif to.startswith("busy") or to in self.busy:
                    results.append({"ErrorCode": 100, "Message": "Maintenance."})
                else:
                    headers = {h["Name"]: h["Value"] for h in item["Headers"]}
                    self.accepted.append((to, headers["Message-ID"]))
                    results.append({"To": to, "ErrorCode": 0, "MessageID": f"pm-{number}-{n}"})
        return self._answer(number, results)

    def _resend(self, request: Request) -> Reply:
        key = request.header("Idempotency-Key")
        digest = hashlib.sha256(request.body).hexdigest()
        with self._lock:
            number = self._number(request)
            if key in self._keys:
                seen, answer = self._keys[key]
                if seen != digest:
                    conflict = {
                        "statusCode": 409,
                        "name": "invalid_idempotent_request",
                        "message": "Same idempotency key used with a different request payload.",
                    }
                    return _json(conflict, 409)
                return Reply(200, answer, {"Content-Type": "application/json"})
            data, errors = [], []
            for n, item in enumerate(request.json()):
                [to] = item["to"]
                if to.startswith("gone"):
                    errors.append({"index": n, "message": "Invalid `to` field."})
                elif to.startswith("busy") or to in self.busy:
                    errors.append({"index": n, "message": "Invalid `headers` field."})
                else:
                    self.accepted.append((to, item["headers"]["Message-ID"]))
                    data.append({"id": f"re-{number}-{n}"})
            body = {"data": data, "errors": errors} if errors else {"data": data}
            if key:
                self._keys[key] = (digest, json.dumps(body).encode())
        return self._answer(number, body)

    def _number(self, request: Request) -> int:
        self.batches.append(request)
        return len(self.batches)

    def _answer(self, number: int, body: Any) -> Reply:
        if number == self.hold:
            self.held.set()
            self.release.wait(120)
        reply = _json(body)
        if number == self.slow:
            reply.delay = self.delay
        return reply


def _json(body: Any, status: int = 200) -> Reply:
    return Reply(status, json.dumps(body).encode(), {"Content-Type": "application/json"})
