"""The HTTP fetcher against a real server on loopback that serves the fixtures and can be
scripted to fail: 5xx, 429 with Retry-After, a response too slow to wait for, 404."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import urlsplit

import httpx
import pytest

from newsletter.fetch import FetchError, default_user_agent, fetch_text, make_client, retry_after
from newsletter.sources.arxiv_api import build_query_url, parse_arxiv_atom
from newsletter.sources.hf_daily import parse_hf_daily

from .feedserver import FIXTURES, FeedServer, Reply

USER_AGENT = default_user_agent("https://papers.example.org", "papers@example.org")


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with make_client(USER_AGENT, timeout=5.0) as http:
        yield http


@pytest.fixture
def sleeps() -> list[float]:
    """Pass ``sleep=sleeps.append``: the waits are recorded instead of slept."""
    return []


def test_user_agent_names_the_newsletter_and_a_contact() -> None:
    assert USER_AGENT == "newsletter/0.1.0 (+https://papers.example.org; mailto:papers@example.org)"


def test_fetches_a_fixture_decoded_and_sends_the_user_agent(
    feed_server: FeedServer, client: httpx.Client, sleeps: list[float]
) -> None:
    text = fetch_text(
        client, feed_server.url("/fixtures/hf-daily-papers.json"), sleep=sleeps.append
    )

    assert text == (FIXTURES / "hf-daily-papers.json").read_text(encoding="utf-8")
    assert len(list(parse_hf_daily(text))) == 30
    assert [r.headers["User-Agent"] for r in feed_server.requests] == [USER_AGENT]
    assert sleeps == []


def test_api_query_url_reaches_the_server_intact(
    feed_server: FeedServer, client: httpx.Client
) -> None:
    url = build_query_url(feed_server.url("/api/query"), ["cs.AI", "cs.LG"], ["graph neural"], 0, 5)
    feed_server.script("/api/query", Reply(body=(FIXTURES / "arxiv-api-two-ids.xml").read_bytes()))

    text = fetch_text(client, url)

    parts = urlsplit(url)
    assert feed_server.requests[0].path == f"{parts.path}?{parts.query}"
    assert [p.id for p in parse_arxiv_atom(text)] == ["1707.08567"]


def test_params_are_added_to_the_query_already_in_the_url(
    feed_server: FeedServer, client: httpx.Client
) -> None:
    fetch_text(client, feed_server.url("/fixtures/arxiv-api-two-ids.xml?a=1"), params={"b": 2})

    assert feed_server.requests[0].path == "/fixtures/arxiv-api-two-ids.xml?a=1&b=2"


def test_redirect_is_followed(feed_server: FeedServer, client: httpx.Client) -> None:
    url = feed_server.script(
        "/old", Reply(301, headers={"Location": "/fixtures/arxiv-api-two-ids.xml"})
    )

    assert fetch_text(client, url) == (FIXTURES / "arxiv-api-two-ids.xml").read_text("utf-8")


def test_5xx_is_retried_with_growing_jittered_backoff(
    feed_server: FeedServer, client: httpx.Client, sleeps: list[float]
) -> None:
    url = feed_server.script("/flaky", Reply(503), Reply(502), Reply(body=b"finally"))

    assert fetch_text(client, url, backoff=2.0, sleep=sleeps.append) == "finally"

    assert len(feed_server.requests) == 3
    assert len(sleeps) == 2
    assert 1.0 <= sleeps[0] <= 2.0
    assert 2.0 <= sleeps[1] <= 4.0


def test_429_waits_as_long_as_retry_after_says(
    feed_server: FeedServer, client: httpx.Client, sleeps: list[float]
) -> None:
    url = feed_server.script("/busy", Reply(429, headers={"Retry-After": "7"}), Reply(body=b"ok"))

    assert fetch_text(client, url, sleep=sleeps.append) == "ok"

    assert sleeps == [7.0]
    assert len(feed_server.requests) == 2


def test_retry_after_as_http_date_is_honoured(
    feed_server: FeedServer, client: httpx.Client, sleeps: list[float]
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    url = feed_server.script("/later", Reply(503, headers={"Retry-After": when}), Reply(body=b"ok"))

    assert fetch_text(client, url, sleep=sleeps.append) == "ok"

    [wait] = sleeps
    assert 28.0 <= wait <= 30.0


def test_retry_after_beyond_max_backoff_gives_up_at_once(
    feed_server: FeedServer, client: httpx.Client, sleeps: list[float]
) -> None:
    url = feed_server.script("/banned", Reply(429, headers={"Retry-After": "3600"}))

    with pytest.raises(FetchError) as caught:
        fetch_text(client, url, sleep=sleeps.append)

    assert str(caught.value) == (
        f"GET {url}: HTTP 429 Too Many Requests, Retry-After 3600s exceeds max_backoff 60s"
        " (gave up after 1 attempt)"
    )
    assert len(feed_server.requests) == 1
    assert sleeps == []


def test_persistent_5xx_fails_after_every_attempt_with_capped_waits(
    feed_server: FeedServer, client: httpx.Client, sleeps: list[float]
) -> None:
    url = feed_server.script("/down", Reply(500))

    with pytest.raises(FetchError) as caught:
        fetch_text(client, url, retries=3, backoff=10.0, max_backoff=15.0, sleep=sleeps.append)

    assert (
        str(caught.value) == f"GET {url}: HTTP 500 Internal Server Error (gave up after 4 attempts)"
    )
    assert (caught.value.status, caught.value.attempts) == (500, 4)
    assert len(feed_server.requests) == 4
    assert len(sleeps) == 3
    assert 5.0 <= sleeps[0] <= 10.0
    assert all(7.5 <= wait <= 15.0 for wait in sleeps[1:])


def test_404_fails_at_once(
    feed_server: FeedServer, client: httpx.Client, sleeps: list[float]
) -> None:
    url = feed_server.url("/fixtures/no-such-feed.xml")

    with pytest.raises(FetchError) as caught:
        fetch_text(client, url, sleep=sleeps.append)

    assert str(caught.value) == f"GET {url}: HTTP 404 Not Found (gave up after 1 attempt)"
    assert caught.value.status == 404
    assert len(feed_server.requests) == 1
    assert sleeps == []


def test_slow_server_times_out_and_is_retried(feed_server: FeedServer, sleeps: list[float]) -> None:
    url = feed_server.script("/slow", Reply(body=b"too late", delay=2.0))

    with make_client(USER_AGENT, timeout=0.2) as impatient, pytest.raises(FetchError) as caught:
        fetch_text(impatient, url, retries=1, sleep=sleeps.append)

    assert str(caught.value).startswith(f"GET {url}: ReadTimeout: ")
    assert str(caught.value).endswith("(gave up after 2 attempts)")
    assert caught.value.status is None
    assert len(feed_server.requests) == 2
    assert len(sleeps) == 1


def test_refused_connection_is_retried_then_reported(
    client: httpx.Client, sleeps: list[float]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/feed"  # nothing listens once closed

    with pytest.raises(FetchError) as caught:
        fetch_text(client, url, retries=2, sleep=sleeps.append)

    assert str(caught.value).startswith(f"GET {url}: ConnectError: ")
    assert str(caught.value).endswith("(gave up after 3 attempts)")
    assert len(sleeps) == 2


def test_unusable_url_fails_without_retrying(client: httpx.Client, sleeps: list[float]) -> None:
    with pytest.raises(FetchError, match=r"^GET ftp://example\.org/feed: UnsupportedProtocol: "):
        fetch_text(client, "ftp://example.org/feed", sleep=sleeps.append)

    assert sleeps == []


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # already past
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("²", None),
    ],
)
def test_retry_after_header_values(header: str | None, seconds: float | None) -> None:
    now = datetime(2015, 10, 21, 7, 28, tzinfo=UTC)

    assert retry_after(header, now=now) == seconds


def test_a_body_over_the_cap_fails_at_once_naming_the_cap(
    feed_server: FeedServer, client: httpx.Client, sleeps: list[float]
) -> None:
    url = feed_server.script("/big", Reply(body=b"x" * 10_000))

    assert fetch_text(client, url, max_bytes=10_000) == "x" * 10_000
    with pytest.raises(FetchError, match=r"response larger than 9,999 bytes"):
        fetch_text(client, url, max_bytes=9_999, sleep=sleeps.append)

    assert len(feed_server.requests) == 2 and sleeps == []


def test_the_cap_counts_the_decompressed_body(
    feed_server: FeedServer, client: httpx.Client
) -> None:
    import gzip

    bomb = gzip.compress(b"[" + b" " * 1_000_000 + b"]")
    url = feed_server.script("/bomb", Reply(body=bomb, headers={"Content-Encoding": "gzip"}))

    with pytest.raises(FetchError, match="larger than"):
        fetch_text(client, url, max_bytes=100_000)


def test_a_body_cut_short_is_retried_from_its_start(
    feed_server: FeedServer, client: httpx.Client, sleeps: list[float]
) -> None:
    cut = Reply(body=b"partial", content_length=100)
    url = feed_server.script("/cut", cut, Reply(body=b"complete"))

    assert fetch_text(client, url, sleep=sleeps.append) == "complete"
    assert len(feed_server.requests) == 2 and len(sleeps) == 1
