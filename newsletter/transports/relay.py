"""What the HTTP relay APIs (Postmark, SendGrid, Resend) share: the transport URL and its
token, one httpx client per run, a rendered message as the fields the APIs take, and the
answers that mean the same with every provider (refused token, rate limit, server error,
no answer at all).

Each provider module says how a message becomes its JSON and how its answer becomes one
:class:`SendResult` per message. The token is sent in a header only: it is never put in a
URL, a log line, an error message or :meth:`RelayTransport.describe`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, unquote

import httpx

from .. import __version__
from ..fetch import retry_after
from ..urls import MalformedURL, split_url
from . import RELAY_TOKEN_ENV, OneAtATime, OutgoingEmail, SendResult, TransportError

#: Headers the APIs take as fields of their own, or that would be wrong once the relay
#: re-encodes the message: our DKIM signature covers a body the relay rebuilds, so the
#: relay signs instead (for the domain configured in its console).
_NOT_FORWARDED = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "subject",
        "date",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "dkim-signature",
    }
)
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_FOLD = re.compile(r"\r?\n(?=[ \t])")


@dataclass(frozen=True)
class Outgoing:
    """A rendered message as the fields the relay APIs take."""

    sender: Address
    to: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    subject: str
    text: str | None
    html: str | None
    #: Every other header, unfolded: List-Unsubscribe, List-Unsubscribe-Post, List-Id,
    #: Message-ID, X-Newsletter-Edition...
    headers: dict[str, str]
    message_id: str | None

    @classmethod
    def of(cls, message: EmailMessage) -> Outgoing:
        senders = _addresses(message, "From")
        if not senders:
            raise ValueError("a message without a From header cannot be sent")
        return cls(
            sender=senders[0],
            to=_addresses(message, "To"),
            reply_to=_addresses(message, "Reply-To"),
            subject=str(message.get("Subject", "")),
            text=_body(message, "plain"),
            html=_body(message, "html"),
            headers=_forwarded_headers(message),
            message_id=message.get("Message-ID"),
        )


def to_json(payload: Any) -> bytes:
    """A request body as the APIs take it: compact JSON in UTF-8."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _whole_number(value: int | str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _addresses(message: EmailMessage, name: str) -> tuple[Address, ...]:
    header = message.get(name)
    return tuple(header.addresses) if header is not None else ()


def _forwarded_headers(message: EmailMessage) -> dict[str, str]:
    """The headers the relay is given as they are, each as SMTP would send it, unfolded.
    A sealed email has them in its bytes already; reading them there is several times
    faster than folding each again."""
    head = message.wire.partition(b"\r\n\r\n")[0] if isinstance(message, OutgoingEmail) else b""
    if head and head.isascii():
        fields = (line.partition(":") for line in _FOLD.sub("", head.decode()).split("\r\n"))
        return {
            name: value.strip() for name, _, value in fields if name.lower() not in _NOT_FORWARDED
        }
    return {
        name: _on_the_wire(name, value)
        for name, value in message.items()
        if name.lower() not in _NOT_FORWARDED
    }


def _on_the_wire(name: str, value: Any) -> str:
    """A header's value as SMTP would send it (non-ASCII text as RFC 2047 encoded words,
    which no API can then mangle), unfolded onto one line."""
    return _FOLD.sub("", SMTP.fold(name, value).partition(":")[2]).strip()


