"""The public pages in a real browser (Debian's Chromium through Playwright, a phone-sized
screen, JavaScript off) against ``newsletter serve``: the home page and its trending list,
"See what you would get", and the archive of a day's list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from newsletter.store.ingest import ingest_path, sample_papers_path

from .test_trending import HF_DAILY

# site and page are test_web_browser's fixtures, taken by name (hence the noqa below).
from .test_web_browser import (  # noqa: F401
    PHONE,
    assert_fits_a_phone_and_labels_every_field,
    page,
    site,
)

TODAY = datetime.now(UTC).date()


def ingest_trending_day(store) -> None:
    ingest_path(store, sample_papers_path())
    ingest_path(store, HF_DAILY)


def test_home_page_shows_the_form_over_todays_trending_list_on_a_phone(site, page, store):  # noqa: F811
    ingest_trending_day(store)

    page.goto(site.url)

    assert_fits_a_phone_and_labels_every_field(page)
    assert page.get_by_role("button", name="Subscribe").is_visible()
    trending = page.get_by_role("region", name="Trending today")
    titles = trending.get_by_role("heading", level=3).all_inner_texts()
    assert len(titles) == 30
    assert titles[0] == "Neural Tangent Kernel: Convergence and Generalization in Neural Networks"
    assert trending.get_by_role("link", name=titles[0]).get_attribute("href") == (
        "https://arxiv.org/abs/2611.10962"
    )
    assert "▲ 89 upvotes" in trending.locator("li").first.inner_text()

    trending.get_by_role("link", name="Next page").click()
    again = page.get_by_role("region", name="Trending today")
    next_titles = again.get_by_role("heading", level=3).all_inner_texts()
    assert len(next_titles) == 30 and set(next_titles).isdisjoint(titles)
    assert page.url.endswith("/?page=2")
    assert_fits_a_phone_and_labels_every_field(page)


def test_see_what_you_would_get_shows_picks_and_reasons_and_keeps_nothing(site, page, store):  # noqa: F811
    ingest_trending_day(store)
    page.goto(site.url)

    page.get_by_label("Interests to try").fill("graph neural networks")
    page.get_by_role("button", name="Show my papers").click()

    preview = page.get_by_role("region", name="Today's papers for these interests")
    items = preview.get_by_role("listitem")
    assert items.count() == site.settings.papers_per_email
    for i in range(items.count()):
        assert "Why: matches your interests" in items.nth(i).inner_text()
    assert page.get_by_label("Interests to try").input_value() == "graph neural networks"
    # The interests go on to the sign-up form, ready to subscribe with them.
    assert page.get_by_label("Your research interests").input_value() == "graph neural networks"
    assert_fits_a_phone_and_labels_every_field(page)
    assert store.list_subscribers() == []

    page.get_by_label("Interests to try").fill("")
    page.get_by_role("button", name="Show my papers").click()
    alone = page.get_by_role("region", name="Today's papers for an address alone")
    assert (
        alone.get_by_role("listitem")
        .first.inner_text()
        .endswith("Why: trending: 89 upvotes, #1 on today's trending list")
    )


def test_archive_page_of_a_day_on_a_phone(site, page, store):  # noqa: F811
    ingest_trending_day(store)
    page.goto(site.url)

    page.get_by_role("link", name="This day's list").click()

    day = f"{TODAY:%B} {TODAY.day}, {TODAY.year}"
    assert page.get_by_role("heading", level=1).inner_text() == f"Trending papers, {day}"
    assert page.url.endswith(f"/trending/{TODAY.isoformat()}")
    assert_fits_a_phone_and_labels_every_field(page)
    titles = page.get_by_role("region", name="The list").get_by_role("heading", level=3)
    assert titles.count() == 30
    assert page.get_by_role("link", name="Day after").count() == 0  # today is the last day

    page.get_by_role("link", name="Day before").click()
    yesterday = TODAY - timedelta(days=1)
    assert page.url.endswith(f"/trending/{yesterday.isoformat()}")
    assert page.get_by_text("No papers on this page.").is_visible()
    assert page.get_by_role("link", name="Day after").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
