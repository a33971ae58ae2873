"""Fetching feed bodies over HTTP (httpx), politely: a User-Agent that says who is asking,
and retries with exponential back-off on the failures that pass (timeouts, dropped
connections, 429 and 5xx), honouring the server's ``Retry-After``. A body is streamed,
and refused past a size cap (``max_response_bytes``)."""

from __future__ import annotations

import io
import logging
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import IO

import httpx

from . import __version__

log = logging.getLogger(__name__)

#: Transport failures worth another try; anything else (a bad URL, say) fails at once.
_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class FetchError(RuntimeError):
    """A URL could not be fetched; the message names the URL, the last failure and the
    number of attempts."""

    def __init__(self, url: str, failure: str, attempts: int, status: int | None = None):
        super().__init__(
            f"GET {url}: {failure} (gave up after {attempts} attempt{'s' * (attempts != 1)})"
        )
        self.url = url
        self.status = status
        self.attempts = attempts


class ResponseTooLarge(FetchError):
    """A body longer than the cap, which is not asked for again: the file it was written to
    holds its first ``max_bytes`` bytes, in ``encoding``."""

    def __init__(self, url: str, max_bytes: int, attempts: int, encoding: str):
        super().__init__(url, f"response larger than {max_bytes:,} bytes", attempts)
        self.max_bytes = max_bytes
        self.encoding = encoding


def default_user_agent(contact_url: str, contact_email: str) -> str:
    """A User-Agent that tells feed operators who we are and how to reach us."""
    return f"newsletter/{__version__} (+{contact_url}; mailto:{contact_email})"


def make_client(user_agent: str, timeout: float) -> httpx.Client:
    """A client that sends ``user_agent``, follows redirects and gives up on a silent server
    after ``timeout`` seconds (per connect, read or write)."""
    return httpx.Client(headers={"User-Agent": user_agent}, timeout=timeout, follow_redirects=True)


def fetch_text(
    client: httpx.Client,
    url: str,
    *,
    params: Mapping[str, str | int] | None = None,
    retries: int = 4,
    backoff: float = 1.0,
    max_backoff: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    max_bytes: int | None = None,
) -> str:
    """The body of a successful GET, decoded (see :func:`download`)."""
    body = io.BytesIO()
    encoding = download(
        client,
        url,
        body,
        params=params,
        retries=retries,
        backoff=backoff,
        max_backoff=max_backoff,
        sleep=sleep,
        max_bytes=max_bytes,
    )
    return body.getvalue().decode(encoding, errors="replace")


def download(
    client: httpx.Client,
    url: str,
    file: IO[bytes],
    *,
    params: Mapping[str, str | int] | None = None,
    retries: int = 4,
    backoff: float = 1.0,
    max_backoff: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    max_bytes: int | None = None,
) -> str:
    """Write the body of a successful GET into ``file`` as it arrives, and return its text
    encoding (the ``charset`` the server gave, else UTF-8). Up to ``retries`` more attempts
    follow a transient failure, also one midway through the body (``file`` starts again),
    waiting ``backoff * 2**n`` seconds (capped at ``max_backoff``, with jitter of up to
    -50%) or as long as ``Retry-After`` asks. A server that asks for more than
    ``max_backoff`` is not retried: coming back sooner would ignore its request. A body of
    more than ``max_bytes`` (decompressed) is a :class:`ResponseTooLarge`."""
    # URL(url, params=None) would drop the query already in ``url``.
    target = httpx.URL(url).copy_merge_params(params) if params else httpx.URL(url)
    attempts = max(1, retries + 1)
    attempt = 0
    while True:
        attempt += 1
        status: int | None = None
        asked: float | None = None
        try:
            with client.stream("GET", target) as response:
                if response.is_success:
                    encoding = response.encoding or "utf-8"
                    _copy(response, file, max_bytes, str(target), attempt, encoding)
                    return encoding
                status = response.status_code
                failure = f"HTTP {status} {response.reason_phrase}".rstrip()
                header = response.headers.get("Retry-After")
        except _TRANSIENT as exc:
            failure = f"{type(exc).__name__}: {exc}"
        except httpx.HTTPError as exc:
            raise FetchError(str(target), f"{type(exc).__name__}: {exc}", attempt) from exc
        else:
            if status != 429 and status < 500:
                raise FetchError(str(target), failure, attempt, status)
            asked = retry_after(header)
            if asked is not None and asked > max_backoff:
                failure += f", Retry-After {asked:.0f}s exceeds max_backoff {max_backoff:g}s"
                raise FetchError(str(target), failure, attempt, status)
        if attempt >= attempts:
            raise FetchError(str(target), failure, attempt, status)
        if asked is None:
            asked = min(max_backoff, backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
        log.warning(
            "GET %s: %s; retrying in %.1fs (attempt %d of %d)",
            target,
            failure,
            asked,
            attempt + 1,
            attempts,
        )
        sleep(asked)


def _copy(
    response: httpx.Response,
    file: IO[bytes],
    max_bytes: int | None,
    url: str,
    attempt: int,
    encoding: str,
) -> None:
    """The body into ``file``, from its start; past ``max_bytes`` the rest is not read."""
    file.seek(0)
    file.truncate()
    size = 0
    for chunk in response.iter_bytes():
        if max_bytes is not None and size + len(chunk) > max_bytes:
            file.write(chunk[: max_bytes - size])
            raise ResponseTooLarge(url, max_bytes, attempt, encoding)
        file.write(chunk)
        size += len(chunk)


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP-date), or
    None if there is none or it cannot be read."""
    if value is None or not (value := value.strip()):
        return None
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())