def _body(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body((subtype,))
    return part.get_content() if part is not None else None


class Unanswered(Exception):
    """The request brought no answer about the messages themselves (rate limit, server
    error, no answer at all): each message of the request gets the same ``result``."""

    def __init__(self, result: SendResult):
        super().__init__(result.error)
        self.result = result


class RelayTransport(OneAtATime):
    """One relay API over httpx. Subclasses set the class attributes and build requests
    with :meth:`_post`. A run sends over one connection: the relay's rate-limit state
    lives in this object, and a batch endpoint carries more than parallel requests would."""

    delivers_mail = True
    #: For people: describe() and error messages.
    name: ClassVar[str]
    #: The transport URL's scheme.
    scheme: ClassVar[str]
    default_base_url: ClassVar[str]
    #: Query options of the transport URL besides ``base_url`` and ``timeout``; each is
    #: passed to the constructor as a keyword.
    options: ClassVar[frozenset[str]] = frozenset()
    #: Rate-limit headers: requests left in the current window, and when it resets, in
    #: seconds from now or (``reset_is_epoch``) as a Unix time. None: not sent.
    remaining_header: ClassVar[str | None] = None
    reset_header: ClassVar[str | None] = None
    reset_is_epoch: ClassVar[bool] = False

    def __init__(
        self,
        token: str,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_wait: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._token = token
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        url = httpx.URL(self.base_url)
        if url.scheme != "https" and not (url.scheme == "http" and url.host in _LOOPBACK):
            raise TransportError(
                f"{self.name}: base_url {self.base_url} must be https:// (plain http only on"
                " loopback): the API token must not cross the network in clear"
            )
        self.timeout = timeout
        #: A wait for the rate limit up to this many seconds is slept through; a longer one
        #: fails the messages with ``retry_after`` so that the caller schedules them.
        self.max_wait = max_wait
        self._sleep = sleep
        self._not_before = 0.0
        self._client: httpx.Client | None = None

    @classmethod
    def from_url(cls, url: str, token: str = "") -> Self:
        """``SCHEME://TOKEN@?base_url=...&timeout=...``; without a token in the URL,
        ``token`` (from the environment) is used."""
        try:
            parts = split_url(url)
        except MalformedURL as exc:
            raise TransportError(f"{cls.name}: {exc}") from None
        userinfo, _, host = parts.netloc.rpartition("@")
        if host or parts.path.strip("/"):
            # Neither the URL nor its parts go into the message: they may hold the token.
            raise TransportError(
                f"{cls.name}: write the transport URL as {cls.scheme}://TOKEN@ (the token"
                " before an @, nothing after it); another API address goes in ?base_url="
            )
        token = unquote(userinfo) or token
        if not token:
            raise TransportError(
                f"{cls.name} needs an API token: {cls.scheme}://TOKEN@ or {RELAY_TOKEN_ENV}"
            )
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        unknown = sorted(set(query) - {"base_url", "timeout"} - cls.options)
        if unknown:
            raise TransportError(f"{cls.name}: unknown transport option(s) {', '.join(unknown)}")
        try:
            timeout = float(query.pop("timeout", "30"))
        except ValueError as exc:
            raise TransportError(f"{cls.name}: timeout must be a number of seconds") from exc
        base_url = query.pop("base_url", None)
        # The rest are the subclass's own options (``cls.options``), read by its __init__.
        own_options: dict[str, Any] = query
        return cls(token, base_url=base_url, timeout=timeout, **own_options)

    def describe(self) -> str:
        return f"{self.name} API at {self.base_url}"

    def _auth_headers(self) -> dict[str, str]:
        raise NotImplementedError

    def open(self) -> None:
        if self._client is None:
            self._client = httpx.Client(
                base_url=self.base_url,
                timeout=self.timeout,
                headers={
                    "User-Agent": f"newsletter/{__version__}",
                    "Accept": "application/json",
                    **self._auth_headers(),
                },
            )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _post(
        self, path: str, payload: Any, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """POST ``payload`` as JSON (or, given bytes, those, already JSON). Returns an answer about the messages (2xx, or a 4xx
        that refuses them) for the provider to read; raises :class:`Unanswered` when there
        is none, and :class:`TransportError` when the token or the address is refused."""
        self._wait_for_rate_limit()
        self.open()
        assert self._client is not None
        if not isinstance(payload, bytes):
            payload = to_json(payload)
        headers = {"Content-Type": "application/json", **(headers or {})}
        try:
            response = self._client.post(path, content=payload, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise Unanswered(self._failure(f"cannot connect: {type(exc).__name__}: {exc}")) from exc
        except (httpx.WriteError, httpx.WriteTimeout) as exc:
            # The request did not reach the server whole: it cannot have been acted on.
            raise Unanswered(self._failure(f"{type(exc).__name__}: {exc}")) from exc
        except httpx.TransportError as exc:
            # Sent, but the answer was lost (read timeout, connection cut): the relay may
            # have accepted the messages.
            raise Unanswered(
                self._failure(f"no answer: {type(exc).__name__}: {exc}", maybe_sent=True)
            ) from exc
        wait = self._note_rate_limit(response)
        status = response.status_code
        if status in (401, 403):
            raise TransportError(
                f"{self.name} refused the API token or the account (HTTP {status}):"
                f" {self._detail(response)}"
            )
        if status in (404, 405):
            raise TransportError(
                f"{self.name}: POST {response.request.url} answered HTTP {status}; is base_url"
                " right?"
            )
        if status == 429:
            raise Unanswered(
                self._failure(f"rate limit (HTTP 429): {self._detail(response)}", wait)
            )
        if status >= 500:
            raise Unanswered(
                self._failure(f"server error (HTTP {status}): {self._detail(response)}", wait)
            )
        return response

    def _failure(
        self, error: str, retry_after: float | None = None, *, maybe_sent: bool = False
    ) -> SendResult:
        return SendResult(
            "failed",
            error=f"{self.name}: {error}",
            retry_after=retry_after,
            maybe_sent=maybe_sent,
        )

    def _wait_for_rate_limit(self) -> None:
        wait = self._not_before - time.monotonic()
        if wait <= 0:
            return
        if wait > self.max_wait:
            raise Unanswered(self._failure(f"rate limit: no request allowed for {wait:.0f}s", wait))
        self._sleep(wait)

    def _note_rate_limit(self, response: httpx.Response) -> float | None:
        """The wait the answer asks for, if any; no request is made before it is over.
        ``Retry-After`` first, then the end of an exhausted rate-limit window."""
        wait = retry_after(response.headers.get("Retry-After"))
        exhausted = response.status_code == 429 or (
            self.remaining_header is not None
            and response.headers.get(self.remaining_header, "").strip() == "0"
        )
        if wait is None and exhausted:
            wait = self._reset_after(response.headers)
        if wait:
            self._not_before = max(self._not_before, time.monotonic() + wait)
        return wait

    def _reset_after(self, headers: httpx.Headers) -> float | None:
        raw = headers.get(self.reset_header) if self.reset_header else None
        try:
            value = float(raw) if raw is not None else None
        except ValueError:
            return None
        if value is None:
            return None
        return max(0.0, value - time.time() if self.reset_is_epoch else value)

    def _detail(self, response: httpx.Response) -> str:
        """The provider's words about a refusal, without the token, kept short."""
        try:
            return self._error_text(response.json())
        except ValueError:
            return self._redact(response.text.strip()[:300] or response.reason_phrase)

    def _error_text(self, body: Any) -> str:
        """The message in an error body: Postmark's ``Message``, Resend's ``message``,
        SendGrid's ``errors[].message``."""
        if isinstance(body, dict) and isinstance(body.get("errors"), list):
            text = "; ".join(
                str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in body["errors"]
            )
        elif isinstance(body, dict):
            text = str(body.get("Message") or body.get("message") or body)
        else:
            text = str(body)
        return self._redact(text[:300])

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "[token]")


class BatchRelayTransport(RelayTransport):
    """A relay with a batch endpoint: :meth:`send_many` posts up to ``max_batch`` messages
    in one request (in several when they would pass ``max_request_bytes``), and
    :meth:`send` is a batch of one (so a message gets the same request, and the same
    idempotency key, whichever way it is sent). ``?batch_size=N`` in the transport URL
    makes batches smaller than the provider's largest."""

    options: ClassVar[frozenset[str]] = frozenset({"batch_size"})
    #: The most messages the provider takes in one request.
    largest_batch: ClassVar[int]
    #: The largest request body the provider takes, if it says.
    max_request_bytes: ClassVar[int | None] = None

    def __init__(self, token: str, *, batch_size: int | str | None = None, **kwargs: Any):
        super().__init__(token, **kwargs)
        size = self.largest_batch if batch_size is None else _whole_number(batch_size)
        if size is None or not 1 <= size <= self.largest_batch:
            raise TransportError(
                f"{self.name}: batch_size must be a whole number from 1 to {self.largest_batch}"
            )
        self.max_batch = size

    def send(self, message: EmailMessage) -> SendResult:
        return self.send_many([message])[0]

    def send_many(self, messages: Sequence[EmailMessage]) -> list[SendResult]:
        """One result per message, in order. Raises :class:`TransportError` when the
        token or the account is refused (nothing was sent)."""
        if len(messages) > self.max_batch:
            raise ValueError(f"{self.name} takes at most {self.max_batch} messages a batch")
        outgoing = [Outgoing.of(m) for m in messages]
        bodies = [to_json(self._payload(m)) for m in outgoing]
        results: list[SendResult] = []
        for part in self._requests(bodies):
            try:
                answers = self._send_batch(outgoing[part], b"[" + b",".join(bodies[part]) + b"]")
            except Unanswered as exc:
                answers = [exc.result] * len(outgoing[part])
            except TransportError as exc:
                if not results:
                    raise
                answers = [SendResult("failed", error=str(exc))] * (len(outgoing) - len(results))
                return results + answers
            results += answers
        return results

    def _requests(self, bodies: list[bytes]) -> list[slice]:
        """The messages of each request: all of them, unless together they would pass
        ``max_request_bytes`` (a message larger than that goes alone, to be refused)."""
        parts, start, size = [], 0, 2
        for index, body in enumerate(bodies):
            if (
                self.max_request_bytes
                and index > start
                and size + len(body) > self.max_request_bytes
            ):
                parts.append(slice(start, index))
                start, size = index, 2
            size += len(body) + 1
        return [*parts, slice(start, len(bodies))] if bodies else []

    def _payload(self, message: Outgoing) -> dict[str, Any]:
        raise NotImplementedError

    def _send_batch(self, messages: list[Outgoing], body: bytes) -> list[SendResult]:
        """Post ``body`` (the JSON array of the messages' payloads) and read one result per
        message from the answer."""
        raise NotImplementedError

    def _json(self, response: httpx.Response) -> Any:
        """The answer's JSON body; an answer that is not JSON cannot say what became of the
        messages, which may then have gone out."""
        try:
            return response.json()
        except ValueError:
            raise self._unexpected(response) from None

    def _unexpected(self, response: httpx.Response) -> Unanswered:
        text = self._redact(response.text[:200])
        return Unanswered(
            self._failure(
                f"unexpected answer (HTTP {response.status_code}): {text!r}", maybe_sent=True
            )
        )
