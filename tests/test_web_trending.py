"""The public pages over real HTTP (uvicorn on loopback, httpx): the home page with today's
trending list, the sign-up with an address alone, "See what you would get", the archive of
a day's list and its Atom feed (read back with feedparser)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import feedparser
import pytest
from httpx import Client

from newsletter.mail.text import display_text, one_line
from newsletter.models import Status, to_utc_iso
from newsletter.ranking.trending import trending_papers
from newsletter.store.ingest import ingest_path, sample_papers_path
from newsletter.subscribers.profiles import add_subscriber

from . import test_web as webtests
from .conftest import make_paper
from .test_trending import HF_DAILY

TODAY = datetime.now(UTC).date()
LISTED_TITLE = re.compile(r'<h3 class="listing-title">(?:<a href="[^"]*">)?(.*?)(?:</a>)?</h3>')
WHY = re.compile(r'<div class="why">Why: (.*?)</div>')


@pytest.fixture
def web(settings, smtp_server) -> Iterator[webtests.Web]:
    settings = webtests.web_settings(settings, smtp_server)
    with webtests.running(settings) as url, Client(base_url=url) as client:
        yield webtests.Web(url, settings, client)


@pytest.fixture
def trending_day(store) -> None:
    """The sample page and the recorded Hugging Face papers, ingested today."""
    ingest_path(store, sample_papers_path())
    ingest_path(store, HF_DAILY)


def listed_titles(text: str) -> list[str]:
    return [html.unescape(t) for t in LISTED_TITLE.findall(text)]


def shown(title: str) -> str:
    return one_line(display_text(title))


def counts(store) -> dict[str, int]:
    tables = ["subscribers", "profiles", "events", "deliveries", "feedback", "profile_embeddings"]
    return {table: store.count(table) for table in tables}


def test_home_page_has_the_sign_up_form_over_todays_trending_list_paged_by_30(
    web, store, trending_day
):
    first = web.client.get("/")
    second = web.client.get("/?page=2")

    assert first.status_code == second.status_code == 200
    assert '<form method="post" action="/subscribe">' in first.text
    assert 'name="email"' in first.text and "Without them you get the day&#39;s trending" in (
        first.text
    )
    stored = {shown(p.title) for p in store.recent_papers(1000)}
    page_one, page_two = listed_titles(first.text), listed_titles(second.text)
    assert len(page_one) == len(page_two) == 30
    assert set(page_one) <= stored and set(page_two) <= stored
    assert set(page_one).isdisjoint(page_two)
    expected = [shown(t.paper.title) for t in trending_papers(store, TODAY, limit=60)]
    assert page_one + page_two == expected
    assert "&#9650; 89 upvotes" in first.text  # the top paper's upvotes
    assert 'href="https://arxiv.org/abs/2611.10962"' in first.text  # its title links to it
    assert 'href="/?page=2"' in first.text and 'href="/"' in second.text  # previous page


def test_a_sign_up_with_an_address_alone_starts_the_double_opt_in(web, store, smtp_server):
    form = {"email": "t@example.org", "csrf_token": web.csrf("/")}

    answer = web.client.post("/subscribe", data=form)

    assert answer.status_code == 200 and "Check your inbox" in answer.text
    pending = store.get_subscriber("t@example.org")
    assert (pending.status, pending.interests, pending.categories) == (Status.PENDING, "", [])
    [message] = webtests.wait_for_mail(smtp_server, 1)
    confirm = webtests.link_in(message, "confirm")
    page = web.client.get(confirm)
    token = webtests.CSRF_INPUT.search(page.text).group(1)
    assert web.client.post(confirm, data={"csrf_token": token}).status_code == 200
    assert store.get_subscriber("t@example.org").status == Status.ACTIVE


def test_see_what_you_would_get_answers_picks_with_reasons_and_stores_nothing(
    web, store, settings, trending_day
):
    add_subscriber(store, settings, "ada@example.org", interests="topology")
    before = counts(store)
    token = web.csrf("/")

    tried = web.client.post(
        "/preview", data={"try_interests": "graph neural networks", "csrf_token": token}
    )
    alone = web.client.post("/preview", data={"try_interests": "", "csrf_token": token})

    assert tried.status_code == alone.status_code == 200
    assert "Today's papers for these interests" in tried.text
    reasons = WHY.findall(tried.text)
    assert len(reasons) == settings.papers_per_email
    assert all(r.startswith("matches your interests: ") for r in reasons)
    assert ">graph neural networks</textarea>" in tried.text  # kept as typed
    trending = [html.unescape(r) for r in WHY.findall(alone.text)]
    assert trending[0] == "trending: 89 upvotes, #1 on today's trending list"
    assert len(trending) == settings.papers_per_email
    assert counts(store) == before  # no subscriber, profile, event, delivery or embedding
    assert "ada@example.org" not in tried.text + alone.text


def test_see_what_you_would_get_needs_the_form_token_and_is_rate_limited_like_sign_up(
    settings, smtp_server, store, trending_day
):
    limited = webtests.web_settings(settings, smtp_server, subscribe_limit_per_ip=2)
    with webtests.running(limited) as url, Client(base_url=url) as client:
        web = webtests.Web(url, limited, client)
        assert client.post("/preview", data={"try_interests": "graphs"}).status_code == 403
        token = web.csrf("/")
        answers = [
            client.post("/preview", data={"try_interests": "graphs", "csrf_token": token})
            for _ in range(3)
        ]
        too_long = client.post("/preview", data={"try_interests": "x" * 2001, "csrf_token": token})
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert "Too many previews" in answers[2].text and answers[2].headers["retry-after"]
    assert too_long.status_code == 400 and "2000 characters" in too_long.text


def test_the_atom_feed_lists_the_same_papers_as_todays_archive_page(web, store, trending_day):
    feed = web.client.get("/trending.atom")
    page = web.client.get(f"/trending/{TODAY.isoformat()}")

    assert feed.status_code == page.status_code == 200
    assert feed.headers["content-type"].startswith("application/atom+xml")
    parsed = feedparser.parse(feed.content)
    assert not parsed.bozo, parsed.bozo_exception
    assert parsed.feed.title == "Daily Papers: trending papers"
    titles = [entry.title for entry in parsed.entries]
    assert len(titles) == 30 and titles == listed_titles(page.text)
    top = parsed.entries[0]
    assert top.link == "https://arxiv.org/abs/2611.10962"
    assert top.summary.startswith("89 upvotes. ") and top.authors
    assert len({entry.id for entry in parsed.entries}) == 30


def test_the_archive_shows_the_list_of_that_day(web, store):
    long_ago = to_utc_iso(datetime.now(UTC) - timedelta(days=30))
    store.save_paper(make_paper(1, title="Paper of today", upvotes=5))
    store.save_paper(make_paper(2, title="Paper of a month ago", first_seen_at=long_ago))
    month_ago = (TODAY - timedelta(days=30)).isoformat()

    today = web.client.get(f"/trending/{TODAY.isoformat()}")
    then = web.client.get(f"/trending/{month_ago}")

    assert listed_titles(today.text) == ["Paper of today"]
    assert listed_titles(then.text) == ["Paper of a month ago"]
    assert 'rel="next"' not in today.text and 'rel="next"' in then.text
    for bad in ("2026-13-01", "yesterday", "2026-1-1"):
        assert web.client.get(f"/trending/{bad}").status_code == 404


def test_public_pages_show_nothing_personal(web, store, settings, trending_day):
    ada = add_subscriber(store, settings, "ada@example.org", interests="secret topology")
    store.set_feedback(ada.id, "2611.10962", 1)

    pages = [web.client.get(p).text for p in ("/", "/?page=2", f"/trending/{TODAY}")]
    pages.append(web.client.get("/trending.atom").text)

    for text in pages:
        assert "ada@example.org" not in text and "secret topology" not in text
        assert "/preferences/" not in text and "/unsubscribe/" not in text


def test_the_home_page_lists_the_newest_papers_when_none_is_trending(web, store):
    for n in range(1, 4):
        store.save_paper(
            make_paper(n, published_at=to_utc_iso(datetime.now(UTC) - timedelta(days=n)))
        )
    assert listed_titles(web.client.get("/").text) == [
        f"Paper number {n} about graph neural networks" for n in (1, 2, 3)
    ]
