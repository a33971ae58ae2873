"""The operator's dashboard in a real browser (Debian's Chromium through Playwright, a
phone-sized screen, JavaScript off) against ``newsletter serve``: sign in after a demo
send, read the overview's figures, find a reader on the edition's page, preview the edition
as that reader, change a subscriber's status; and what refuses a sign-in. With
DOCS_SCREENSHOT_DIR set, the overview and the edition's page are also shot at desktop size
for the README."""

from __future__ import annotations

import os
from datetime import date

import pytest
from itsdangerous import URLSafeTimedSerializer

from newsletter.demo import run_demo
from newsletter.mail.text import display_text, one_line
from newsletter.models import Status
from newsletter.web.admin import SESSION_COOKIE

# site and page are test_web_browser's fixtures, taken by name (hence the noqa below).
from .test_web_browser import (  # noqa: F401
    PHONE,
    assert_fits_a_phone_and_labels_every_field,
    page,
    site,
)

PASSWORD = "a long admin password for the tests"
TODAY = date.today()


@pytest.fixture
def admin_site(monkeypatch, request):
    """``newsletter serve`` with the dashboard on (the site fixture passes the environment)."""
    monkeypatch.setenv("NEWSLETTER_ADMIN_PASSWORD", PASSWORD)
    return request.getfixturevalue("site")


def sign_in(tab, url: str, password: str = PASSWORD) -> None:
    tab.goto(f"{url}/admin")
    assert tab.get_by_role("heading", level=1).inner_text() == "Sign in"
    tab.get_by_label("Admin password").fill(password)
    tab.get_by_role("button", name="Sign in").click()


def cells(tab, table: str, row: str) -> list[str]:
    """The cells of the row of ``table`` whose header is ``row``."""
    return (
        tab.get_by_role("table", name=table)
        .get_by_role("row")
        .filter(has=tab.get_by_role("rowheader", name=row, exact=True))
        .get_by_role("cell")
        .all_inner_texts()
    )


def test_sign_in_read_the_overview_find_a_reader_preview_and_change_a_status(
    admin_site,
    page,  # noqa: F811
    store,
    browser,
):
    demo = run_demo(admin_site.settings)
    assert demo.send.counts == {"sent": 4}
    url = admin_site.url

    sign_in(page, url)
    assert page.get_by_role("heading", level=1).inner_text() == "Dashboard"
    assert_fits_a_phone_and_labels_every_field(page)
    status_row = page.get_by_role("table", name="Subscribers by status")
    assert status_row.get_by_role("cell").all_inner_texts() == ["0", "4", "0", "0", "0"]
    # messages, then sent, failed, rejected, unknown, suppressed
    assert cells(page, "Editions by outcome", TODAY.isoformat()) == ["4", "4", "0", "0", "0", "0"]
    assert cells(page, "Bounce and complaint rates", "Bounces") == [
        "0",
        "0.00%",
        "2% (relays)",
        "ok",
    ]
    changes = cells(page, "Subscriber changes, last 90 days", TODAY.isoformat())
    assert changes == ["4", "0", "0", "0"]  # joined, confirmed, unsubscribed, bounced
    page.wait_for_load_state("load")  # the charts are pictures of their own
    for chart in page.locator("figure.chart img").all():
        assert chart.evaluate("img => img.complete && img.naturalWidth") > 0
    shots = os.environ.get("DOCS_SCREENSHOT_DIR")
    if shots:
        shoot(browser, page, f"{url}/admin", f"{shots}/admin-overview.png")

    page.get_by_role("link", name=TODAY.isoformat()).click()
    assert page.get_by_role("heading", level=1).inner_text() == f"Edition {TODAY}"
    assert_fits_a_phone_and_labels_every_field(page)
    if shots:
        shoot(browser, page, page.url, f"{shots}/admin-edition.png")
    page.get_by_label("Find a reader by address").fill("grace")
    page.get_by_role("button", name="Find").click()
    readers = page.get_by_role("table", name="Readers' outcomes")
    assert readers.get_by_role("rowheader").all_inner_texts() == ["grace@example.org"]
    assert readers.get_by_role("cell").nth(0).inner_text() == "sent"

    page.get_by_role("button", name="Preview as grace@example.org").click()
    grace = store.get_subscriber("grace@example.org")
    (delivery,) = [
        d for d in store.deliveries.for_edition(TODAY.isoformat()) if d.subscriber_id == grace.id
    ]
    papers = {p.id: p for p in store.papers_by_ids(delivery.paper_ids)}
    body = page.locator("body").inner_text()
    for paper_id in delivery.paper_ids:
        assert one_line(display_text(papers[paper_id].title)) in body
    page.go_back()

    page.get_by_role("link", name="grace@example.org").click()
    assert page.get_by_role("heading", level=1).inner_text() == "grace@example.org"
    assert_fits_a_phone_and_labels_every_field(page)
    page.get_by_label("Status").select_option("paused")
    page.get_by_role("button", name="Change the status").click()
    assert page.get_by_role("status").inner_text() == "Saved: the status is now paused."
    assert store.get_subscriber("grace@example.org").status == Status.PAUSED
    assert_fits_a_phone_and_labels_every_field(page)


def shoot(browser, phone_page, url: str, path: str) -> None:
    """A desktop-sized screenshot of ``url``, signed in with the phone page's cookies."""
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 1100, "height": 900}
    )
    context.add_cookies(phone_page.context.cookies())
    desktop = context.new_page()
    desktop.goto(url)
    desktop.screenshot(path=path, full_page=True)
    context.close()


def test_a_wrong_password_a_missing_csrf_token_and_a_forged_session_are_refused(
    admin_site,
    page,  # noqa: F811
):
    url = admin_site.url
    sign_in(page, url, "not the password")
    assert page.get_by_role("alert").inner_text() == "Wrong password."
    assert not [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]

    # The form's token names the browser's CSRF cookie: without the cookie it is refused.
    page.goto(f"{url}/admin/sign-in")
    page.context.clear_cookies()
    page.get_by_label("Admin password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("heading", level=1).inner_text() == "This form has expired"
    assert not [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]

    forged = URLSafeTimedSerializer("a guessed key", salt="newsletter.admin-session")
    page.context.add_cookies(
        [{"name": SESSION_COOKIE, "value": forged.dumps({"password": "x"}), "url": url}]
    )
    page.goto(f"{url}/admin/subscribers")
    assert page.url == f"{url}/admin/sign-in"
    assert page.get_by_role("heading", level=1).inner_text() == "Sign in"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
